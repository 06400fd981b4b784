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
            describe_metrics();
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

/// HELP text for every metric any binary records (Prometheus and `promtool check metrics`
/// want one); a metric a binary never records is not rendered, so one list serves all.
/// A new metric gets its line here.
fn describe_metrics() {
    use metrics::Unit;
    metrics::describe_counter!(
        "logcanary_http_requests_total",
        "HTTP requests served, by route pattern, method and status."
    );
    metrics::describe_histogram!(
        "logcanary_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by route pattern and method."
    );
    metrics::describe_gauge!(
        "logcanary_http_inflight_body_bytes",
        Unit::Bytes,
        "Request-body bytes held by requests being read (bounded by LOGCANARY_MAX_INFLIGHT_BODY_BYTES)."
    );
    metrics::describe_counter!(
        "logcanary_http_body_budget_refusals_total",
        "Requests answered 503 because the in-flight body budget was full."
    );
    metrics::describe_counter!(
        "logcanary_entries_ingested_total",
        "Log entries accepted by the API."
    );
    metrics::describe_counter!(
        "logcanary_shipper_entries_total",
        "Log entries accepted through a shipper protocol, by protocol (otlp, loki, elasticsearch)."
    );
    metrics::describe_counter!(
        "logcanary_shipper_records_refused_total",
        "Records of shipper requests refused one by one (no body, too long, bad time), by protocol."
    );
    metrics::describe_histogram!(
        "logcanary_ingest_commit_seconds",
        Unit::Seconds,
        "Time to commit one group of ingest transactions."
    );
    metrics::describe_histogram!(
        "logcanary_ingest_commit_size",
        "Requests committed together in one ingest transaction group."
    );
    metrics::describe_counter!(
        "logcanary_publish_failures_total",
        "Task publishes from the API that failed (the relay sends them later)."
    );
    metrics::describe_histogram!(
        "logcanary_publish_seconds",
        Unit::Seconds,
        "Time to publish tasks from the API, confirms included."
    );
    metrics::describe_counter!(
        "logcanary_feedback_total",
        "Template feedback received, by label."
    );
    metrics::describe_counter!(
        "logcanary_tasks_total",
        "Tasks finished, by task name and outcome."
    );
    metrics::describe_counter!(
        "logcanary_entries_scored_total",
        "Log entries scored by the detector."
    );
    metrics::describe_counter!(
        "logcanary_anomalies_flagged_total",
        "Log entries flagged as anomalous."
    );
    metrics::describe_counter!(
        "logcanary_relearn_rescored_total",
        "Stored entries re-scored as normal because their template was learned as normal (flagged by level alone, outside bursts)."
    );
    metrics::describe_counter!(
        "logcanary_label_applied_at_write_total",
        "Entries given their template's operator label when written, because the worker had not pulled the label yet when it scored them."
    );
    metrics::describe_counter!(
        "logcanary_relearn_in_flight_total",
        "Templates whose learning re-score ran again when a batch was written, because other replicas' lines had taught the template while this worker scored the batch, or the batch's lines filled a gap in time other replicas' lines had left."
    );
    metrics::describe_gauge!(
        "logcanary_templates_known",
        "Templates the worker's detector holds in memory (at most LOGCANARY_MAX_TEMPLATES)."
    );
    metrics::describe_gauge!(
        "logcanary_stream_settled",
        "How settled the log stream was after the worker's latest batch, by every worker's lines: 1 when none of its latest 300 lines started a template, falling to 0 when 5% did (a pattern first seen then counts for up to LOGCANARY_SETTLED_WEIGHT more for being new)."
    );
    metrics::describe_counter!(
        "logcanary_templates_evicted_total",
        "Templates the worker's detector evicted to stay within LOGCANARY_MAX_TEMPLATES (least recently seen first)."
    );
    metrics::describe_counter!(
        "logcanary_templates_restored_total",
        "Templates brought from Postgres before scoring because a batch's lines belong to them: evicted ones whose lines came back, and ones another replica stored since the last pull."
    );
    metrics::describe_counter!(
        "logcanary_templates_twinned_total",
        "New templates whose lines went to the row of the same pattern another replica had stored first under another id (two workers met one new message at once)."
    );
    metrics::describe_histogram!(
        "logcanary_scoring_seconds",
        Unit::Seconds,
        "Inference time of one scoring batch (embedding included)."
    );
    metrics::describe_histogram!(
        "logcanary_scoring_stage_seconds",
        Unit::Seconds,
        "Time of one stage of a scoring batch: fetch (read tasks and entries), sync (pull shared templates), score (the detector; embed is the model's share of it), write (the scoring transaction), publish (alert tasks)."
    );
    metrics::describe_histogram!(
        "logcanary_inference_batch_size",
        "Log lines per scoring batch."
    );
    metrics::describe_counter!(
        "logcanary_embedding_cache_hits_total",
        "Scored lines whose template embedding was cached."
    );
    metrics::describe_counter!(
        "logcanary_embedding_cache_misses_total",
        "Template texts that had to be run through the model."
    );
    metrics::describe_histogram!(
        "logcanary_pattern_analysis_seconds",
        Unit::Seconds,
        "Time of one pattern analysis run."
    );
    metrics::describe_counter!(
        "logcanary_patterns_detected_total",
        "Patterns detected by periodic analysis, by kind."
    );
    metrics::describe_counter!(
        "logcanary_retention_deleted_total",
        "Rows or partitions removed by retention, by kind."
    );
    metrics::describe_gauge!(
        "logcanary_realtime_sources",
        "Sources with a live sliding window in this realtime worker."
    );
    metrics::describe_counter!(
        "logcanary_realtime_sources_evicted_total",
        "Sources whose sliding windows were dropped to stay within LOGCANARY_MAX_SOURCES (least recently active first)."
    );
    metrics::describe_counter!(
        "logcanary_realtime_patterns_total",
        "Patterns detected in real-time windows, by kind."
    );
    metrics::describe_counter!(
        "logcanary_alerts_total",
        "Alerts by channel and final status (sent, failed, suppressed)."
    );
    metrics::describe_counter!(
        "logcanary_alert_delivery_attempts_total",
        "Alert delivery attempts by channel and outcome."
    );
    metrics::describe_histogram!(
        "logcanary_alert_delivery_seconds",
        Unit::Seconds,
        "Time of one alert delivery attempt, by channel."
    );
    metrics::describe_counter!(
        "logcanary_incident_updates_total",
        "Incidents on Alertmanager and PagerDuty sent again or ended, by channel, action (repost, resolve) and outcome (sent, failed)."
    );
    metrics::describe_histogram!(
        "logcanary_scheduler_lag_seconds",
        Unit::Seconds,
        "Delay between a periodic task's due time and its firing."
    );
    metrics::describe_counter!(
        "logcanary_scheduler_fired_total",
        "Periodic tasks fired, by task."
    );
    metrics::describe_gauge!(
        "logcanary_scheduler_leader",
        "1 while this scheduler holds the leader lock."
    );
    metrics::describe_counter!(
        "logcanary_relay_republished_total",
        "PENDING tasks re-published by the outbox relay."
    );
    metrics::describe_counter!(
        "logcanary_relay_publish_failures_total",
        "Relay publishes that failed (tried again later)."
    );
    metrics::describe_counter!(
        "logcanary_relay_given_up_total",
        "Tasks the relay gave up on and marked failed."
    );
    metrics::describe_gauge!(
        "logcanary_relay_backlog",
        "Tasks stuck in PENDING waiting for the relay."
    );
    metrics::describe_gauge!(
        "logcanary_db_pool_connections",
        "Open connections in the database pool."
    );
    metrics::describe_gauge!(
        "logcanary_db_pool_idle_connections",
        "Idle connections in the database pool."
    );
    metrics::describe_gauge!(
        "logcanary_amqp_connected",
        "1 while the process has a live AMQP connection."
    );
    metrics::describe_counter!(
        "logcanary_mq_published_total",
        "Messages published, by queue and outcome."
    );
    metrics::describe_counter!(
        "logcanary_mq_deliveries_total",
        "Deliveries settled, by queue and outcome (done, retried, dead_lettered, poison)."
    );
    metrics::describe_histogram!(
        "logcanary_mq_batch_size",
        "Deliveries handed to the handler in one batch."
    );
    metrics::describe_histogram!(
        "logcanary_mq_processing_seconds",
        Unit::Seconds,
        "Handler time for one batch of deliveries."
    );
    metrics::describe_histogram!(
        "logcanary_queue_latency_seconds",
        Unit::Seconds,
        "Enqueue to done for a task, by queue (retries included)."
    );
}

/// A running admin server; dropping it does not stop it, call [`AdminServer::stop`].
pub struct AdminServer {
    pub addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
}

impl AdminServer {
    /// Binds `addr` (port 0 picks a free port) and serves the three endpoints.
    /// [`AdminServer::start`] with the error every binary reports: the address and the
    /// variable that set it (`LOGCANARY_ADMIN_ADDR`).
    ///
    /// # Errors
    ///
    /// The address cannot be bound.
    pub fn bind(addr: SocketAddr, readiness: ReadinessFn) -> anyhow::Result<Self> {
        use anyhow::Context;
        Self::start(addr, readiness)
            .with_context(|| format!("binding the admin address {addr} (LOGCANARY_ADMIN_ADDR)"))
    }

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
