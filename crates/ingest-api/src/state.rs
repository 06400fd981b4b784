//! What every request shares, built once by [`crate::startup::Application::build`].

use crate::{
    auth::Verifier, broker::QueueDepths, config::Secret, ingest::Ingestor, review::ReviewCache,
};

/// Shared by every request.
pub struct AppState {
    /// The write pool: ingest, signatures, feedback, periodic-task changes.
    pub db: db::Db,
    /// The read pool of every GET, with its own size and statement time-out
    /// (`LOGCANARY_READ_POOL_SIZE`, `LOGCANARY_READ_STATEMENT_TIMEOUT_MS`).
    pub read_db: db::Db,
    pub ingestor: Ingestor,
    pub verifier: Verifier,
    pub max_body_bytes: usize,
    /// `LOGCANARY_READ_TOKEN`: reads need it as a bearer token when set.
    pub read_token: Option<Secret>,
    /// `LOGCANARY_DASHBOARD_TOKEN` (not empty): the operator token of the dashboard's
    /// feedback buttons; `None` turns page feedback off.
    pub dashboard_token: Option<Secret>,
    /// The workers' anomaly threshold (`LOGCANARY_ANOMALY_THRESHOLD`), for the review queue.
    pub anomaly_threshold: f32,
    /// Broker queue depths for the dashboard, read through the publisher's connection.
    pub queue_depths: QueueDepths,
    /// Recent answers of `GET /api/review/`.
    pub review_cache: ReviewCache,
}
