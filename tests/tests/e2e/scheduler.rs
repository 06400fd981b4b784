//! The scheduler binary with the rest of the stack: a periodic task created through the
//! API runs on the worker; an entry stored while the broker was unreachable is relayed
//! and analysed; leadership hands over when the leader dies or stops.

use std::time::Duration;

use logcanary_e2e::{entry_now, Stack};
use serde_json::{json, Value};
use test_support::Spawned;

const T: Duration = Duration::from_secs(60);

async fn signed(stack: &Stack, method: reqwest::Method, path: &str, body: &Value) -> (u16, Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    let method_name = method.to_string();
    let resp = stack
        .client
        .request(method, format!("{}{path}", stack.api))
        .header("Content-Type", "application/json")
        .header(
            "X-HMAC-Signature",
            test_support::request_signature(&method_name, path, &bytes),
        )
        .body(bytes)
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Disables the seeded schedules so a test sees only its own runs.
async fn disable_seeded(stack: &Stack) {
    let list = stack.get("/api/periodic-tasks/").await;
    for p in list["results"].as_array().unwrap() {
        let path = format!("/api/periodic-tasks/{}/", p["id"]);
        let (status, _) = signed(
            stack,
            reqwest::Method::PATCH,
            &path,
            &json!({"enabled": false}),
        )
        .await;
        assert_eq!(status, 200);
    }
}

async fn metric(admin_port: u16, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{admin_port}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn a_periodic_task_created_through_the_api_runs_on_the_worker() {
    let stack =
        Stack::start(&[("LOGCANARY_QUEUES", "analysis,batch_processing,maintenance")]).await;
    disable_seeded(&stack).await;
    let (scheduler, admin) = stack.spawn_scheduler(&[]).await;
    let (status, created) = signed(
        &stack,
        reqwest::Method::POST,
        "/api/periodic-tasks/",
        &json!({
            "name": "clean-up every 2 s",
            "task": "logs.tasks.cleanup_old_results",
            "args": {"entry_days": 30, "anomaly_days": 365},
            "interval": {"every": 2, "period": "seconds"},
        }),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    let path = format!("/api/periodic-tasks/{id}/");
    test_support::eventually("two runs", T, || async {
        (stack.get(&path).await["total_run_count"].as_i64() >= Some(2)).then_some(())
    })
    .await;
    // The runs reached the worker and finished, with the counts in their result.
    let done = test_support::eventually("a finished clean-up", T, || async {
        let n = stack
            .db
            .count("SELECT count(*) FROM tasks WHERE task_name = 'logs.tasks.cleanup_old_results' AND status = 'SUCCESS'")
            .await;
        (n >= 2).then_some(n)
    })
    .await;
    assert!(done >= 2);
    let result = stack
        .db
        .db
        .run(|c| {
            use db::schema::tasks::dsl;
            use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};
            Ok(dsl::tasks
                .filter(dsl::task_name.eq("logs.tasks.cleanup_old_results"))
                .filter(dsl::status.eq("SUCCESS"))
                .select(dsl::result)
                .first::<Option<Value>>(c)?)
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result["policy_days"]["entry_days"], 30);
    assert_eq!(result["policy_days"]["anomaly_days"], 365);
    assert!(result["tasks_deleted"].is_i64());
    // Disabled: no more runs.
    let (status, _) = signed(
        &stack,
        reqwest::Method::PATCH,
        &path,
        &json!({"enabled": false}),
    )
    .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let runs = stack.get(&path).await["total_run_count"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        stack.get(&path).await["total_run_count"].as_i64().unwrap(),
        runs
    );
    assert_eq!(metric(admin, "logcanary_scheduler_leader").await, Some(1.0));
    assert!(metric(admin, "logcanary_scheduler_fired_total").await >= Some(2.0));
    drop(scheduler);
    stack.stop().await;
}

#[tokio::test]
async fn an_entry_stored_while_the_broker_was_down_is_relayed_and_analysed() {
    let stack = Stack::start(&[]).await;
    // A second API replica whose broker is unreachable: it still accepts the entry.
    let (mut cut_off, ports) = Spawned::start_on_free_ports("ingest-api", &[], 2, |ports| {
        vec![
            ("DATABASE_URL", stack.db.url.clone()),
            ("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f".to_owned()),
            ("LOGCANARY_AMQP_PREFIX", stack.prefix.clone()),
            ("LOGCANARY_ADMIN_ADDR", format!("127.0.0.1:{}", ports[0])),
            ("LOGCANARY_HTTP_ADDR", format!("127.0.0.1:{}", ports[1])),
            ("LOGCANARY_HMAC_KEYS", test_support::test_hmac_keys()),
        ]
    })
    .await;
    let port = ports[1];
    let body = serde_json::to_vec(&entry_now(
        "ERROR",
        "Disk quota exceeded on /var/lib/postgres",
    ))
    .unwrap();
    let resp = stack
        .client
        .post(format!("http://127.0.0.1:{port}/api/logs/"))
        .header("Content-Type", "application/json")
        .header(
            "X-HMAC-Signature",
            test_support::timestamped_signature(&body),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let created: Value = resp.json().await.unwrap();
    let task_id = created["analysis_task_id"].as_str().unwrap().to_owned();
    test_support::eventually("the failed publish to be recorded", T, || async {
        let n = stack
            .db
            .count(&format!(
                "SELECT count(*) FROM tasks WHERE id = '{task_id}' AND published_at IS NULL AND publish_error IS NOT NULL"
            ))
            .await;
        (n == 1).then_some(())
    })
    .await;
    assert_eq!(cut_off.terminate().code(), Some(0));
    assert_eq!(
        stack.get(&format!("/api/task-status/{task_id}/")).await["status"],
        "PENDING"
    );

    let (scheduler, admin) = stack
        .spawn_scheduler(&[
            ("LOGCANARY_RELAY_GRACE_SECS", "1"),
            ("LOGCANARY_RELAY_EVERY_MS", "200"),
        ])
        .await;
    let task = stack.wait_task(&task_id, "SUCCESS", T).await;
    assert_eq!(task["result"]["log_entry_id"], created["id"]);
    assert!(metric(admin, "logcanary_relay_republished_total").await >= Some(1.0));
    drop(scheduler);
    stack.stop().await;
}

#[tokio::test]
async fn leadership_hands_over_when_the_leader_stops_or_dies() {
    let stack = Stack::start_api(&[]).await;
    disable_seeded(&stack).await;
    let (status, created) = signed(
        &stack,
        reqwest::Method::POST,
        "/api/periodic-tasks/",
        &json!({"name": "every second", "task": "logs.tasks.cleanup_old_results",
                "interval": {"every": 1, "period": "seconds"}}),
    )
    .await;
    assert_eq!(status, 201);
    let path = format!("/api/periodic-tasks/{}/", created["id"]);
    let (mut first, first_admin) = stack.spawn_scheduler(&[]).await;
    test_support::eventually("a leader", T, || async {
        (metric(first_admin, "logcanary_scheduler_leader").await == Some(1.0)).then_some(())
    })
    .await;
    let (mut second, second_admin) = stack.spawn_scheduler(&[]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        metric(second_admin, "logcanary_scheduler_leader").await,
        Some(0.0),
        "one leader at a time"
    );

    // SIGTERM releases leadership cleanly: the standby takes over within a tick or so.
    assert_eq!(first.terminate().code(), Some(0));
    test_support::eventually("the standby to lead", Duration::from_secs(5), || async {
        (metric(second_admin, "logcanary_scheduler_leader").await == Some(1.0)).then_some(())
    })
    .await;

    // A third replica waits; the leader is killed outright (no unlock): Postgres ends its
    // session and the waiting replica takes over.
    let (third, third_admin) = stack.spawn_scheduler(&[]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        metric(third_admin, "logcanary_scheduler_leader").await,
        Some(0.0)
    );
    let _ = second.child.kill();
    let _ = second.child.wait();
    test_support::eventually(
        "the third replica to lead",
        Duration::from_secs(15),
        || async {
            (metric(third_admin, "logcanary_scheduler_leader").await == Some(1.0)).then_some(())
        },
    )
    .await;
    let before = stack.get(&path).await["total_run_count"].as_i64().unwrap();
    test_support::eventually("runs under the new leader", T, || async {
        (stack.get(&path).await["total_run_count"].as_i64() >= Some(before + 2)).then_some(())
    })
    .await;
    // Every run is one task row (the row and the run count commit together).
    let (status, _) = signed(
        &stack,
        reqwest::Method::PATCH,
        &path,
        &json!({"enabled": false}),
    )
    .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let runs = stack.get(&path).await["total_run_count"].as_i64().unwrap();
    let rows = stack
        .db
        .count("SELECT count(*) FROM tasks WHERE task_name = 'logs.tasks.cleanup_old_results'")
        .await;
    assert_eq!(rows, runs);
    drop(third);
    stack.stop().await;
}
