//! The real-time worker: consumes `real_time` (`logs.tasks.analyze_real_time_stream`),
//! scores the listed entries exactly as the analysis worker does (same start-up, same
//! shared templates, same critical alerts), keeps per-source sliding windows of anomalies
//! and errors in memory, and alerts on a cluster or spike the moment it forms.
//!
//! It scores through the shared `scoring` library (as the analysis worker does) and
//! stores detections with it; it must not grow a scoring path of its own, and it never
//! depends on another binary.

pub mod config;
pub mod handler;

use std::sync::{Arc, Mutex};

use detector::patterns::StreamWindows;
use scoring::{start_scoring, ScoringSetup};
use tokio_util::sync::CancellationToken;

use crate::{config::Settings, handler::RealtimeHandler};

/// Runs the worker until `shutdown` fires; then drains in-flight batches and returns.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pattern_config = settings
        .patterns
        .config()
        .map_err(|e| anyhow::anyhow!("LOGCANARY_PATTERN_*: {e}"))?;
    let scoring = start_scoring(
        ScoringSetup {
            service: settings.service.clone(),
            scorer: settings.scoring.scorer_config(),
            embedder: settings.scoring.embedder_config(),
            template_refresh: settings.scoring.template_refresh(),
            patterns: settings.patterns.clone(),
            connection_name: "realtime-worker",
        },
        &shutdown,
    )
    .await?;
    let consumer = settings.consumer_config();
    let readiness = scoring.readiness(consumer.connected.clone());
    let handler = Arc::new(RealtimeHandler {
        scoring: scoring.handler.clone(),
        bucket_ms: pattern_config.bucket_ms,
        windows: Mutex::new(
            StreamWindows::new(pattern_config, settings.history_buckets as usize).with_limits(
                settings.max_sources as usize,
                i64::from(settings.clock_skew_secs) * 1000,
            ),
        ),
    });
    let service = mq::service::Service::new(
        "Real-time worker",
        &settings.service,
        settings.admin_addr,
        readiness,
        consumer,
    );
    mq::service::serve(service, handler, shutdown).await
}
