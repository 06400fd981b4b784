//! The analysis worker: consumes `analysis` and `batch_processing`, scores log entries,
//! stores scores, summaries and task results, and queues critical-anomaly alerts.
//!
//! All state it needs is in Postgres (template counts included), so any number of
//! replicas can consume the same queues.

pub mod config;
pub mod handler;
pub mod scoring;

use std::sync::Arc;

use anyhow::Context;
use common::admin::{AdminServer, ReadinessFn};
use tokio_util::sync::CancellationToken;

use crate::{config::Settings, handler::AnalysisHandler, scoring::ScoringConfig};

/// Runs the worker until `shutdown` fires; then drains in-flight batches and returns.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let db = db::Db::connect_lazy(
        &settings.service.database_url,
        settings.service.db_pool_size,
    )
    .context("creating the database pool (DATABASE_URL)")?;
    let topology = mq::Topology::new(settings.service.amqp_prefix.clone());
    let handler = Arc::new(AnalysisHandler {
        db: db.clone(),
        publisher: Arc::new(tokio::sync::Mutex::new(None)),
        amqp_url: settings.service.amqp_url.clone(),
        topology: topology.clone(),
        scoring: ScoringConfig {
            threshold: settings.anomaly_threshold,
            ..ScoringConfig::default()
        },
    });

    let readiness_db = db.clone();
    let readiness: ReadinessFn = Arc::new(move || {
        let db = readiness_db.clone();
        Box::pin(async move { vec![("database", db.ping().await.map_err(|e| e.to_string()))] })
    });
    let admin = AdminServer::start(settings.admin_addr, readiness).with_context(|| {
        format!(
            "binding the admin address {} (LOGCANARY_ADMIN_ADDR)",
            settings.admin_addr
        )
    })?;
    tracing::info!(queues = ?settings.queues, admin_port = admin.addr.port(), "Analysis worker starting.");

    let result = mq::run_consumer(
        &settings.service.amqp_url,
        topology,
        settings.consumer_config(),
        handler,
        shutdown,
    )
    .await;
    admin.stop().await;
    result.context("consuming tasks")?;
    tracing::info!("Analysis worker stopped cleanly.");
    Ok(())
}
