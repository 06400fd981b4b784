//! Building and running the ingest API: used by `main` and, on port 0, by the tests.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use actix_web::{
    dev::{Server, Service},
    http::header::{HeaderName, HeaderValue},
    web, App, HttpMessage, HttpServer,
};
use anyhow::Context;
use common::admin::{AdminServer, ReadinessFn};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    access::BearerTokens,
    auth::{ClaimedSignature, Verifier},
    body::{body_timeout, BodyBudget},
    broker::{self, QueueDepths},
    config::Settings,
    errors, fallback,
    ingest::Ingestor,
    review::ReviewCache,
    routes,
    state::AppState,
};

pub struct Application {
    port: u16,
    admin_port: u16,
    server: Server,
    admin: AdminServer,
    ingestor: Ingestor,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The `method` label of the HTTP metrics: the standard methods by name, anything else
/// (a client can send any token) as `other`, so clients cannot create series at will.
fn method_label(method: &actix_web::http::Method) -> String {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    let name = method.as_str();
    if KNOWN.contains(&name) {
        name.to_owned()
    } else {
        "other".to_owned()
    }
}

impl Application {
    /// Binds both ports (0 picks free ones) and prepares the server; does not need the
    /// database or the broker to be up (readiness reports them).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let keys = settings.checked_keys().map_err(anyhow::Error::msg)?;
        let production = settings.production();
        let reads_open = !production && settings.read_token.is_none();
        if reads_open {
            tracing::warn!(
                "Reads are open: LOGCANARY_ENV=development and LOGCANARY_READ_TOKEN is not set, so anyone who reaches this port reads every entry, alert and task. Production requires a credential on every read."
            );
        }
        let legacy = settings.legacy_signatures();
        if legacy {
            tracing::warn!("Plain body signatures are accepted on the old API's POST endpoints (LOGCANARY_HMAC_LEGACY); they cannot be told from replays.");
        }
        let db = db::Db::connect_lazy_with(
            settings.service.database_url(),
            settings.service.db_pool_size,
            Some(settings.write_statement_timeout()),
        )
        .context("creating the database pool (DATABASE_URL)")?;
        let read_db = db::Db::connect_lazy_with(
            settings.service.database_url(),
            settings.read_pool_size,
            Some(settings.read_statement_timeout()),
        )
        .context("creating the read pool (DATABASE_URL)")?;
        let publisher = broker::publisher(
            settings.service.amqp_url(),
            mq::Topology::new(settings.service.amqp_prefix.clone())
                .with_quorum_queues(settings.service.amqp_quorum),
        );
        let ingestor = Ingestor::start(
            db.clone(),
            outbox::Outbox::new(db.clone(), publisher.clone()),
            settings.committers,
        );
        let drain = ingestor.clone();
        let verifier = Verifier::new(
            keys,
            db.clone(),
            legacy,
            production,
            settings.hmac_tolerance(),
            settings.replay_guard,
        );
        let api_tokens = crate::tokens::ApiTokens::new(
            settings.api_tokens.clone().unwrap_or_default(),
            db.clone(),
        );
        let state = web::Data::new(AppState {
            db: db.clone(),
            read_db,
            ingestor,
            verifier,
            api_tokens,
            max_body_bytes: settings.max_body_bytes,
            body_budget: BodyBudget::new(settings.max_inflight_body_bytes),
            body_timeout: body_timeout(settings.body_timeout_secs),
            tokens: BearerTokens::new(
                settings.read_token.clone(),
                settings.dashboard_token.clone(),
            ),
            reads_open,
            anomaly_threshold: settings.anomaly_threshold as f32,
            queue_depths: QueueDepths::new(publisher.clone()),
            review_cache: ReviewCache::default(),
        });

        let readiness_db = db.clone();
        let readiness_pub = publisher.clone();
        let readiness: ReadinessFn = Arc::new(move || {
            let db = readiness_db.clone();
            let publisher = readiness_pub.clone();
            Box::pin(async move {
                let database = db.ping().await.map_err(|e| e.to_string());
                metrics::gauge!("logcanary_amqp_connected").set(if publisher.is_connected() {
                    1.0
                } else {
                    0.0
                });
                // The broker is not required: entries are accepted and relayed later.
                vec![("database", database)]
            })
        });
        let admin = AdminServer::bind(settings.admin_addr, readiness)?;

        let mut server = HttpServer::new(move || {
            let verifier = state.verifier.clone();
            App::new()
                .app_data(state.clone())
                .app_data(errors::query_config())
                .app_data(errors::path_config())
                .wrap_fn(move |req, srv| {
                    let verifier = verifier.clone();
                    let request_id = req
                        .headers()
                        .get(&REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .filter(|v| !v.is_empty() && v.len() <= 128)
                        .map(str::to_owned)
                        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
                    let method = method_label(req.method());
                    let span = tracing::info_span!("http", %request_id, %method, %route);
                    let started = Instant::now();
                    let fut = srv.call(req);
                    async move {
                        let mut res = fut.await?;
                        let status = res.status();
                        // A failed request stored nothing: give back the signature it
                        // claimed, before the client can retry.
                        let claimed = res
                            .request()
                            .extensions()
                            .get::<ClaimedSignature>()
                            .copied();
                        if let (true, Some(claimed)) = (status.is_server_error(), claimed) {
                            verifier.release(claimed).await;
                        }
                        if let Ok(v) = HeaderValue::from_str(&request_id) {
                            res.headers_mut().insert(REQUEST_ID, v);
                        }
                        let elapsed = started.elapsed().as_secs_f64();
                        let labels = [
                            ("route", route.clone()),
                            ("method", method.clone()),
                            ("status", status.as_u16().to_string()),
                        ];
                        metrics::counter!("logcanary_http_requests_total", &labels).increment(1);
                        metrics::histogram!(
                            "logcanary_http_request_duration_seconds",
                            &labels[..2]
                        )
                        .record(elapsed);
                        if status.is_server_error() {
                            tracing::error!(status = status.as_u16(), elapsed, "Request failed.");
                        } else if status.is_client_error() {
                            tracing::info!(status = status.as_u16(), elapsed, "Request rejected.");
                        } else {
                            tracing::debug!(status = status.as_u16(), elapsed, "Request served.");
                        }
                        Ok(res)
                    }
                    .instrument(span)
                })
                .configure(routes::configure)
                .default_service(web::to(fallback::not_found))
        })
        .disable_signals()
        .shutdown_timeout(25);
        if let Some(workers) = settings.http_workers {
            server = server.workers(workers);
        }
        let server = server.bind(settings.http_addr).with_context(|| {
            format!(
                "binding the API address {} (LOGCANARY_HTTP_ADDR)",
                settings.http_addr
            )
        })?;
        let port = server
            .addrs()
            .first()
            .map(|a| a.port())
            .context("the API server bound no address")?;
        Ok(Self {
            port,
            admin_port: admin.addr.port(),
            server: server.run(),
            admin,
            ingestor: drain,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// Serves until `shutdown` fires, then stops accepting, finishes open requests
    /// (their commits included) and returns.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let server = tokio::spawn(self.server);
        shutdown.cancelled().await;
        handle.stop(true).await;
        let _ = server.await;
        // Committed entries whose tasks are still on their way to the broker: publish them
        // now rather than leave them to the relay.
        if !self.ingestor.drain(Duration::from_secs(10)).await {
            tracing::warn!(
                "Some committed tasks were not published before exit; the relay will publish them."
            );
        }
        self.admin.stop().await;
        Ok(())
    }
}
