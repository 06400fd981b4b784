//! Alerts through the real binaries: a burst of critical entries via the API ->
//! analysis-worker flags them and queues alert tasks -> notifier -> one email (SMTP sink)
//! and one signed webhook (HTTP receiver), both on loopback.

use std::time::Duration;

use logcanary_e2e::{entry_now, Stack};
use serde_json::{json, Value};
use test_support::{smtp::SmtpSink, webhook::WebhookSink};

const T: Duration = Duration::from_secs(60);
const SECRET: &str = "e2e-hook-secret";

#[tokio::test]
async fn a_burst_of_critical_errors_reaches_the_inbox_and_the_webhook_once() {
    let smtp = SmtpSink::start().await;
    let hook = WebhookSink::start().await;
    let stack = Stack::start(&[]).await;
    let mut notifier = stack
        .start_notifier(&[
            ("LOGCANARY_SMTP_URL", smtp.url()),
            ("LOGCANARY_ALERT_EMAILS", "ops@example.com".into()),
            ("LOGCANARY_WEBHOOK_URLS", hook.url("/slack/T0/B0/x")),
            ("LOGCANARY_WEBHOOK_SECRET", SECRET.into()),
            ("LOGCANARY_ALERT_GROUP_WINDOW_MS", "1000".into()),
            ("LOGCANARY_DASHBOARD_URL", stack.api.clone()),
        ])
        .await;

    // Routine lines first, so the burst stands out.
    let routine: Vec<Value> = (0..6)
        .map(|i| entry_now("INFO", &format!("GET /health took {i} ms")))
        .collect();
    let (status, _) = stack
        .post_signed("/api/batch-analysis/", &json!({"log_entries": routine}))
        .await;
    assert_eq!(status, 202);
    let burst = json!({"log_entries": [
        entry_now("CRITICAL", "Database connection pool exhausted: 0 of 50 connections free"),
        entry_now("CRITICAL", "Replication lag on primary exceeded 120 seconds"),
        entry_now("ERROR", "Segmentation fault in worker process 4711"),
    ]});
    let (status, accepted) = stack.post_signed("/api/batch-analysis/", &burst).await;
    assert_eq!(status, 202);
    stack
        .wait_task(accepted["task_id"].as_str().unwrap(), "SUCCESS", T)
        .await;
    let alerts = stack
        .db
        .count(
            "SELECT count(*) FROM tasks WHERE task_name = 'logs.tasks.send_critical_anomaly_alert'",
        )
        .await;
    assert!(alerts >= 1, "the burst raised no critical alert");

    let mails = smtp.wait_for(1, T).await;
    let hooks = hook.wait_for(1, T).await;
    test_support::eventually("every alert task to finish", T, || async {
        let done = stack
            .db
            .count("SELECT count(*) FROM tasks WHERE task_name = 'logs.tasks.send_critical_anomaly_alert' AND status = 'SUCCESS'")
            .await;
        (done == alerts).then_some(())
    })
    .await;
    // Grouped: one message per channel for the whole burst.
    assert_eq!(smtp.mails().len(), 1, "{mails:#?}");
    assert_eq!(hook.requests().len(), 1);
    assert_eq!(mails[0].to, vec!["ops@example.com"]);
    let text = mails[0].decoded();
    assert!(text.contains("anomal"), "{text}");
    assert!(text.contains(&format!("{}/api/logs/", stack.api)), "{text}");
    assert!(hooks[0].signed_with(SECRET));
    assert_eq!(hooks[0].json()["logcanary"]["count"], alerts);

    let listed = stack.get("/api/alerts/?status=sent").await;
    assert_eq!(
        listed["results"].as_array().unwrap().len() as i64,
        alerts * 2,
        "{listed}"
    );
    assert!(notifier.terminate().success());
    stack.stop().await;
}

fn run_notifier(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = std::process::Command::new(test_support::bin_path("notifier"));
    cmd.args(args)
        // Unroutable on purpose: a binary that got past its settings would hang here.
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .env("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
        .env("LOGCANARY_ADMIN_ADDR", "127.0.0.1:0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("the notifier runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_notifier_names_its_settings_and_fails_fast_on_bad_ones() {
    let (ok, help) = run_notifier(&["--help"], &[]);
    assert!(ok);
    for var in [
        "LOGCANARY_SMTP_URL",
        "LOGCANARY_ALERT_EMAILS",
        "LOGCANARY_ALERT_FROM",
        "LOGCANARY_WEBHOOK_URLS",
        "LOGCANARY_WEBHOOK_SECRET",
        "LOGCANARY_DASHBOARD_URL",
        "LOGCANARY_ALERT_COOLDOWN_SECS",
        "LOGCANARY_ALERT_GROUP_WINDOW_MS",
        "LOGCANARY_DELIVERY_ATTEMPTS",
        "LOGCANARY_ADMIN_ADDR",
        "LOGCANARY_CONCURRENCY",
        "LOGCANARY_PREFETCH",
    ] {
        assert!(help.contains(var), "notifier --help lacks {var}");
    }
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[
                ("LOGCANARY_SMTP_URL", "http://mail:25"),
                ("LOGCANARY_ALERT_EMAILS", "a@b.c"),
            ],
            "LOGCANARY_SMTP_URL",
        ),
        (
            &[
                ("LOGCANARY_SMTP_URL", "smtp://mail:25"),
                ("LOGCANARY_ALERT_EMAILS", "not an address"),
            ],
            "LOGCANARY_ALERT_EMAILS",
        ),
        (&[("LOGCANARY_ALERT_EMAILS", "a@b.c")], "LOGCANARY_SMTP_URL"),
        (
            &[("LOGCANARY_WEBHOOK_URLS", "hooks.example.com/x")],
            "LOGCANARY_WEBHOOK_URLS",
        ),
        (
            &[("LOGCANARY_DELIVERY_ATTEMPTS", "0")],
            "LOGCANARY_DELIVERY_ATTEMPTS",
        ),
    ];
    for (env, var) in cases {
        let started = std::time::Instant::now();
        let (ok, text) = run_notifier(&[], env);
        assert!(!ok, "{env:?} was accepted");
        assert!(
            text.contains(var),
            "{env:?}: the error does not name {var}: {text}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{env:?} did not fail fast"
        );
    }
}

#[tokio::test]
async fn sigterm_during_retries_leaves_the_alert_pending_for_the_next_notifier() {
    let hook = WebhookSink::start().await;
    hook.always(503);
    let stack = Stack::start_api(&[]).await;
    let env = [
        ("LOGCANARY_WEBHOOK_URLS", hook.url("/h")),
        ("LOGCANARY_DELIVERY_ATTEMPTS", "10".to_owned()),
        ("LOGCANARY_DELIVERY_BACKOFF_MS", "30000".to_owned()),
        ("LOGCANARY_ALERT_GROUP_WINDOW_MS", "50".to_owned()),
        ("LOGCANARY_RETRY_BASE_MS", "100".to_owned()),
    ];
    let mut first = stack.start_notifier(&env).await;
    // An alert task as analysis-worker queues it, for an entry posted through the API.
    let (status, created) = stack
        .post_signed(
            "/api/logs/",
            &entry_now("CRITICAL", "Power supply 2 failed"),
        )
        .await;
    assert_eq!(status, 201);
    let entry_id = created["id"].as_i64().unwrap();
    let task_id = uuid::Uuid::new_v4();
    stack
        .db
        .db
        .run(move |c| {
            db::tasks::insert(
                c,
                &[db::models::NewTask {
                    id: task_id,
                    task_name: contracts::tasks::SEND_CRITICAL_ANOMALY_ALERT.into(),
                    queue: contracts::queues::NOTIFICATIONS.into(),
                    args: json!({"log_entry_id": entry_id}),
                }],
            )
        })
        .await
        .unwrap();
    let publisher = mq::Publisher::connect(&test_support::amqp_url(), stack.topology(), "e2e")
        .await
        .unwrap();
    publisher
        .publish(&contracts::v1::SendCriticalAnomalyAlert {
            task_id: task_id.to_string(),
            log_entry_id: entry_id,
            anomaly_score: 0.97,
            summary: "Never seen before.".into(),
        })
        .await
        .unwrap();
    hook.wait_for(1, T).await;

    // SIGTERM while the notifier waits 30 s before its next attempt: it stops at once and
    // the broker keeps the alert.
    let started = std::time::Instant::now();
    assert!(first.terminate().success());
    assert!(started.elapsed() < Duration::from_secs(10));
    let row = stack.get("/api/alerts/").await["results"][0].clone();
    assert_eq!(row["status"], "pending", "{row}");
    assert_eq!(row["attempts"], 1);
    assert!(row["last_error"].as_str().unwrap().contains("503"));

    hook.always(200);
    let mut second = stack.start_notifier(&env).await;
    stack.wait_task(&task_id.to_string(), "SUCCESS", T).await;
    let row = stack.get("/api/alerts/").await["results"][0].clone();
    assert_eq!(row["status"], "sent", "{row}");
    assert_eq!(row["attempts"], 2);
    assert_eq!(hook.delivered().len(), 1);
    assert!(second.terminate().success());
    publisher.close().await;
    stack.stop().await;
}
