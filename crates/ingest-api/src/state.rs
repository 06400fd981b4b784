//! What every request shares, built once by [`crate::startup::Application::build`].

use std::time::Duration;

use crate::{
    access::BearerTokens, auth::Verifier, body::BodyBudget, broker::QueueDepths, ingest::Ingestor,
    review::ReviewCache, tokens::ApiTokens,
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
    /// The shippers' API tokens (`LOGCANARY_API_TOKENS` and `api_tokens`).
    pub api_tokens: ApiTokens,
    /// `LOGCANARY_MAX_BODY_BYTES`: the batch endpoint's body limit.
    pub max_body_bytes: usize,
    /// Body bytes all requests may hold together (`LOGCANARY_MAX_INFLIGHT_BODY_BYTES`).
    pub body_budget: BodyBudget,
    /// `LOGCANARY_BODY_TIMEOUT_SECS`.
    pub body_timeout: Duration,
    /// The bearer tokens (`LOGCANARY_READ_TOKEN`, `LOGCANARY_DASHBOARD_TOKEN`).
    pub tokens: BearerTokens,
    /// Reads need no credential: development, and no read token set.
    pub reads_open: bool,
    /// The workers' anomaly threshold (`LOGCANARY_ANOMALY_THRESHOLD`), for the review queue.
    pub anomaly_threshold: f32,
    /// Broker queue depths for the dashboard, read through the publisher's connection.
    pub queue_depths: QueueDepths,
    /// Recent answers of `GET /api/review/`.
    pub review_cache: ReviewCache,
}
