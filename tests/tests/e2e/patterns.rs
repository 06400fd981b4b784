//! Pattern analysis through the real binaries: entries scored by analysis-worker, then
//! `POST /api/pattern-analysis/`, detections stored once, listed, and alerted.

use std::time::Duration;

use chrono::Utc;
use logcanary_e2e::Stack;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(90);

fn entry_at(seconds_ago: i64, severity: &str, message: &str) -> Value {
    json!({
        "timestamp": (Utc::now() - chrono::Duration::seconds(seconds_ago)).to_rfc3339(),
        "severity": severity,
        "message": message,
        "source": "api",
    })
}

#[tokio::test]
async fn pattern_analysis_finds_a_spike_and_a_cluster_once() {
    let stack = Stack::start(&[]).await;
    // Two hours of routine lines every two minutes, then ten payment errors within two
    // minutes, half an hour ago.
    let mut entries: Vec<Value> = (0..60)
        .map(|i| {
            entry_at(
                7200 - i * 120,
                "INFO",
                &format!("GET /items/{i} served in {i} ms"),
            )
        })
        .collect();
    // Inside one 10-minute bucket, whatever the time now.
    let bucket = (Utc::now().timestamp() - 1800).div_euclid(600) * 600;
    for i in 0..10 {
        let at = chrono::DateTime::from_timestamp(bucket + 60 + i * 10, 0).unwrap();
        entries.push(json!({
            "timestamp": at.to_rfc3339(),
            "severity": "ERROR",
            "message": format!("Payment failed for order {}", 1000 + i),
            "source": "api",
        }));
    }
    let (status, batch) = stack
        .post_signed("/api/batch-analysis/", &json!({"log_entries": entries}))
        .await;
    assert_eq!(status, 202, "{batch}");
    stack
        .wait_task(batch["task_id"].as_str().unwrap(), "SUCCESS", T)
        .await;

    let (status, accepted) = stack
        .post_signed("/api/pattern-analysis/", &json!({"time_window_hours": 3}))
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        accepted["message"],
        "Pattern analysis started for 3 hour window"
    );
    let task = stack
        .wait_task(accepted["task_id"].as_str().unwrap(), "SUCCESS", T)
        .await;
    let result = &task["result"];
    assert_eq!(result["time_window_hours"], 3);
    assert_eq!(result["entries_analyzed"], 70, "{result}");
    assert_eq!(result["unscored_entries"], 0, "{result}");
    assert!(
        result["by_kind"]["error_spike"].as_i64() >= Some(1),
        "{result}"
    );
    assert!(
        result["by_kind"]["anomaly_cluster"].as_i64() >= Some(1),
        "{result}"
    );
    let found = result["patterns_found"].as_i64().unwrap();
    assert_eq!(result["new_patterns"], found);
    assert_eq!(result["alerts_queued"], found);

    let spikes = stack.get("/api/patterns/?kind=error_spike").await;
    let spike = &spikes["results"][0];
    assert_eq!(spike["source"], "api");
    assert_eq!(spike["details"]["peak_bucket_errors"], 10, "{spike}");
    assert_eq!(spike["log_entry_ids"].as_array().unwrap().len(), 10);

    // The alert tasks are published right after the commit; the outbox records
    // `published_at` once the broker confirms, a moment later.
    test_support::eventually("the pattern alert tasks published", T, || async {
        let published = stack
            .db
            .count("SELECT count(*) FROM tasks WHERE task_name = 'logs.tasks.send_pattern_alert' AND published_at IS NOT NULL")
            .await;
        (published == found).then_some(())
    })
    .await;

    // The same window again: nothing new stored, nothing alerted twice. (A second apart:
    // the same body signed in the same second would be a replay.)
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, again) = stack
        .post_signed("/api/pattern-analysis/", &json!({"time_window_hours": 3}))
        .await;
    let task = stack
        .wait_task(again["task_id"].as_str().unwrap(), "SUCCESS", T)
        .await;
    assert_eq!(task["result"]["patterns_found"], found, "{task}");
    assert_eq!(task["result"]["new_patterns"], 0, "{task}");
    assert_eq!(
        stack
            .db
            .count("SELECT count(*) FROM pattern_detections")
            .await,
        found
    );
    assert_eq!(
        stack
            .db
            .count("SELECT count(*) FROM tasks WHERE task_name = 'logs.tasks.send_pattern_alert'")
            .await,
        found
    );
    stack.stop().await;
}

#[tokio::test]
async fn an_empty_window_succeeds_with_nothing_found() {
    let stack = Stack::start(&[]).await;
    let (_, accepted) = stack
        .post_signed("/api/pattern-analysis/", &json!({"time_window_hours": 1}))
        .await;
    let task = stack
        .wait_task(accepted["task_id"].as_str().unwrap(), "SUCCESS", T)
        .await;
    assert_eq!(task["result"]["patterns_found"], 0, "{task}");
    assert_eq!(task["result"]["entries_analyzed"], 0);
    assert_eq!(stack.get("/api/patterns/").await["results"], json!([]));
    stack.stop().await;
}
