//! The analysis worker: consumes `analysis` and `batch_processing` (and `maintenance`),
//! scores log entries with the shared scoring library ([`scoring`]: BERT sentence model
//! through ONNX Runtime, template mining, operator feedback), runs the periodic pattern
//! analysis and the clean-up, and queues alerts through the outbox.
//!
//! Scoring itself lives in the `scoring` library, which the real-time worker uses too;
//! this crate adds the worker's other tasks ([`tasks`]) and its start-up.

pub mod config;
pub mod handler;
pub mod patterns;
pub mod retention;
pub mod tasks;

use std::sync::Arc;

use scoring::{start_scoring, ScoringSetup};
use tokio_util::sync::CancellationToken;

use crate::{config::Settings, handler::AnalysisHandler, tasks::TaskContext};

/// Runs the worker until `shutdown` fires; then drains in-flight batches and returns.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let scoring = start_scoring(
        ScoringSetup {
            service: settings.service.clone(),
            scorer: settings.scoring.scorer_config(),
            embedder: settings.scoring.embedder_config(),
            template_refresh: settings.scoring.template_refresh(),
            patterns: settings.patterns.clone(),
            connection_name: "analysis-worker",
        },
        &shutdown,
    )
    .await?;
    let consumer = settings.consumer_config();
    let readiness = scoring.readiness(consumer.connected.clone());
    let handler = Arc::new(AnalysisHandler {
        tasks: TaskContext {
            db: scoring.db.clone(),
            outbox: scoring.outbox.clone(),
            patterns: settings.patterns.clone(),
        },
        scoring: scoring.handler.clone(),
    });
    let service = mq::service::Service::new(
        "Analysis worker",
        &settings.service,
        settings.admin_addr,
        readiness,
        consumer,
    );
    mq::service::serve(service, handler, shutdown).await
}
