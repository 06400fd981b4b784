//! What both scoring workers share (the analysis worker and the real-time worker): the
//! scorer's set-up and its sync with the templates other replicas stored, the
//! analyse-and-write transaction ([`handler`]), the storage of pattern detections with
//! their alert tasks ([`detections`]) and the settings they flatten ([`config`]).
//!
//! A library, not a binary: the workers depend on it and never on each other.
//! What another replica needs (templates, counts, embeddings, labels) is in Postgres and
//! pulled periodically ([`shared`]), so any number of replicas can consume the same queues.

pub mod config;
pub mod detections;
pub mod handler;
pub mod shared;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use common::admin::ReadinessFn;
use detector::embedder::{Embedder, EmbedderConfig};
use tokio_util::sync::CancellationToken;

use crate::{
    handler::ScoringHandler,
    shared::{SharedEmbedder, SharedScorer},
};

/// Pause between attempts to load the shared templates at start-up.
const TEMPLATE_LOAD_RETRY: Duration = Duration::from_secs(2);

/// Longest one publish of alert tasks may take (connect included) before the relay is
/// left to send them.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a readiness probe waits for the model to embed a word.
const MODEL_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a scoring worker starts with: the database pool, the model on its inference
/// thread and the handler that scores with the shared templates. The real-time worker
/// starts the same way ([`start_scoring`]), so both score alike.
pub struct Scoring {
    pub db: db::Db,
    pub handler: Arc<ScoringHandler>,
    /// The outbox the handler publishes through, for the worker's other tasks.
    pub outbox: outbox::Outbox,
    embedder: Arc<Embedder>,
}

/// What [`start_scoring`] needs from a worker's settings.
pub struct ScoringSetup {
    pub service: common::config::ServiceArgs,
    pub scorer: detector::scorer::ScorerConfig,
    /// Where the model and ONNX Runtime are ([`config::ScoringArgs::embedder_config`]).
    pub embedder: EmbedderConfig,
    pub template_refresh: Duration,
    pub patterns: config::PatternSettings,
    /// Name of the process's broker connection (`analysis-worker`, `realtime-worker`).
    pub connection_name: &'static str,
}

/// Loads the model (failing with a message naming `LOGCANARY_MODEL_DIR` when it cannot),
/// builds the handler and loads the shared templates; if Postgres is not ready the
/// templates keep loading in the background until `shutdown` (readiness says so).
///
/// # Errors
///
/// Invalid pattern thresholds, an unusable database URL, or a model that does not load.
pub async fn start_scoring(
    setup: ScoringSetup,
    shutdown: &CancellationToken,
) -> anyhow::Result<Scoring> {
    setup
        .patterns
        .config()
        .map_err(|e| anyhow::anyhow!("LOGCANARY_PATTERN_*: {e}"))?;
    let db = db::Db::connect_lazy(setup.service.database_url(), setup.service.db_pool_size)
        .context("creating the database pool (DATABASE_URL)")?;
    let embedder_config = setup.embedder;
    let model_dir = embedder_config.model_dir.clone();
    let embedder = tokio::task::spawn_blocking(move || Embedder::start(embedder_config))
        .await
        .context("loading the detector model")?
        .with_context(|| {
            format!(
                "loading the detector model from {} (LOGCANARY_MODEL_DIR, ORT_DYLIB_PATH; `make setup` installs them)",
                model_dir.display()
            )
        })?;
    let embedder = Arc::new(embedder);
    tracing::info!(model_dir = %model_dir.display(), dim = embedder.dim(), "Detector model loaded.");

    let topology = mq::Topology::new(setup.service.amqp_prefix.clone())
        .with_quorum_queues(setup.service.amqp_quorum);
    let publisher = mq::Publisher::lazy(
        setup.service.amqp_url(),
        topology,
        setup.connection_name,
        mq::PublisherConfig {
            timeout: PUBLISH_TIMEOUT,
            app_id: setup.connection_name.to_owned(),
            ..mq::PublisherConfig::default()
        },
    );
    let outbox = outbox::Outbox::new(db.clone(), publisher);
    let relearn = handler::relearn_rule(&setup.scorer);
    let handler = Arc::new(ScoringHandler {
        db: db.clone(),
        outbox: outbox.clone(),
        detector: Arc::new(Mutex::new(SharedScorer::new(
            setup.scorer,
            SharedEmbedder(embedder.clone()),
        ))),
        refresh_every: setup.template_refresh,
        refresh: Mutex::default(),
        relearn,
    });
    // Start from what the other replicas learned. If Postgres is down (or not migrated),
    // keep trying in the background: readiness says so meanwhile, and batches retry.
    if let Err(error) = handler.refresh_templates(true).await {
        tracing::warn!(%error, "Could not load the shared templates yet; retrying.");
        let (loader, stop) = (handler.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(TEMPLATE_LOAD_RETRY) => {}
                }
                match loader.refresh_templates(true).await {
                    Ok(()) => {
                        tracing::info!("Shared templates loaded.");
                        return;
                    }
                    Err(error) => tracing::debug!(%error, "Shared templates still unavailable."),
                }
            }
        });
    }
    Ok(Scoring {
        db,
        handler,
        outbox,
        embedder,
    })
}

impl Scoring {
    /// Readiness of a scoring worker: database, broker (`broker` is the consumer's
    /// connected flag), model and shared templates.
    pub fn readiness(&self, broker: Arc<std::sync::atomic::AtomicBool>) -> ReadinessFn {
        let readiness_db = self.db.clone();
        let readiness_handler = self.handler.clone();
        let embedder = self.embedder.clone();
        Arc::new(move || {
            let db = readiness_db.clone();
            let broker = mq::service::broker_check(&broker);
            let embedder = embedder.clone();
            let templates = readiness_handler.templates_loaded();
            Box::pin(async move {
                vec![
                    ("database", db.ping().await.map_err(|e| e.to_string())),
                    broker,
                    ("model", model_probe(&embedder).await),
                    ("templates", templates),
                ]
            })
        })
    }
}

/// The inference thread answers: one short text embedded within [`MODEL_PROBE_TIMEOUT`].
async fn model_probe(embedder: &Embedder) -> Result<(), String> {
    match tokio::time::timeout(
        MODEL_PROBE_TIMEOUT,
        embedder.embed(vec!["ready".to_owned()]),
    )
    .await
    {
        Ok(Ok(v)) if v.len() == 1 => Ok(()),
        Ok(Ok(_)) => Err("the model returned no embedding".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "the model did not answer within {MODEL_PROBE_TIMEOUT:?}"
        )),
    }
}
