use serde_json::{json, Value};

use crate::helpers::{entry, spawn_app, spawn_app_with, Options};

#[tokio::test]
async fn a_signed_entry_is_stored_queued_and_answered_201() {
    let app = spawn_app().await;
    let body = json!({"timestamp": "2024-01-15T10:30:00Z", "severity": "ERROR",
                      "message": "Database connection failed after 3 retries", "source": "db-1"});
    let resp = app.post_signed("/api/logs/", &body).await;
    assert_eq!(resp.status(), 201);
    assert!(resp.headers().contains_key("x-request-id"));
    let out: Value = resp.json().await.unwrap();
    assert!(out["id"].as_i64().unwrap() > 0);
    assert_eq!(out["timestamp"], "2024-01-15T10:30:00Z");
    assert_eq!(out["severity"], "ERROR");
    assert_eq!(out["message"], "Database connection failed after 3 retries");
    assert_eq!(out["status"], "processing");
    let task_id = out["analysis_task_id"].as_str().unwrap();
    assert_eq!(app.counts().await, (1, 1));
    app.wait_queue_depth("analysis", 1).await;

    let task: Value = app
        .get(&format!("/api/task-status/{task_id}/"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(task["status"], "PENDING");
    assert_eq!(task["task_id"], task_id);
    for field in ["result", "error", "created_at", "started_at", "finished_at"] {
        assert!(task.get(field).is_some(), "task-status lacks {field}");
    }
    let stored: Value = app
        .get(&format!("/api/logs/{}/", out["id"]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored["source"], "db-1");
    assert_eq!(stored["analysis_task_id"], task_id);
    assert_eq!(stored["status"], "processing");
    assert!(stored["anomaly_score"].is_null());
    app.cleanup().await;
}

#[tokio::test]
async fn a_batch_is_stored_with_one_task() {
    let app = spawn_app().await;
    let entries: Vec<Value> = (0..250)
        .map(|i| entry("INFO", &format!("request {i} served")))
        .collect();
    let resp = app
        .post_signed("/api/batch-analysis/", &json!({"log_entries": entries}))
        .await;
    assert_eq!(resp.status(), 202);
    let out: Value = resp.json().await.unwrap();
    assert_eq!(out["count"], 250);
    let ids = out["log_entry_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 250);
    let ids: Vec<i64> = ids.iter().map(|v| v.as_i64().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids come back in input order"
    );
    assert!(out["message"].as_str().unwrap().contains("250"));
    assert!(out["task_id"].as_str().is_some());
    assert_eq!(app.counts().await, (250, 1));
    app.wait_queue_depth("batch_processing", 1).await;
    // The first entry's id belongs to the first entry sent.
    let first: Value = app
        .get(&format!("/api/logs/{}/", ids[0]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["message"], "request 0 served");
    app.cleanup().await;
}

#[tokio::test]
async fn pattern_and_real_time_tasks_are_queued() {
    let app = spawn_app().await;
    let resp = app
        .post_signed("/api/pattern-analysis/", &json!({"time_window_hours": 24}))
        .await;
    assert_eq!(resp.status(), 202);
    let out: Value = resp.json().await.unwrap();
    assert_eq!(
        out["message"],
        "Pattern analysis started for 24 hour window"
    );
    assert_eq!(out["time_window_hours"], 24);
    app.wait_queue_depth("analysis", 1).await;

    let created: Value = app
        .post_signed("/api/logs/", &entry("INFO", "hello"))
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_i64().unwrap();
    let resp = app
        .post_signed("/api/real-time-analysis/", &json!({"log_entry_ids": [id]}))
        .await;
    assert_eq!(resp.status(), 202);
    let out: Value = resp.json().await.unwrap();
    assert_eq!(out["log_entry_ids"], json!([id]));
    assert!(out["task_id"].as_str().is_some());
    app.wait_queue_depth("real_time", 1).await;

    let before = app.counts().await;
    let resp = app
        .post_signed(
            "/api/real-time-analysis/",
            &json!({"log_entry_ids": [id, 999_999, 888_888]}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    let msg = err["log_entry_ids"][0].as_str().unwrap();
    assert!(msg.contains("999999") && msg.contains("888888"), "{msg}");
    assert_eq!(app.counts().await, before);
    app.wait_queue_depth("real_time", 1).await;
    app.cleanup().await;
}

/// Every rejected write answers with its status and a JSON body, and stores nothing.
#[tokio::test]
async fn bad_writes_are_rejected_and_store_nothing() {
    let app = spawn_app_with(Options {
        max_body_bytes: 64 * 1024,
        ..Options::default()
    })
    .await;
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("/api/logs/", b"{not json".to_vec(), 400, "detail"),
        ("/api/logs/", b"[1,2]".to_vec(), 400, "non_field_errors"),
        ("/api/logs/", br#"{"timestamp":"2024-01-15T10:30:00Z","severity":"FOO","message":"x"}"#.to_vec(), 400, "severity"),
        ("/api/logs/", br#"{"timestamp":"yesterday","severity":"INFO","message":"x"}"#.to_vec(), 400, "timestamp"),
        ("/api/logs/", br#"{"timestamp":"2024-01-15T10:30:00Z","severity":"INFO"}"#.to_vec(), 400, "message"),
        ("/api/logs/", br#"{"timestamp":"2024-01-15T10:30:00Z","severity":"INFO","message":"  "}"#.to_vec(), 400, "message"),
        ("/api/logs/", br#"{"timestamp":"2024-01-15T10:30:00Z","severity":"INFO","message":"a\u0000b"}"#.to_vec(), 400, "message"),
        ("/api/batch-analysis/", br#"{"log_entries":[]}"#.to_vec(), 400, "log_entries"),
        ("/api/batch-analysis/", br#"{"log_entries":"x"}"#.to_vec(), 400, "log_entries"),
        ("/api/batch-analysis/", br#"{"log_entries":[{"timestamp":"2024-01-15T10:30:00Z","severity":"INFO","message":"ok"},{"severity":"BAD"}]}"#.to_vec(), 400, "log_entries"),
        ("/api/pattern-analysis/", br#"{"time_window_hours":0}"#.to_vec(), 400, "time_window_hours"),
        ("/api/pattern-analysis/", br#"{"time_window_hours":721}"#.to_vec(), 400, "time_window_hours"),
        ("/api/pattern-analysis/", br#"{"time_window_hours":"soon"}"#.to_vec(), 400, "time_window_hours"),
        ("/api/real-time-analysis/", br#"{"log_entry_ids":[]}"#.to_vec(), 400, "log_entry_ids"),
        ("/api/real-time-analysis/", br#"{"log_entry_ids":["a"]}"#.to_vec(), 400, "log_entry_ids"),
        // Far below the batch limit, above one entry's.
        ("/api/logs/", vec![b'x'; 600 * 1024], 413, "detail"),
    ];
    for (path, body, status, field) in cases {
        let sig = test_support::legacy_signature(&body);
        let resp = app.post_raw(path, &body, Some(sig)).await;
        assert_eq!(
            resp.status().as_u16(),
            status,
            "{path} {}",
            String::from_utf8_lossy(&body[..body.len().min(80)])
        );
        let json: Value = resp
            .json()
            .await
            .unwrap_or_else(|e| panic!("{path}: JSON body expected: {e}"));
        assert!(json.get(field).is_some(), "{path}: {json} lacks {field}");
        assert_eq!(app.counts().await, (0, 0), "{path} stored something");
    }
    // DRF messages, exactly.
    let resp = app
        .post_raw(
            "/api/logs/",
            br#"{"timestamp":"2024-01-15T10:30:00Z","severity":"FOO","message":"x"}"#,
            Some(test_support::legacy_signature(
                br#"{"timestamp":"2024-01-15T10:30:00Z","severity":"FOO","message":"x"}"#,
            )),
        )
        .await;
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"severity": ["\"FOO\" is not a valid choice."]})
    );

    // Wrong content type: 415 with JSON.
    let body = serde_json::to_vec(&entry("INFO", "x")).unwrap();
    let resp = app
        .client
        .post(format!("{}/api/logs/", app.address))
        .header("Content-Type", "text/plain")
        .header("X-HMAC-Signature", test_support::legacy_signature(&body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    assert!(resp.json::<Value>().await.unwrap()["detail"].is_string());

    // Too many batch entries.
    let many: Vec<Value> = (0..10_001).map(|_| json!({})).collect();
    let big = serde_json::to_vec(&json!({"log_entries": many})).unwrap();
    let app_big = spawn_app_with(Options {
        max_body_bytes: 16 * 1024 * 1024,
        ..Options::default()
    })
    .await;
    let resp = app_big
        .post_raw(
            "/api/batch-analysis/",
            &big,
            Some(test_support::legacy_signature(&big)),
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"log_entries": ["Ensure this field has no more than 10000 elements."]})
    );
    assert_eq!(app_big.counts().await, (0, 0));

    app.wait_queue_depth("analysis", 0).await;
    app.cleanup().await;
    app_big.cleanup().await;
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json() {
    let app = spawn_app().await;
    let resp = app.get("/api/nope/").await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<Value>().await.unwrap()["detail"], "Not found.");
    let resp = app
        .client
        .delete(format!("{}/api/logs/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert!(resp.json::<Value>().await.unwrap()["detail"].is_string());
    let resp = app.get("/api/task-status/not-a-uuid/").await;
    assert_eq!(resp.status(), 404);
    let resp = app
        .get(&format!("/api/task-status/{}/", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(resp.status(), 404);
    assert!(resp.json::<Value>().await.unwrap()["detail"].is_string());
    let resp = app.get("/api/logs/12345/").await;
    assert_eq!(resp.status(), 404);
    app.cleanup().await;
}

/// With the broker unreachable the entry is still accepted and stored; its task stays
/// PENDING, marked unpublished with the reason, for the relay.
#[tokio::test]
async fn entries_are_kept_when_the_broker_is_down() {
    let app = spawn_app_with(Options {
        amqp_url: "amqp://guest:guest@127.0.0.1:1/%2f".into(),
        ..Options::default()
    })
    .await;
    let resp = app
        .post_signed("/api/logs/", &entry("ERROR", "disk full on /var"))
        .await;
    assert_eq!(resp.status(), 201);
    let out: Value = resp.json().await.unwrap();
    assert_eq!(app.counts().await, (1, 1));
    let task_id = out["analysis_task_id"].as_str().unwrap();
    let sql = format!(
        "SELECT count(*) FROM tasks WHERE id = '{task_id}' AND status = 'PENDING' \
         AND published_at IS NULL AND publish_error IS NOT NULL AND publish_attempts = 1"
    );
    test_support::eventually(
        "the task recorded as not published",
        std::time::Duration::from_secs(10),
        || async { (app.db.count(&sql).await == 1).then_some(()) },
    )
    .await;
    // Readiness does not depend on the broker: the API keeps accepting.
    let ready = app
        .client
        .get(format!("{}/readyz", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

/// With the database down, writes fail with a JSON 503 (the client should retry) and the
/// service reports not ready; nothing is published.
#[tokio::test]
async fn database_outage_is_a_json_503() {
    let app = spawn_app_with(Options {
        database_url: Some("postgres://postgres@127.0.0.1:1/nowhere".into()),
        ..Options::default()
    })
    .await;
    let resp = app
        .post_signed("/api/logs/", &entry("ERROR", "disk full"))
        .await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("x-request-id"));
    let body: Value = resp.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("retry"), "{body}");
    let resp = app.get("/api/dashboard/").await;
    assert_eq!(resp.status(), 503);
    let ready = app
        .client
        .get(format!("{}/readyz", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert!(ready["checks"]["database"].is_string());
    app.wait_queue_depth("analysis", 0).await;
    app.cleanup().await;
}
