//! The real-time path through the real binaries: entries stored by ingest-api, a
//! `POST /api/real-time-analysis/`, and realtime-worker scoring them, alerting on critical
//! anomalies and on the cluster they form, without the periodic analysis.

use std::time::Duration;

use chrono::Utc;
use logcanary_e2e::Stack;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(60);

fn entry_at(seconds_ago: i64, severity: &str, message: &str) -> Value {
    json!({
        "timestamp": (Utc::now() - chrono::Duration::seconds(seconds_ago)).to_rfc3339(),
        "severity": severity,
        "message": message,
        "source": "checkout",
    })
}

#[tokio::test]
async fn a_burst_of_critical_anomalies_alerts_at_once_and_forms_a_cluster() {
    // No analysis worker: only the real-time worker scores.
    let stack = Stack::start_api(&[]).await;
    let (mut worker, admin_port) = stack.spawn_realtime_worker(&[]).await;
    let admin = format!("http://127.0.0.1:{admin_port}");
    test_support::wait_http_ok(&format!("{admin}/readyz"), T).await;

    let mut entries: Vec<Value> = (0..6)
        .map(|i| entry_at(120 - i, "INFO", &format!("GET /cart/{i} served in {i} ms")))
        .collect();
    for (i, message) in [
        "Payment gateway timeout contacting acquiring bank",
        "Database connection pool exhausted after 30 s",
        "Kernel OOM killer terminated checkout process",
        "TLS handshake failed with upstream inventory service",
    ]
    .into_iter()
    .enumerate()
    {
        entries.push(entry_at(60 - i as i64 * 5, "CRITICAL", message));
    }
    let (status, batch) = stack
        .post_signed("/api/batch-analysis/", &json!({"log_entries": entries}))
        .await;
    assert_eq!(status, 202, "{batch}");
    let ids: Vec<i64> = batch["log_entry_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();

    let (status, accepted) = stack
        .post_signed("/api/real-time-analysis/", &json!({"log_entry_ids": ids}))
        .await;
    assert_eq!(status, 202, "{accepted}");
    let task_id = accepted["task_id"].as_str().unwrap();
    let task = stack.wait_task(task_id, "SUCCESS", T).await;
    assert_eq!(task["result"]["processed"], 10, "{task}");
    let anomalies = task["result"]["anomalies"].as_i64().unwrap();
    assert!(anomalies >= 3, "the critical burst is anomalous: {task}");

    // Every entry is scored and readable.
    for id in &ids {
        let e = stack.get(&format!("/api/logs/{id}/")).await;
        assert_eq!(e["status"], "analyzed", "{e}");
    }

    // Critical anomalies queued their alerts in the scoring transaction.
    let critical = stack
        .db
        .count(
            "SELECT count(*) FROM tasks WHERE task_name = 'logs.tasks.send_critical_anomaly_alert'",
        )
        .await;
    assert!(critical >= 3, "{critical} critical alerts");

    // The sliding window saw the cluster as it formed.
    let patterns = test_support::eventually("a real-time cluster", T, || async {
        let page = stack.get("/api/patterns/?kind=anomaly_cluster").await;
        let results = page["results"].as_array().cloned().unwrap_or_default();
        (!results.is_empty()).then_some(results)
    })
    .await;
    let cluster = &patterns[0];
    assert_eq!(cluster["source"], "checkout");
    assert_eq!(cluster["details"]["detected_by"], "realtime-worker");
    assert_eq!(cluster["task_id"], task_id);
    assert!(cluster["log_entry_ids"].as_array().unwrap().len() >= 3);
    let task = stack.get(&format!("/api/task-status/{task_id}/")).await;
    assert_eq!(
        task["result"]["patterns"][0]["kind"], "anomaly_cluster",
        "{task}"
    );
    assert_eq!(task["result"]["pattern_alerts_queued"], 1, "{task}");

    // Its alert task was committed with it and is published right after the commit (the
    // outbox records `published_at` once the broker confirms, a moment later).
    let sql = format!(
        "SELECT count(*) FROM tasks WHERE task_name = 'logs.tasks.send_pattern_alert' \
         AND (args->>'pattern_detection_id')::bigint = {} AND published_at IS NOT NULL",
        cluster["id"]
    );
    test_support::eventually("the pattern alert task published", T, || async {
        (stack.db.count(&sql).await == 1).then_some(())
    })
    .await;
    let depth = stack
        .queue_depth(&stack.topology().queue("notifications"))
        .await;
    assert_eq!(
        depth as i64,
        critical + 1,
        "alerts waiting for the notifier"
    );

    // The same entries again (a second later: the same signed body within a second is a
    // replay) are not counted twice: no second cluster, no second alert.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, again) = stack
        .post_signed("/api/real-time-analysis/", &json!({"log_entry_ids": ids}))
        .await;
    assert_eq!(status, 202);
    let second = stack
        .wait_task(again["task_id"].as_str().unwrap(), "SUCCESS", T)
        .await;
    assert_eq!(
        second["result"]["processed"], 10,
        "already scored entries are reused"
    );
    assert_eq!(
        stack
            .db
            .count("SELECT count(*) FROM tasks WHERE task_name = 'logs.tasks.send_pattern_alert'")
            .await,
        1,
        "the same burst does not alert twice"
    );

    let metrics = stack
        .client
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("logcanary_realtime_patterns_total"),
        "{metrics}"
    );

    let status = worker.terminate();
    assert!(
        status.success(),
        "realtime-worker exits 0 on SIGTERM: {status:?}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn the_realtime_worker_refuses_other_queues_at_start_up() {
    let out = std::process::Command::new(test_support::bin_path("realtime-worker"))
        .env("LOGCANARY_QUEUES", "analysis")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("LOGCANARY_QUEUES") && err.contains("real_time"),
        "{err}"
    );
}
