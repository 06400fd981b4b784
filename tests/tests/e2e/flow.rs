//! Entries through the real binaries: HTTP -> Postgres -> RabbitMQ -> analysis-worker.

use std::time::Duration;

use logcanary_e2e::{entry_now, Stack};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_posted_entry_is_scored_and_counted_on_the_dashboard() {
    let stack = Stack::start(&[]).await;
    // Routine lines first, so the error below stands out, and scored before it (the
    // worker takes tasks in parallel batches: without the wait the error could be among
    // the first lines it sees, inside its 3-line warm-up).
    for i in 0..5 {
        let (status, created) = stack
            .post_signed(
                "/api/logs/",
                &entry_now("INFO", &format!("GET /health took {i} ms")),
            )
            .await;
        assert_eq!(status, 201);
        stack
            .wait_task(created["analysis_task_id"].as_str().unwrap(), "SUCCESS", T)
            .await;
    }
    let (status, created) = stack
        .post_signed(
            "/api/logs/",
            &entry_now("ERROR", "Database connection failed after 3 retries"),
        )
        .await;
    assert_eq!(status, 201);
    let task_id = created["analysis_task_id"].as_str().unwrap();
    let task = stack.wait_task(task_id, "SUCCESS", T).await;
    assert_eq!(task["result"]["log_entry_id"], created["id"]);
    assert!(task["finished_at"].is_string());

    let entry = stack.get(&format!("/api/logs/{}/", created["id"])).await;
    assert_eq!(entry["status"], "analyzed");
    let score = entry["anomaly_score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&score));
    assert_eq!(
        entry["is_anomaly"], true,
        "a new ERROR pattern is anomalous: {entry}"
    );
    assert!(
        entry["summary"]
            .as_str()
            .unwrap()
            .contains("severity ERROR"),
        "{entry}"
    );
    assert!(entry["template_id"].is_i64());

    let dashboard = stack.get("/api/dashboard/").await;
    assert!(
        dashboard["anomalies_last_24h"].as_i64().unwrap() >= 1,
        "{dashboard}"
    );
    assert_eq!(dashboard["severity_distribution_24h"]["ERROR"], 1);
    assert_eq!(dashboard["severity_distribution_24h"]["INFO"], 5);
    let recent = dashboard["recent_anomalies"].as_array().unwrap();
    assert!(recent
        .iter()
        .any(|a| a["id"] == created["id"] && a["summary"].is_string()));

    // A critical anomaly queues an alert for the notifier.
    let alerts = stack
        .db
        .count("SELECT count(*) FROM tasks WHERE task_name = 'logs.tasks.send_critical_anomaly_alert' AND args->>'log_entry_id' IS NOT NULL")
        .await;
    assert!(alerts >= 1);
    // Published just after the scoring transaction commits.
    let notifications = stack.topology().queue("notifications");
    test_support::eventually("the alert message in notifications", T, || async {
        (stack.queue_depth(&notifications).await >= 1).then_some(())
    })
    .await;
    stack.stop().await;
}

#[tokio::test]
async fn a_batch_of_1000_is_scored_in_full() {
    let stack = Stack::start(&[]).await;
    let entries: Vec<Value> = (0..1000)
        .map(|i| {
            let (sev, msg) = match i % 10 {
                0 => ("WARNING", format!("slow query {i} took {} ms", i * 3)),
                1 => (
                    "ERROR",
                    format!("worker {} crashed with exit code {}", i % 7, i % 3),
                ),
                _ => ("INFO", format!("request {i} served in {} ms", i % 50)),
            };
            entry_now(sev, &msg)
        })
        .collect();
    let (status, out) = stack
        .post_signed("/api/batch-analysis/", &json!({"log_entries": entries}))
        .await;
    assert_eq!(status, 202);
    assert_eq!(out["count"], 1000);
    let task = stack
        .wait_task(out["task_id"].as_str().unwrap(), "SUCCESS", T)
        .await;
    assert_eq!(task["result"]["processed"], 1000);
    let scored = stack.db.count("SELECT count(*) FROM log_entries WHERE analyzed_at IS NOT NULL AND summary IS NOT NULL").await;
    assert_eq!(scored, 1000);
    // Three templates, counted once per line.
    assert_eq!(
        stack.db.count("SELECT sum(count) FROM templates").await,
        1000
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_redelivered_message_does_not_score_twice() {
    let stack = Stack::start(&[]).await;
    let (_, created) = stack
        .post_signed("/api/logs/", &entry_now("WARNING", "disk /dev/sdb at 91%"))
        .await;
    let task_id = created["analysis_task_id"].as_str().unwrap().to_owned();
    stack.wait_task(&task_id, "SUCCESS", T).await;
    let first = stack.get(&format!("/api/logs/{}/", created["id"])).await;

    // The same message again, as the broker would redeliver it after a lost ack.
    let publisher = mq::Publisher::connect(&test_support::amqp_url(), stack.topology(), "e2e")
        .await
        .unwrap();
    for _ in 0..3 {
        publisher
            .publish(&contracts::v1::AnalyzeLogEntry {
                task_id: task_id.clone(),
                log_entry_id: created["id"].as_i64().unwrap(),
            })
            .await
            .unwrap();
    }
    let q = stack.topology().queue("analysis");
    test_support::eventually("the redeliveries to be consumed", T, || async {
        (stack.queue_depth(&q).await == 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = stack.get(&format!("/api/logs/{}/", created["id"])).await;
    assert_eq!(first["anomaly_score"], again["anomaly_score"]);
    assert_eq!(
        stack.db.count("SELECT sum(count) FROM templates").await,
        1,
        "counted once"
    );
    let task = stack.get(&format!("/api/task-status/{task_id}/")).await;
    assert_eq!(task["status"], "SUCCESS");
    assert_eq!(task["attempts"], 1, "work ran once");
    stack.stop().await;
}

#[tokio::test]
async fn a_message_that_always_fails_is_dead_lettered_and_the_task_fails() {
    let stack = Stack::start(&[("LOGCANARY_MAX_ATTEMPTS", "3")]).await;
    // A task whose entry does not exist: the worker can never succeed.
    let task_id = uuid::Uuid::new_v4();
    stack
        .db
        .db
        .run(move |c| {
            db::tasks::insert(
                c,
                &[db::models::NewTask {
                    id: task_id,
                    task_name: contracts::tasks::ANALYZE_LOG_ENTRY.into(),
                    queue: "analysis".into(),
                    args: json!({}),
                }],
            )
        })
        .await
        .unwrap();
    let publisher = mq::Publisher::connect(&test_support::amqp_url(), stack.topology(), "e2e")
        .await
        .unwrap();
    publisher
        .publish(&contracts::v1::AnalyzeLogEntry {
            task_id: task_id.to_string(),
            log_entry_id: 987_654,
        })
        .await
        .unwrap();
    let task = stack.wait_task(&task_id.to_string(), "FAILURE", T).await;
    assert!(task["error"].as_str().unwrap().contains("987654"), "{task}");
    let dlq = stack.topology().dead_letter_queue("analysis");
    test_support::eventually("the message in the dead-letter queue", T, || async {
        (stack.queue_depth(&dlq).await == 1).then_some(())
    })
    .await;
    stack.stop().await;
}

#[tokio::test]
async fn sigterm_during_batches_loses_nothing() {
    const BATCHES: i64 = 20;
    let mut stack =
        Stack::start_api(&[("LOGCANARY_BATCH_MAX", "1"), ("LOGCANARY_CONCURRENCY", "1")]).await;
    let mut task_ids = Vec::new();
    for b in 0..BATCHES {
        let entries: Vec<Value> = (0..1000)
            .map(|i| {
                entry_now(
                    if i % 50 == 0 { "ERROR" } else { "INFO" },
                    &format!("batch {b} line {i} user u{i} ok"),
                )
            })
            .collect();
        let (status, out) = stack
            .post_signed("/api/batch-analysis/", &json!({"log_entries": entries}))
            .await;
        assert_eq!(status, 202);
        task_ids.push(out["task_id"].as_str().unwrap().to_owned());
    }
    // Start a worker on the backlog and stop it while it is working through it.
    stack.start_worker().await;
    test_support::eventually("the first batch to finish", T, || async {
        (stack
            .db
            .count("SELECT count(*) FROM tasks WHERE status = 'SUCCESS'")
            .await
            >= 1)
            .then_some(())
    })
    .await;
    let status = stack.worker.as_mut().unwrap().terminate();
    assert!(
        status.success(),
        "the worker exits 0 after draining: {status:?}"
    );
    let done_at_stop = stack
        .db
        .count("SELECT count(*) FROM tasks WHERE status = 'SUCCESS'")
        .await;
    assert!(
        done_at_stop < BATCHES,
        "the stop came after all the work; the test proves nothing"
    );
    assert_eq!(
        stack
            .db
            .count("SELECT count(*) FROM tasks WHERE status = 'STARTED'")
            .await,
        0,
        "in-flight work was finished, not abandoned"
    );

    stack.start_worker().await;
    for id in &task_ids {
        stack.wait_task(id, "SUCCESS", T).await;
    }
    assert_eq!(
        stack
            .db
            .count("SELECT count(*) FROM log_entries WHERE analyzed_at IS NOT NULL")
            .await,
        BATCHES * 1000
    );
    assert_eq!(
        stack.db.count("SELECT sum(count) FROM templates").await,
        BATCHES * 1000,
        "no entry counted twice"
    );
    assert_eq!(
        stack.db.count("SELECT count(*) FROM tasks WHERE task_name = 'logs.tasks.batch_analyze_logs' AND attempts <> 1").await,
        0,
        "every batch ran exactly once ({done_at_stop} before the stop)"
    );
    stack.stop().await;
}

/// Two analysis workers on one queue, batches whose lines share templates in different
/// orders, single entries among them: every task succeeds, every line is scored and
/// counted once, and Postgres saw no deadlock at all (the lock order is fixed, not just
/// retried).
#[tokio::test]
async fn two_workers_writing_overlapping_templates_never_deadlock_or_fail() {
    const BATCHES: usize = 24;
    let mut stack =
        Stack::start_api(&[("LOGCANARY_CONCURRENCY", "2"), ("LOGCANARY_BATCH_MAX", "8")]).await;
    stack.start_worker().await;
    let first = stack.worker.take();
    stack.start_worker().await;

    let shapes = [
        "user u{} logged in from web",
        "GET /api/items/{} 200",
        "cache refresh {} finished",
        "disk /dev/sd{} at 91% capacity",
        "job {} queued by scheduler",
        "session {} closed by peer",
    ];
    let mut lines = 0i64;
    let mut posts = Vec::new();
    for b in 0..BATCHES {
        // Each batch walks the shapes from another starting point.
        let entries: Vec<Value> = (0..60)
            .map(|i| {
                let shape = shapes[(b + i) % shapes.len()];
                entry_now("INFO", &shape.replace("{}", &format!("{}", b * 100 + i)))
            })
            .collect();
        lines += entries.len() as i64;
        posts.push(json!({"log_entries": entries}));
    }
    let mut handles = Vec::new();
    for (b, body) in posts.into_iter().enumerate() {
        let (api, client) = (stack.api.clone(), stack.client.clone());
        handles.push(tokio::spawn(async move {
            let bytes = serde_json::to_vec(&body).unwrap();
            let sig = test_support::legacy_signature(&bytes);
            let status = client
                .post(format!("{api}/api/batch-analysis/"))
                .header("Content-Type", "application/json")
                .header("X-HMAC-Signature", sig)
                .body(bytes)
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 202, "batch {b}");
        }));
    }
    for (i, shape) in shapes.iter().enumerate() {
        let (status, _) = stack
            .post_signed(
                "/api/logs/",
                &entry_now("INFO", &shape.replace("{}", &format!("9{i}"))),
            )
            .await;
        assert_eq!(status, 201);
        lines += 1;
    }
    for h in handles {
        h.await.unwrap();
    }
    test_support::eventually("every task finished", Duration::from_secs(120), || async {
        (stack
            .db
            .count("SELECT count(*) FROM tasks WHERE status NOT IN ('SUCCESS', 'FAILURE')")
            .await
            == 0)
            .then_some(())
    })
    .await;
    assert_eq!(
        stack
            .db
            .count("SELECT count(*) FROM tasks WHERE status = 'FAILURE'")
            .await,
        0
    );
    assert_eq!(
        stack
            .db
            .count("SELECT count(*) FROM log_entries WHERE analyzed_at IS NOT NULL")
            .await,
        lines
    );
    assert_eq!(
        stack.db.count("SELECT sum(count) FROM templates").await,
        lines,
        "every line counted once in the shared templates"
    );
    // Statistics reach pg_stat_database within a second of the transactions ending.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        stack
            .db
            .count("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
            .await,
        0,
        "no deadlock, not even a retried one"
    );
    drop(first);
    stack.stop().await;
}
