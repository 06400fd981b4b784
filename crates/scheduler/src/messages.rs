//! Rebuilding a task's queue message from what Postgres holds: the task row's args and,
//! for the scoring tasks, the entries that name the task in `analysis_task_id`.
//!
//! Each publisher stores enough in `tasks.args` for this (see the match below), so the
//! relay can publish any task again and the scheduler can publish the tasks it fires.

use contracts::{tasks, v1, Task};
use serde_json::Value;
use uuid::Uuid;

/// Window of `detect_anomaly_patterns` when its args name none, as in the old system.
pub const DEFAULT_WINDOW_HOURS: u32 = 24;

/// The message of task `task_id` named `task_name`.
///
/// # Errors
///
/// A description of what is missing (entries deleted, args unreadable, unknown task):
/// permanent, publishing later cannot succeed.
pub fn build(
    task_name: &str,
    task_id: Uuid,
    args: &Value,
    entry_ids: &[i64],
) -> Result<Task, String> {
    let task_id = task_id.to_string();
    let task = match task_name {
        tasks::ANALYZE_LOG_ENTRY => match entry_ids {
            [id] => v1::AnalyzeLogEntry {
                task_id,
                log_entry_id: *id,
            }
            .into(),
            [] => return Err("its log entry no longer exists".into()),
            _ => return Err(format!("{} log entries name this task", entry_ids.len())),
        },
        tasks::BATCH_ANALYZE_LOGS => {
            if entry_ids.is_empty() {
                return Err("its log entries no longer exist".into());
            }
            v1::BatchAnalyzeLogs {
                task_id,
                log_entry_ids: entry_ids.to_vec(),
            }
            .into()
        }
        tasks::DETECT_ANOMALY_PATTERNS => v1::DetectAnomalyPatterns {
            task_id,
            time_window_hours: window_hours(args)?,
        }
        .into(),
        tasks::ANALYZE_REAL_TIME_STREAM => v1::AnalyzeRealTimeStream {
            task_id,
            log_entry_ids: ids_field(args, "log_entry_ids")?,
        }
        .into(),
        tasks::SEND_CRITICAL_ANOMALY_ALERT => v1::SendCriticalAnomalyAlert {
            task_id,
            log_entry_id: int_field(args, "log_entry_id")?,
            anomaly_score: args
                .get("anomaly_score")
                .and_then(Value::as_f64)
                .ok_or("args lack a numeric anomaly_score")?,
            summary: args
                .get("summary")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        }
        .into(),
        tasks::SEND_PATTERN_ALERT => v1::SendPatternAlert {
            task_id,
            pattern_detection_id: int_field(args, "pattern_detection_id")?,
        }
        .into(),
        tasks::CLEANUP_OLD_RESULTS => v1::CleanupOldResults { task_id }.into(),
        other => return Err(format!("unknown task name {other:?}")),
    };
    Ok(task)
}

/// `[hours]` (Celery positional args), `{"time_window_hours": hours}`, or nothing (24).
pub fn window_hours(args: &Value) -> Result<u32, String> {
    let raw = match args {
        Value::Array(items) => items.first(),
        Value::Object(map) => map.get("time_window_hours"),
        Value::Null => None,
        _ => return Err("args must be [hours] or {\"time_window_hours\": hours}".into()),
    };
    match raw {
        None => Ok(DEFAULT_WINDOW_HOURS),
        Some(v) => v
            .as_u64()
            .filter(|h| (1..=720).contains(h))
            .map(|h| h as u32)
            .ok_or_else(|| "the time window must be a whole number of hours from 1 to 720".into()),
    }
}

fn int_field(args: &Value, field: &str) -> Result<i64, String> {
    args.get(field)
        .and_then(Value::as_i64)
        .ok_or_else(|| format!("args lack an integer {field}"))
}

fn ids_field(args: &Value, field: &str) -> Result<Vec<i64>, String> {
    args.get(field)
        .and_then(Value::as_array)
        .and_then(|ids| ids.iter().map(Value::as_i64).collect::<Option<Vec<_>>>())
        .filter(|ids| !ids.is_empty())
        .ok_or_else(|| format!("args lack a non-empty list of integers {field}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_task_name_rebuilds_from_what_its_publisher_stores() {
        let id = Uuid::new_v4();
        let cases = [
            (tasks::ANALYZE_LOG_ENTRY, json!({}), vec![7]),
            (tasks::BATCH_ANALYZE_LOGS, json!({"count": 2}), vec![7, 8]),
            (tasks::DETECT_ANOMALY_PATTERNS, json!([6]), vec![]),
            (
                tasks::ANALYZE_REAL_TIME_STREAM,
                json!({"log_entry_ids": [1, 2]}),
                vec![],
            ),
            (
                tasks::SEND_CRITICAL_ANOMALY_ALERT,
                json!({"log_entry_id": 3, "anomaly_score": 0.9, "summary": "s"}),
                vec![],
            ),
            (
                tasks::SEND_PATTERN_ALERT,
                json!({"pattern_detection_id": 4}),
                vec![],
            ),
            (tasks::CLEANUP_OLD_RESULTS, json!([]), vec![]),
        ];
        for (name, args, entries) in cases {
            let task = build(name, id, &args, &entries).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(task.task_name(), name);
            assert_eq!(task.task_id(), id.to_string());
        }
    }

    #[test]
    fn arguments_are_carried_over() {
        let id = Uuid::new_v4();
        let Ok(Task::DetectAnomalyPatterns(m)) =
            build(tasks::DETECT_ANOMALY_PATTERNS, id, &json!([6]), &[])
        else {
            panic!("not a pattern task")
        };
        assert_eq!(m.time_window_hours, 6);
        let Ok(Task::BatchAnalyzeLogs(m)) =
            build(tasks::BATCH_ANALYZE_LOGS, id, &json!({}), &[3, 4])
        else {
            panic!("not a batch")
        };
        assert_eq!(m.log_entry_ids, vec![3, 4]);
        assert_eq!(window_hours(&json!({"time_window_hours": 12})), Ok(12));
        assert_eq!(window_hours(&json!([])), Ok(24));
    }

    #[test]
    fn what_cannot_be_rebuilt_says_why() {
        let id = Uuid::new_v4();
        assert!(build(tasks::ANALYZE_LOG_ENTRY, id, &json!({}), &[])
            .unwrap_err()
            .contains("no longer exists"));
        assert!(build(tasks::DETECT_ANOMALY_PATTERNS, id, &json!([0]), &[]).is_err());
        assert!(build(tasks::DETECT_ANOMALY_PATTERNS, id, &json!("x"), &[]).is_err());
        assert!(build("logs.tasks.nope", id, &json!({}), &[]).is_err());
    }
}
