//! How many alerts per second the notifier sustains against a local webhook receiver,
//! end to end through the real broker and Postgres: N alert tasks (distinct messages, so
//! nothing is suppressed) are stored and published at once, and the clock stops when
//! every task is SUCCESS.
//!
//! ```sh
//! cargo run --release -p logcanary-notifier --example bench_notifier -- [alerts] [batch_max]
//! ```
//!
//! `batch_max` 1 sends one webhook per alert (the delivery path's own rate); the default
//! (100) groups what arrives together, as in production.

use mq::service::ConsumerSettings;
use std::time::{Duration, Instant};

use contracts::{queues, tasks, v1};
use db::models::{NewLogEntry, NewTask};
use logcanary_notifier::{config::Settings, run};
use serde_json::json;
use test_support::{webhook::WebhookSink, TestDb};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(2000), |a| a.parse())?;
    let batch_max: u32 = args.next().map_or(Ok(100), |a| a.parse())?;
    let hook = WebhookSink::start().await;
    let db = TestDb::new().await;
    let prefix = test_support::queue_prefix();
    let settings = Settings::load_from([
        "notifier".to_owned(),
        format!("--database-url={}", db.url),
        format!("--amqp-url={}", test_support::amqp_url()),
        format!("--amqp-prefix={prefix}"),
        "--admin-addr=127.0.0.1:0".into(),
        format!("--webhook-urls={}", hook.url("/bench")),
        format!("--batch-max={batch_max}"),
        "--group-window-ms=20".into(),
        "--concurrency=2".into(),
        "--prefetch=512".into(),
        "--db-pool-size=8".into(),
    ])?;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(run(settings, shutdown.clone()));
    let publisher = mq::Publisher::connect(
        &test_support::amqp_url(),
        mq::Topology::new(prefix.clone()),
        "bench-notifier",
    )
    .await?;

    let task_ids: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
    let t = task_ids.clone();
    let entry_ids = db
        .db
        .run(move |c| {
            let entries: Vec<NewLogEntry> = (0..t.len())
                .map(|i| NewLogEntry {
                    logged_at: chrono::Utc::now(),
                    severity: "CRITICAL".into(),
                    message: format!("distinct failure number {i}"),
                    source: Some("bench".into()),
                })
                .collect();
            let ids = db::entries::insert_entries(c, &entries, &vec![Uuid::nil(); t.len()])?;
            let rows: Vec<NewTask> = t
                .iter()
                .zip(&ids)
                .map(|(id, e)| NewTask {
                    id: *id,
                    task_name: tasks::SEND_CRITICAL_ANOMALY_ALERT.into(),
                    queue: queues::NOTIFICATIONS.into(),
                    args: json!({"log_entry_id": e}),
                })
                .collect();
            db::tasks::insert(c, &rows)?;
            Ok(ids)
        })
        .await?;
    let msgs: Vec<v1::SendCriticalAnomalyAlert> = task_ids
        .iter()
        .zip(&entry_ids)
        .map(|(t, e)| v1::SendCriticalAnomalyAlert {
            task_id: t.to_string(),
            log_entry_id: *e,
            anomaly_score: 0.9,
            summary: "bench".into(),
        })
        .collect();

    let started = Instant::now();
    for chunk in msgs.chunks(500) {
        publisher.publish_many(chunk).await?;
    }
    loop {
        let done = db
            .count("SELECT count(*) FROM tasks WHERE status = 'SUCCESS'")
            .await;
        if done as usize >= n {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "only {done} of {n} alerts done after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let messages = hook.delivered().len();
    println!(
        "notifier: {n} alerts in {secs:.2} s = {:.0} alerts/s; {messages} webhook messages ({:.0} messages/s), batch_max {batch_max}",
        n as f64 / secs,
        messages as f64 / secs
    );
    shutdown.cancel();
    running.await??;
    publisher.close().await;
    test_support::delete_queues(&prefix).await;
    Ok(())
}
