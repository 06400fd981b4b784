//! Time from the POST of a critical entry to the arrival of its webhook, through the real
//! binaries (`ingest-api`, `analysis-worker`, `notifier`; build them first with
//! `cargo build --release --workspace --bins`), with background load on the API.
//!
//! ```sh
//! cargo run --release -p logcanary-notifier --example alert_latency -- [seconds] [entries/s]
//! ```
//!
//! Defaults: 30 s at 1 000 entries/s (batches of 100 INFO lines every 100 ms), one
//! critical probe per second, each with words of its own so the detector finds it novel.
//! Cooldown 0 (nothing suppressed), grouping window 100 ms. Prints p50/p99/max over the
//! probes that were flagged anomalous (a probe the detector does not flag raises no alert).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::{free_port, webhook::WebhookSink, Spawned, TestDb, TEST_KEY_ID, TEST_SECRET};

const WORDS: [&str; 16] = [
    "kernel", "quantum", "spindle", "firmware", "raft", "ledger", "cache", "tunnel", "vault",
    "rotor", "beacon", "pylon", "sensor", "clutch", "valve", "relay",
];

fn entry(severity: &str, message: String) -> Value {
    json!({"timestamp": chrono::Utc::now().to_rfc3339(), "severity": severity,
           "message": message, "source": "latency"})
}

async fn post(client: &reqwest::Client, api: &str, path: &str, body: &Value) -> Option<Value> {
    let bytes = serde_json::to_vec(body).ok()?;
    let resp = client
        .post(format!("{api}{path}"))
        .header("Content-Type", "application/json")
        .header(
            "X-HMAC-Signature",
            test_support::timestamped_signature(&bytes),
        )
        .body(bytes)
        .send()
        .await
        .ok()?;
    resp.json().await.ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map_or(Ok(30), |a| a.parse())?;
    let rate: usize = args.next().map_or(Ok(1000), |a| a.parse())?;
    let hook = WebhookSink::start().await;
    let db = TestDb::new().await;
    let prefix = test_support::queue_prefix();
    let common = vec![
        ("DATABASE_URL", db.url.clone()),
        ("AMQP_URL", test_support::amqp_url()),
        ("LOGCANARY_AMQP_PREFIX", prefix.clone()),
        ("LOGCANARY_LOG_FORMAT", "json".to_owned()),
    ];
    let (api_port, api_admin, worker_admin, notifier_admin) =
        (free_port(), free_port(), free_port(), free_port());
    let mut env = common.clone();
    env.extend([
        ("LOGCANARY_HTTP_ADDR", format!("127.0.0.1:{api_port}")),
        ("LOGCANARY_ADMIN_ADDR", format!("127.0.0.1:{api_admin}")),
        (
            "LOGCANARY_HMAC_KEYS",
            format!("{TEST_KEY_ID}:{TEST_SECRET}"),
        ),
    ]);
    let mut api = Spawned::start("ingest-api", &[], &env, api_admin).await;
    let mut env = common.clone();
    env.extend([
        ("LOGCANARY_ADMIN_ADDR", format!("127.0.0.1:{worker_admin}")),
        ("LOGCANARY_WARMUP_LINES", "100".to_owned()),
    ]);
    let mut worker = Spawned::start("analysis-worker", &[], &env, worker_admin).await;
    let mut env = common;
    env.extend([
        (
            "LOGCANARY_ADMIN_ADDR",
            format!("127.0.0.1:{notifier_admin}"),
        ),
        ("LOGCANARY_WEBHOOK_URLS", hook.url("/latency")),
        ("LOGCANARY_ALERT_COOLDOWN_SECS", "0".to_owned()),
        ("LOGCANARY_ALERT_GROUP_WINDOW_MS", "100".to_owned()),
    ]);
    let mut notifier = Spawned::start("notifier", &[], &env, notifier_admin).await;
    let api_url = format!("http://127.0.0.1:{api_port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;

    // Warm the detector up with routine lines.
    let warm: Vec<Value> = (0..300)
        .map(|i| entry("INFO", format!("GET /api/items/{i} 200 in {} ms", i % 50)))
        .collect();
    post(
        &client,
        &api_url,
        "/api/batch-analysis/",
        &json!({"log_entries": warm}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let stop_at = Instant::now() + Duration::from_secs(seconds);
    let load = {
        let (client, api_url) = (client.clone(), api_url.clone());
        tokio::spawn(async move {
            let per_tick = (rate / 10).max(1);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut sent = 0usize;
            while Instant::now() < stop_at {
                tick.tick().await;
                let batch: Vec<Value> = (0..per_tick)
                    .map(|i| {
                        entry(
                            "INFO",
                            format!("GET /api/items/{} 200 in {} ms", sent + i, i % 50),
                        )
                    })
                    .collect();
                sent += per_tick;
                let (c, a) = (client.clone(), api_url.clone());
                tokio::spawn(async move {
                    post(
                        &c,
                        &a,
                        "/api/batch-analysis/",
                        &json!({"log_entries": batch}),
                    )
                    .await
                });
            }
            sent
        })
    };

    let mut probes: Vec<(i64, Instant)> = Vec::new();
    let mut i = 0usize;
    while Instant::now() < stop_at {
        let message = format!(
            "{} {} failure: {} subsystem unreachable",
            WORDS[i % 16],
            WORDS[(i / 16 + 3 * i + 1) % 16],
            WORDS[(i * 7 + 5) % 16]
        );
        let sent = Instant::now();
        if let Some(created) =
            post(&client, &api_url, "/api/logs/", &entry("CRITICAL", message)).await
        {
            if let Some(id) = created["id"].as_i64() {
                probes.push((id, sent));
            }
        }
        i += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let background = load.await?;
    tokio::time::sleep(Duration::from_secs(15)).await;

    let got = hook.delivered();
    let mut latencies: Vec<Duration> = probes
        .iter()
        .filter_map(|(id, sent)| {
            got.iter()
                .filter(|r| {
                    r.json()["logcanary"]["alerts"].as_array().is_some_and(|a| {
                        a.iter().any(|x| {
                            x["log_entry_ids"]
                                .as_array()
                                .is_some_and(|ids| ids.contains(&json!(id)))
                        })
                    })
                })
                .map(|r| r.at.saturating_duration_since(*sent))
                .min()
        })
        .collect();
    latencies.sort();
    println!(
        "alert latency (POST -> webhook) under {background} background entries in {seconds} s: {} of {} probes alerted; p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        probes.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    notifier.terminate();
    worker.terminate();
    api.terminate();
    test_support::delete_queues(&prefix).await;
    Ok(())
}
