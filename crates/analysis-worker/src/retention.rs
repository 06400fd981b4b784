//! `logcanary.tasks.cleanup_old_results` (queue `maintenance`): deletes finished task
//! rows, old log entries (anomalous ones kept longer), pattern detections and alerts past
//! their ages, in short batches, drops emptied daily partitions and creates the ones
//! ahead; the counts go into the task result.
//!
//! The ages are the defaults of [`db::retention::RetentionPolicy`], overridden by the
//! task's args (`{"entry_days": 14, ...}`), which the periodic task that fires it carries:
//! operators change retention through `PATCH /api/periodic-tasks/{id}/`.

use chrono::Utc;
use contracts::v1;
use db::{retention::RetentionPolicy, tasks::StartDecision};
use mq::{Delivery, Outcome};
use serde_json::json;

use crate::tasks::TaskContext;

/// Why a clean-up did not run.
#[derive(Debug, thiserror::Error)]
enum RetentionError {
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error(transparent)]
    Delivery(#[from] mq::DeliveryError),
    #[error("bad retention args: {key}: {message}")]
    Args { key: String, message: String },
}

impl mq::Classify for RetentionError {
    fn is_retryable(&self) -> bool {
        // Deleted batches stay deleted; a retry continues where this one stopped.
        matches!(self, RetentionError::Db(e) if e.is_transient())
    }
}

/// Runs one clean-up delivery.
pub async fn run(ctx: &TaskContext, delivery: &Delivery) -> Outcome {
    let task_id = match delivery.decode_task::<v1::CleanupOldResults>() {
        Ok((_, task_id)) => task_id,
        Err(e) => return Outcome::from_error(&e),
    };
    let started = std::time::Instant::now();
    let result = ctx
        .db
        .run_as(move |c| -> Result<_, RetentionError> {
            let task = match db::tasks::start(c, task_id)? {
                StartDecision::Run(task) => task,
                StartDecision::AlreadyFinished(_) => return Ok(None),
                StartDecision::Unknown => return Err(mq::DeliveryError::NoRecord(task_id).into()),
            };
            let policy = RetentionPolicy::from_args(&task.args)
                .map_err(|(key, message)| RetentionError::Args { key, message })?;
            let report = db::retention::run(c, Utc::now(), &policy)?;
            let result = json!({
                "tasks_deleted": report.tasks_deleted,
                "entries_deleted": report.entries_deleted,
                "anomalies_deleted": report.anomalies_deleted,
                "detections_deleted": report.detections_deleted,
                "alerts_deleted": report.alerts_deleted,
                "partitions_dropped": report.partitions_dropped,
                "policy_days": {
                    "task_days": policy.tasks.num_days(),
                    "entry_days": policy.entries.num_days(),
                    "anomaly_days": policy.anomalies.num_days(),
                    "detection_days": policy.detections.num_days(),
                    "alert_days": policy.alerts.num_days(),
                },
            });
            db::tasks::mark_success(c, task_id, &result)?;
            Ok(Some(report))
        })
        .await;
    match result {
        Ok(Some(report)) => {
            tracing::info!(
                %task_id,
                tasks = report.tasks_deleted,
                entries = report.entries_deleted,
                anomalies = report.anomalies_deleted,
                detections = report.detections_deleted,
                alerts = report.alerts_deleted,
                partitions = report.partitions_dropped,
                seconds = started.elapsed().as_secs_f64(),
                "Old results cleaned up."
            );
            for (kind, n) in [
                ("tasks", report.tasks_deleted),
                ("entries", report.entries_deleted),
                ("anomalies", report.anomalies_deleted),
                ("detections", report.detections_deleted),
                ("alerts", report.alerts_deleted),
            ] {
                metrics::counter!("logcanary_retention_deleted_total", "kind" => kind)
                    .increment(n as u64);
            }
            Outcome::Done
        }
        Ok(None) => Outcome::Done,
        Err(e) => Outcome::from_error(&e),
    }
}
