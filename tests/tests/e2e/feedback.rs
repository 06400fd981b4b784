//! Operator feedback through the real binaries: an anomalous message pattern marked
//! normal through the API stops alerting in the worker, for its own later lines and for
//! semantically close ones, while unrelated new errors still alert.

use std::time::Duration;

use logcanary_e2e::{entry_now, Stack};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(60);

/// Posts one entry and returns it once the worker has analysed it.
async fn scored(stack: &Stack, severity: &str, message: &str) -> Value {
    let (status, created) = stack
        .post_signed("/api/logs/", &entry_now(severity, message))
        .await;
    assert_eq!(status, 201, "{created}");
    stack
        .wait_task(created["analysis_task_id"].as_str().unwrap(), "SUCCESS", T)
        .await;
    stack.get(&format!("/api/logs/{}/", created["id"])).await
}

#[tokio::test]
async fn a_pattern_marked_normal_stops_alerting_and_so_do_its_neighbours() {
    let stack = Stack::start(&[]).await;
    for message in [
        "Accepted publickey for deploy from 10.0.0.5 port 51234 ssh2",
        "session opened for user deploy by (uid=0)",
        "GET /api/health 200 3ms",
        "Connection to 10.0.0.7 closed",
        "cache refresh finished in 120 ms",
    ] {
        scored(&stack, "INFO", message).await;
    }

    let first = scored(
        &stack,
        "ERROR",
        "Error loading /usr/lib/x.so: permission denied",
    )
    .await;
    assert_eq!(first["is_anomaly"], true, "a new error pattern: {first}");

    let (status, out) = stack
        .post_signed(
            &format!("/api/logs/{}/feedback/", first["id"]),
            &json!({"label": "normal"}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["template"]["id"], first["template_id"]);
    assert_eq!(out["template"]["label"], "normal");

    // The same pattern again: quiet, and the summary says why.
    let again = scored(
        &stack,
        "ERROR",
        "Error loading /usr/lib/y.so: permission denied",
    )
    .await;
    assert_eq!(again["template_id"], first["template_id"], "{again}");
    assert_eq!(again["is_anomaly"], false, "{again}");
    assert!(
        again["summary"]
            .as_str()
            .unwrap()
            .contains("an operator marked this pattern normal"),
        "{again}"
    );

    // A different pattern that means the same (cosine above the 0.85 bar): the label
    // carries to it too.
    let neighbour = scored(
        &stack,
        "ERROR",
        "Error while loading library /usr/lib/x.so: permission denied",
    )
    .await;
    assert_ne!(
        neighbour["template_id"], first["template_id"],
        "{neighbour}"
    );
    assert_eq!(neighbour["is_anomaly"], false, "{neighbour}");
    assert!(
        neighbour["summary"]
            .as_str()
            .unwrap()
            .contains("which an operator marked normal, similarity"),
        "{neighbour}"
    );

    // The label did not silence everything: an unrelated new error still alerts.
    let unrelated = scored(
        &stack,
        "CRITICAL",
        "Kernel panic - not syncing: Attempted to kill init",
    )
    .await;
    assert_eq!(unrelated["is_anomaly"], true, "{unrelated}");

    let templates = stack.get("/api/templates/?ordering=-last_seen").await;
    let labelled: Vec<&Value> = templates["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["label"] == "normal")
        .collect();
    assert_eq!(labelled.len(), 1, "{templates}");
    assert_eq!(labelled[0]["count"], 2, "{templates}");
    // Every scored line is counted once in the shared templates.
    assert_eq!(
        stack.db.count("SELECT sum(count) FROM templates").await,
        stack
            .db
            .count("SELECT count(*) FROM log_entries WHERE analyzed_at IS NOT NULL")
            .await
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_second_replica_starts_from_the_shared_templates_and_labels() {
    let mut stack = Stack::start(&[]).await;
    for i in 0..4 {
        scored(&stack, "INFO", &format!("GET /api/health 200 {i}ms")).await;
    }
    let first = scored(&stack, "ERROR", "Disk /dev/sdb1 failed SMART check").await;
    assert_eq!(first["is_anomaly"], true, "{first}");
    let (status, _) = stack
        .post_signed(
            &format!("/api/logs/{}/feedback/", first["id"]),
            &json!({"label": "normal"}),
        )
        .await;
    assert_eq!(status, 200);

    // Replace the worker: the new one knows the template, its count and its label
    // from Postgres alone.
    stack.worker.as_mut().unwrap().terminate();
    stack.start_worker().await;
    let again = scored(&stack, "ERROR", "Disk /dev/sdc1 failed SMART check").await;
    assert_eq!(again["template_id"], first["template_id"], "{again}");
    assert_eq!(again["is_anomaly"], false, "{again}");
    let summary = again["summary"].as_str().unwrap();
    assert!(summary.contains("seen 1 time"), "{summary}");
    assert!(
        summary.contains("an operator marked this pattern normal"),
        "{summary}"
    );
    stack.stop().await;
}
