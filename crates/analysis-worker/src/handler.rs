//! The analysis worker's handler: entry scoring goes to the shared [`ScoringHandler`]
//! (micro-batched, because those deliveries are worth combining), every other task to
//! [`crate::tasks`], one delivery at a time.

use std::sync::Arc;

use contracts::tasks;
use mq::{Delivery, Outcome};
use scoring::handler::ScoringHandler;

use crate::tasks::TaskContext;

/// Shared by all in-flight batches.
pub struct AnalysisHandler {
    pub scoring: Arc<ScoringHandler>,
    pub tasks: TaskContext,
}

fn is_scoring(delivery: &Delivery) -> bool {
    matches!(
        delivery.task_name.as_str(),
        tasks::ANALYZE_LOG_ENTRY | tasks::BATCH_ANALYZE_LOGS
    )
}

#[async_trait::async_trait]
impl mq::Handler for AnalysisHandler {
    async fn handle(&self, batch: &[Delivery]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = (0..batch.len()).map(|_| None).collect();
        let mut scoring = Vec::new();
        for (index, delivery) in batch.iter().enumerate() {
            if is_scoring(delivery) {
                scoring.push(index);
                continue;
            }
            // A task name this worker does not know goes to the scorer, which fails it
            // with the reason.
            match crate::tasks::run(&self.tasks, delivery).await {
                Some(outcome) => outcomes[index] = Some(outcome),
                None => scoring.push(index),
            }
        }
        if !scoring.is_empty() {
            let deliveries: Vec<&Delivery> = scoring.iter().map(|&i| &batch[i]).collect();
            let scored = self.scoring.score_deliveries(&deliveries).await;
            for (index, outcome) in scoring.into_iter().zip(scored) {
                outcomes[index] = Some(outcome);
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::Fail("no outcome recorded".into())))
            .collect()
    }

    async fn dead_lettered(&self, delivery: &Delivery, error: &str) {
        self.scoring.dead_lettered(delivery, error).await;
    }
}
