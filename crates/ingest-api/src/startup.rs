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
    auth::{ClaimedSignature, Verifier},
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

impl Application {
    /// Binds both ports (0 picks free ones) and prepares the server; does not need the
    /// database or the broker to be up (readiness reports them).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let keys = match settings.hmac_keys.clone() {
            Some(keys) => keys.0,
            None if settings.environment == "production" => {
                anyhow::bail!("LOGCANARY_HMAC_KEYS must be set when LOGCANARY_ENV=production")
            }
            None => {
                tracing::warn!(
                    "LOGCANARY_HMAC_KEYS is not set; using the development key default:dev-secret."
                );
                vec![("default".to_owned(), "dev-secret".to_owned())]
            }
        };
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
            settings.hmac_legacy,
            settings.hmac_tolerance(),
            settings.replay_guard,
        );
        let state = web::Data::new(AppState {
            db: db.clone(),
            read_db,
            ingestor,
            verifier,
            max_body_bytes: settings.max_body_bytes,
            read_token: settings.read_token.clone(),
            dashboard_token: settings
                .dashboard_token
                .clone()
                .filter(|t| !t.expose().trim().is_empty()),
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
                    let method = req.method().to_string();
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
