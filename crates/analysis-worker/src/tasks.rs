//! Tasks of the analysis worker's queues that are not entry scoring: each has its own
//! module, and [`run`] picks it by task name. Scoring (`analyze_log_entry`,
//! `batch_analyze_logs`) is micro-batched in [`crate::handler`] instead, because its
//! deliveries are worth combining; these are not.

use contracts::tasks;
use mq::{Delivery, Outcome};

use crate::handler::AnalysisHandler;

/// Runs one delivery of a task this module knows; `None` for a task name it does not
/// know (the caller dead-letters it with a clear error).
pub async fn run(handler: &AnalysisHandler, delivery: &Delivery) -> Option<Outcome> {
    // One arm per task: `tasks::NAME => Some(module::run(handler, delivery).await),`
    let _ = handler;
    match delivery.task_name.as_str() {
        tasks::ANALYZE_LOG_ENTRY | tasks::BATCH_ANALYZE_LOGS => None,
        tasks::DETECT_ANOMALY_PATTERNS => Some(crate::patterns::run(handler, delivery).await),
        tasks::CLEANUP_OLD_RESULTS => Some(crate::retention::run(handler, delivery).await),
        _ => None,
    }
}
