//! Rows as the services see them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use crate::schema::{log_entries, tasks};

/// A stored log entry with its analysis, if any.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, PartialEq)]
#[diesel(table_name = log_entries)]
pub struct LogEntry {
    pub id: i64,
    pub received_at: DateTime<Utc>,
    pub logged_at: DateTime<Utc>,
    pub severity: String,
    pub message: String,
    pub source: Option<String>,
    pub analysis_task_id: Option<Uuid>,
    pub anomaly_score: Option<f64>,
    pub is_anomaly: Option<bool>,
    pub summary: Option<String>,
    pub template_id: Option<i64>,
    pub analyzed_at: Option<DateTime<Utc>>,
}

/// An entry to store (validated by the caller).
#[derive(Debug, Clone)]
pub struct NewLogEntry {
    pub logged_at: DateTime<Utc>,
    pub severity: String,
    pub message: String,
    pub source: Option<String>,
}

/// Celery-like task states.
pub mod status {
    pub const PENDING: &str = "PENDING";
    pub const STARTED: &str = "STARTED";
    pub const RETRY: &str = "RETRY";
    pub const SUCCESS: &str = "SUCCESS";
    pub const FAILURE: &str = "FAILURE";
}

/// A task record.
#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = tasks)]
pub struct Task {
    pub id: Uuid,
    pub task_name: String,
    pub queue: String,
    pub status: String,
    pub args: serde_json::Value,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    pub attempts: i32,
    pub published_at: Option<DateTime<Utc>>,
    pub publish_error: Option<String>,
    pub publish_attempts: i32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// A task to create.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = tasks)]
pub struct NewTask {
    pub id: Uuid,
    pub task_name: String,
    pub queue: String,
    pub args: serde_json::Value,
}

/// The scoring outcome for one entry, as the worker writes it.
#[derive(Debug, Clone)]
pub struct EntryScore {
    pub id: i64,
    pub anomaly_score: f64,
    pub is_anomaly: bool,
    pub summary: String,
    pub template_id: Option<i64>,
    /// The detector's prior score of the line (`log_entries.prior_score`, read by the
    /// review queue); `None` where it is not known.
    pub prior_score: Option<f32>,
}
