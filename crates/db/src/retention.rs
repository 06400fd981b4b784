//! Retention: deleting finished task rows, old log entries, pattern detections and alerts
//! past configurable ages, for the `cleanup_old_results` task.
//!
//! Deletes run in batches of `batch` rows, each its own short statement (no transaction
//! spans batches), so no lock is held for long and the hot partition is never blocked.
//! Anomalous entries have their own, usually longer, age. Daily partitions of
//! `log_entries` that are past both entry ages and empty are dropped, and the partitions
//! ahead of today are created, so the table stays partitioned as days go by.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use diesel::{
    pg::PgConnection,
    prelude::*,
    sql_types::{BigInt, Text, Timestamptz},
};
use serde::Serialize;

use crate::DbError;

/// Ages past which rows are deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionPolicy {
    /// SUCCESS / FAILURE task rows, by `finished_at`.
    pub tasks: Duration,
    /// Entries not flagged anomalous, by `received_at`.
    pub entries: Duration,
    /// Entries flagged anomalous, by `received_at`.
    pub anomalies: Duration,
    /// Pattern detections, by `detected_at`.
    pub detections: Duration,
    /// Alerts, by `created_at`.
    pub alerts: Duration,
    /// Rows per delete statement.
    pub batch: i64,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            tasks: Duration::days(7),
            entries: Duration::days(30),
            anomalies: Duration::days(90),
            detections: Duration::days(90),
            alerts: Duration::days(90),
            batch: 5_000,
        }
    }
}

/// Keys of the `cleanup_old_results` args that override a [`RetentionPolicy`] age, in
/// days: `{"task_days": 7, "entry_days": 30, "anomaly_days": 90, ...}`.
pub const ARG_KEYS: [&str; 5] = [
    "task_days",
    "entry_days",
    "anomaly_days",
    "detection_days",
    "alert_days",
];

/// Longest age accepted in args (ten years).
const MAX_DAYS: i64 = 3660;

impl RetentionPolicy {
    /// The default policy with the ages given in a task's args (`[]`, `{}` or an object
    /// of [`ARG_KEYS`]).
    ///
    /// # Errors
    ///
    /// `(key, message)` for an unknown key or an age that is not a whole number of days
    /// from 1 to 3660.
    pub fn from_args(args: &serde_json::Value) -> Result<Self, (String, String)> {
        let mut policy = Self::default();
        let map = match args {
            serde_json::Value::Object(map) => map,
            serde_json::Value::Array(items) if items.is_empty() => return Ok(policy),
            serde_json::Value::Null => return Ok(policy),
            _ => {
                return Err((
                    "args".into(),
                    format!(
                        "Expected [] or an object of ages in days ({}).",
                        ARG_KEYS.join(", ")
                    ),
                ))
            }
        };
        for (key, value) in map {
            let days = value
                .as_i64()
                .filter(|d| (1..=MAX_DAYS).contains(d))
                .ok_or_else(|| {
                    (
                        key.clone(),
                        format!(
                            "Ensure this value is a whole number of days from 1 to {MAX_DAYS}."
                        ),
                    )
                })?;
            let age = Duration::days(days);
            match key.as_str() {
                "task_days" => policy.tasks = age,
                "entry_days" => policy.entries = age,
                "anomaly_days" => policy.anomalies = age,
                "detection_days" => policy.detections = age,
                "alert_days" => policy.alerts = age,
                other => {
                    return Err((
                        other.to_owned(),
                        format!(
                            "Unknown retention setting; use one of {}.",
                            ARG_KEYS.join(", ")
                        ),
                    ))
                }
            }
        }
        Ok(policy)
    }
}

/// What a clean-up deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    pub tasks_deleted: i64,
    pub entries_deleted: i64,
    pub anomalies_deleted: i64,
    pub detections_deleted: i64,
    pub alerts_deleted: i64,
    pub partitions_dropped: i64,
}

/// Deletes in batches until a batch comes back short; returns the rows deleted.
fn delete_batched(
    conn: &mut PgConnection,
    sql: &str,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<i64, DbError> {
    let mut total = 0;
    loop {
        let n = diesel::sql_query(sql)
            .bind::<Timestamptz, _>(cutoff)
            .bind::<BigInt, _>(batch)
            .execute(conn)? as i64;
        total += n;
        if n < batch {
            return Ok(total);
        }
    }
}

/// Applies `policy` as of `now`. Each batch commits on its own: a clean-up interrupted
/// half-way has deleted only rows it was meant to, and the next run continues.
pub fn run(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    policy: &RetentionPolicy,
) -> Result<RetentionReport, DbError> {
    let batch = policy.batch.max(1);
    let tasks_deleted = delete_batched(
        conn,
        "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks \
         WHERE status IN ('SUCCESS', 'FAILURE') AND finished_at < $1 LIMIT $2)",
        now - policy.tasks,
        batch,
    )?;
    let entries_deleted = delete_batched(
        conn,
        "DELETE FROM log_entries WHERE (id, received_at) IN (SELECT id, received_at \
         FROM log_entries WHERE received_at < $1 AND is_anomaly IS NOT TRUE LIMIT $2)",
        now - policy.entries,
        batch,
    )?;
    let anomalies_deleted = delete_batched(
        conn,
        "DELETE FROM log_entries WHERE (id, received_at) IN (SELECT id, received_at \
         FROM log_entries WHERE received_at < $1 AND is_anomaly LIMIT $2)",
        now - policy.anomalies,
        batch,
    )?;
    let detections_deleted = delete_batched(
        conn,
        "DELETE FROM pattern_detections WHERE id IN (SELECT id FROM pattern_detections \
         WHERE detected_at < $1 LIMIT $2)",
        now - policy.detections,
        batch,
    )?;
    let alerts_deleted = delete_batched(
        conn,
        "DELETE FROM alerts WHERE id IN (SELECT id FROM alerts WHERE created_at < $1 LIMIT $2)",
        now - policy.alerts,
        batch,
    )?;
    let oldest_kept = now - policy.entries.max(policy.anomalies);
    let partitions_dropped = drop_empty_partitions(conn, oldest_kept)?;
    crate::migrate::ensure_partitions(conn)?;
    Ok(RetentionReport {
        tasks_deleted,
        entries_deleted,
        anomalies_deleted,
        detections_deleted,
        alerts_deleted,
        partitions_dropped,
    })
}

#[derive(QueryableByName)]
struct Partition {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Flag {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    value: bool,
}

/// Drops the daily partitions whose whole day is before `before` and that hold no row.
/// A partition busy with other queries is left for the next run (short lock timeout).
fn drop_empty_partitions(conn: &mut PgConnection, before: DateTime<Utc>) -> Result<i64, DbError> {
    let partitions: Vec<Partition> = diesel::sql_query(
        "SELECT c.relname AS name FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
         WHERE p.relname = 'log_entries' AND c.relname ~ '^log_entries_[0-9]{8}$'",
    )
    .load(conn)?;
    let mut dropped = 0;
    for Partition { name } in partitions {
        let Some(day) = name
            .strip_prefix("log_entries_")
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok())
        else {
            continue;
        };
        let Some(day_end) = day.succ_opt().and_then(|d| d.and_hms_opt(0, 0, 0)) else {
            continue;
        };
        if day_end.and_utc() > before {
            continue;
        }
        // The name comes from the catalogue and matched the strict pattern above.
        let result = conn.transaction::<bool, DbError, _>(|conn| {
            diesel::sql_query("SET LOCAL lock_timeout = '2s'").execute(conn)?;
            let empty: Vec<Flag> =
                diesel::sql_query(format!("SELECT NOT EXISTS (SELECT 1 FROM {name}) AS value"))
                    .load(conn)?;
            if !empty.first().is_some_and(|f| f.value) {
                return Ok(false);
            }
            diesel::sql_query(format!("DROP TABLE {name}")).execute(conn)?;
            Ok(true)
        });
        match result {
            Ok(true) => dropped += 1,
            Ok(false) => {}
            Err(error) => {
                tracing::info!(partition = %name, %error, "Partition busy; left for the next clean-up.")
            }
        }
    }
    Ok(dropped)
}
