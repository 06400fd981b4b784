//! Tasks of the analysis worker's queues that are not entry scoring: each has its own
//! module, and [`run`] picks it by task name. Scoring (`analyze_log_entry`,
//! `batch_analyze_logs`) is micro-batched by [`crate::handler`] instead.

use contracts::tasks;
use mq::{Delivery, Outcome};

/// What these tasks need: the database, the outbox for the tasks they queue, and the
/// pattern thresholds.
pub struct TaskContext {
    pub db: db::Db,
    pub outbox: outbox::Outbox,
    /// Thresholds of `detect_anomaly_patterns`.
    pub patterns: scoring::config::PatternSettings,
}

/// Runs one delivery of a task this module knows; `None` for a task name it does not
/// know (the caller dead-letters it with a clear error).
pub async fn run(ctx: &TaskContext, delivery: &Delivery) -> Option<Outcome> {
    // One arm per task: `tasks::NAME => Some(module::run(ctx, delivery).await),`
    match delivery.task_name.as_str() {
        tasks::DETECT_ANOMALY_PATTERNS => Some(crate::patterns::run(ctx, delivery).await),
        tasks::CLEANUP_OLD_RESULTS => Some(crate::retention::run(ctx, delivery).await),
        _ => None,
    }
}
