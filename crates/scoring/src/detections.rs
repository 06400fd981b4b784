//! Storing pattern detections with their alert tasks (the outbox rows), shared by the
//! periodic analysis and the real-time windows.

use chrono::{DateTime, Utc};
use contracts::{tasks, v1};
use db::{models::NewTask, patterns::NewPatternDetection, DbError};
use detector::patterns::Detection;
use serde_json::json;
use uuid::Uuid;

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Rows for `pattern_detections`.
pub fn detection_rows(detections: &[Detection], task_id: Option<Uuid>) -> Vec<NewPatternDetection> {
    detections
        .iter()
        .map(|d| NewPatternDetection {
            kind: d.kind.as_str().to_owned(),
            window_start: time(d.window_start_ms),
            window_end: time(d.window_end_ms),
            source: d.source.clone(),
            severity: d.severity.as_str().to_owned(),
            details: d.details.clone(),
            log_entry_ids: d.log_entry_ids.clone(),
            task_id,
        })
        .collect()
}

/// Each detection's id and whether it is new, and the alert messages to publish.
pub type StoredDetections = (Vec<(i64, bool)>, Vec<v1::SendPatternAlert>);

/// Stores detections (repeats of stored ones are skipped) and, for each new one, a
/// `send_pattern_alert` task row; call inside the transaction that finishes the work.
/// Returns each detection's id and whether it is new, and the alert messages to publish
/// once the transaction has committed.
pub fn store_detections(
    c: &mut diesel::PgConnection,
    rows: &[NewPatternDetection],
) -> Result<StoredDetections, DbError> {
    let ids = db::patterns::insert_new(c, rows)?;
    let mut alert_tasks = Vec::new();
    let mut alerts = Vec::new();
    for (id, new) in &ids {
        if !new {
            continue;
        }
        let alert_id = Uuid::new_v4();
        alert_tasks.push(NewTask {
            id: alert_id,
            task_name: tasks::SEND_PATTERN_ALERT.into(),
            queue: contracts::queues::NOTIFICATIONS.into(),
            args: json!({"pattern_detection_id": id}),
        });
        alerts.push(v1::SendPatternAlert {
            task_id: alert_id.to_string(),
            pattern_detection_id: *id,
        });
    }
    if !alert_tasks.is_empty() {
        db::tasks::insert(c, &alert_tasks)?;
    }
    Ok((ids, alerts))
}
