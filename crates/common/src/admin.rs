//! The admin server every binary runs on its own port (`LOGCANARY_ADMIN_ADDR`).
//!
//! - `GET /livez`: 200 while the process is serving; nothing else is checked, so a slow
//!   database never makes Kubernetes restart a healthy pod.
//! - `GET /readyz`: 200 when every dependency check passes, else 503 with the failing
//!   checks named; Kubernetes stops routing to (or scaling on) a pod that is not ready.
//! - `GET /metrics`: Prometheus text format, from the process-wide `metrics` recorder.
//!
//! Kept off the public port so probes and scrapes never compete with client traffic and
//! metrics are not exposed to clients.

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use actix_web::{web, App, HttpResponse, HttpServer};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use std::sync::OnceLock;

/// Result of one readiness check: its name and `Err(reason)` when not ready.
pub type CheckResult = (&'static str, Result<(), String>);

/// A readiness probe: runs every check the binary depends on.
pub type ReadinessFn =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Vec<CheckResult>> + Send>> + Send + Sync>;

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets in seconds, from sub-millisecond HTTP handling to minute-long batches.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle).
pub fn metrics_handle() -> PrometheusHandle {
    METRICS
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                    SECONDS_BUCKETS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Suffix("_size".into()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0],
                    )
                })
                .expect("static histogram buckets are valid");
            let handle = builder
                .install_recorder()
                .expect("the metrics recorder is installed once per process");
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                })
                .expect("spawning the metrics upkeep thread");
            handle
        })
        .clone()
}

/// A running admin server; dropping it does not stop it, call [`AdminServer::stop`].
pub struct AdminServer {
    pub addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
}

impl AdminServer {
    /// Binds `addr` (port 0 picks a free port) and serves the three endpoints.
    pub fn start(addr: SocketAddr, readiness: ReadinessFn) -> std::io::Result<Self> {
        let metrics = metrics_handle();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(readiness.clone()))
                .app_data(web::Data::new(metrics.clone()))
                .route("/livez", web::get().to(livez))
                .route("/readyz", web::get().to(readyz))
                .route("/metrics", web::get().to(metrics_text))
                .default_service(web::to(|| async {
                    HttpResponse::NotFound().json(json!({"detail": "Not found."}))
                }))
        })
        .workers(1)
        .disable_signals()
        .bind(addr)?;
        let addr = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| std::io::Error::other("admin server bound no address"))?;
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self { addr, handle })
    }

    /// Stops accepting connections and waits for open requests.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn readyz(readiness: web::Data<ReadinessFn>) -> HttpResponse {
    let results = (readiness.get_ref())().await;
    let ready = results.iter().all(|(_, r)| r.is_ok());
    let checks: serde_json::Map<String, serde_json::Value> = results
        .into_iter()
        .map(|(name, r)| {
            let v = match r {
                Ok(()) => json!("ok"),
                Err(reason) => json!(reason),
            };
            (name.to_owned(), v)
        })
        .collect();
    let body = json!({"status": if ready { "ready" } else { "not ready" }, "checks": checks});
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics_text(handle: web::Data<PrometheusHandle>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render())
}
