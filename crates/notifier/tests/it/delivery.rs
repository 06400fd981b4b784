//! The notifier against real receivers on loopback: an SMTP sink, an HTTP webhook
//! receiver, the real broker and a database of the test's own. The notifier runs
//! in-process (`run`), fed through the real `notifications` queue.

use mq::service::ConsumerSettings;
use std::time::Duration;

use contracts::{tasks, v1};
use db::models::{NewLogEntry, NewTask};
use diesel::RunQueryDsl;
use logcanary_notifier::{config::Settings, run};
use serde_json::json;
use test_support::{smtp::SmtpSink, webhook::WebhookSink, TestDb};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub(crate) const T: Duration = Duration::from_secs(20);
const SECRET: &str = "hook-secret";

pub(crate) struct Notifier {
    pub(crate) db: TestDb,
    prefix: String,
    pub(crate) publisher: mq::Publisher,
    shutdown: CancellationToken,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
    flags: Vec<String>,
}

impl Notifier {
    /// Starts the notifier with test timings plus `args` (flags).
    pub(crate) async fn start(args: &[String]) -> Self {
        let db = TestDb::new().await;
        let prefix = test_support::queue_prefix();
        let mut all: Vec<String> = [
            "notifier",
            "--database-url",
            &db.url,
            "--amqp-url",
            &test_support::amqp_url(),
            "--amqp-prefix",
            &prefix,
            "--admin-addr",
            "127.0.0.1:0",
            "--db-pool-size",
            "4",
            "--group-window-ms",
            "300",
            "--delivery-attempts",
            "3",
            "--delivery-backoff-ms",
            "50",
            "--delivery-timeout-ms",
            "3000",
            "--dashboard-url",
            "http://canary.test/",
            "--webhook-secret",
            SECRET,
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        all.extend_from_slice(args);
        let settings = Settings::load_from(&all).expect("valid notifier flags");
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(run(settings, shutdown.clone()));
        // The publisher declares the topology, so nothing published is unroutable.
        let publisher = mq::Publisher::connect(
            &test_support::amqp_url(),
            mq::Topology::new(prefix.clone()),
            "notifier-test",
        )
        .await
        .expect("broker for the test publisher");
        Self {
            db,
            prefix,
            publisher,
            shutdown,
            running,
            flags: all,
        }
    }

    /// Stops the notifier and starts a new one on the same database and queues (what a
    /// restarted process finds).
    pub(crate) async fn restart(&mut self) {
        self.shutdown.cancel();
        let running = std::mem::replace(&mut self.running, tokio::spawn(async { Ok(()) }));
        tokio::time::timeout(T, running)
            .await
            .expect("the notifier stops within the timeout")
            .expect("the notifier task did not panic")
            .expect("the notifier stops cleanly");
        let settings = Settings::load_from(&self.flags).expect("valid notifier flags");
        self.shutdown = CancellationToken::new();
        self.running = tokio::spawn(run(settings, self.shutdown.clone()));
    }

    /// Stores entries and one alert task per entry, publishes the alerts; returns the
    /// task ids.
    pub(crate) async fn critical(&self, severity: &str, messages: &[&str]) -> Vec<Uuid> {
        self.critical_of(severity, messages, None).await
    }

    /// [`Notifier::critical`] for entries the scorer gave `template_id`.
    pub(crate) async fn critical_of(
        &self,
        severity: &str,
        messages: &[&str],
        template_id: Option<i64>,
    ) -> Vec<Uuid> {
        let entries: Vec<NewLogEntry> = messages
            .iter()
            .map(|m| NewLogEntry {
                logged_at: chrono::Utc::now(),
                severity: severity.into(),
                message: (*m).into(),
                source: Some("payments".into()),
            })
            .collect();
        let task_ids: Vec<Uuid> = messages.iter().map(|_| Uuid::new_v4()).collect();
        let (e, t) = (entries.clone(), task_ids.clone());
        let entry_ids = self
            .db
            .db
            .run(move |c| {
                let ids = db::entries::insert_entries(c, &e, &vec![Uuid::nil(); e.len()])?;
                if let Some(t) = template_id {
                    diesel::sql_query("UPDATE log_entries SET template_id = $1 WHERE id = ANY($2)")
                        .bind::<diesel::sql_types::BigInt, _>(t)
                        .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(&ids)
                        .execute(c)?;
                }
                let new_tasks: Vec<NewTask> = t
                    .iter()
                    .zip(&ids)
                    .map(|(id, entry)| NewTask {
                        id: *id,
                        task_name: tasks::SEND_CRITICAL_ANOMALY_ALERT.into(),
                        queue: contracts::queues::NOTIFICATIONS.into(),
                        args: json!({"log_entry_id": entry}),
                    })
                    .collect();
                db::tasks::insert(c, &new_tasks)?;
                Ok(ids)
            })
            .await
            .expect("storing entries and tasks");
        let msgs: Vec<v1::SendCriticalAnomalyAlert> = task_ids
            .iter()
            .zip(&entry_ids)
            .map(|(t, e)| v1::SendCriticalAnomalyAlert {
                task_id: t.to_string(),
                log_entry_id: *e,
                anomaly_score: 0.93,
                summary: "Rare template, far from every known line.".into(),
            })
            .collect();
        self.publisher
            .publish_many(&msgs)
            .await
            .expect("publishing alerts");
        task_ids
    }

    pub(crate) async fn wait_tasks(&self, state: &str, n: i64) {
        let sql = format!("SELECT count(*) FROM tasks WHERE status = '{state}'");
        test_support::eventually(&format!("{n} task(s) {state}"), T, || async {
            (self.db.count(&sql).await >= n).then_some(())
        })
        .await;
    }

    pub(crate) async fn alerts(&self) -> Vec<db::alerts::Alert> {
        self.db
            .db
            .run(|c| {
                db::alerts::list(
                    c,
                    &db::alerts::ListFilter {
                        limit: 1000,
                        ..Default::default()
                    },
                )
            })
            .await
            .expect("listing alerts")
    }

    async fn dead_letters(&self) -> u32 {
        let conn = mq::connect(&test_support::amqp_url(), "notifier-test")
            .await
            .expect("broker");
        let channel = conn.create_channel().await.expect("channel");
        let topology = mq::Topology::new(self.prefix.clone());
        let depth = mq::queue_depth(
            &channel,
            &topology.dead_letter_queue(contracts::queues::NOTIFICATIONS),
        )
        .await
        .unwrap_or(0);
        let _ = conn.close(200, "bye".into()).await;
        depth
    }

    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(T, self.running)
            .await
            .expect("the notifier stops within the timeout")
            .expect("the notifier task did not panic");
        result.expect("the notifier stops cleanly");
        self.publisher.close().await;
        test_support::delete_queues(&self.prefix).await;
    }
}

pub(crate) fn args(pairs: &[(&str, String)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(k, v)| [(*k).to_owned(), v.clone()])
        .collect()
}

#[tokio::test]
async fn a_burst_goes_out_as_one_email_and_one_signed_webhook() {
    let smtp = SmtpSink::start().await;
    let hook = WebhookSink::start().await;
    let n = Notifier::start(&args(&[
        ("--smtp-url", smtp.url()),
        (
            "--alert-emails",
            "ops@example.com, Oncall <oncall@example.com>".into(),
        ),
        ("--alert-from", "Canary <canary@example.com>".into()),
        ("--webhook-urls", hook.url("/hooks/T000/B000/secret")),
    ]))
    .await;
    n.critical(
        "CRITICAL",
        &[
            "Database connection failed after 3 retries",
            "Database connection failed after 3 retries",
            "Disk /dev/sda1 is full",
        ],
    )
    .await;
    n.wait_tasks("SUCCESS", 3).await;

    let mails = smtp.wait_for(1, T).await;
    assert_eq!(mails.len(), 1, "one grouped email");
    let mail = &mails[0];
    assert_eq!(mail.from, "canary@example.com");
    let mut to = mail.to.clone();
    to.sort();
    assert_eq!(to, vec!["oncall@example.com", "ops@example.com"]);
    let subject = mail.header("Subject").expect("a subject");
    assert!(
        subject.contains("3 alerts") && subject.contains("critical anomalies"),
        "{subject}"
    );
    let text = mail.decoded();
    for needle in [
        "Database connection failed after 3 retries",
        "Disk /dev/sda1 is full",
        "(×2)",
        "Anomaly score: 0.930",
        "Rare template, far from every known line.",
        "http://canary.test/api/logs/",
        "Dashboard: http://canary.test/",
        "text/html",
        "text/plain",
    ] {
        assert!(text.contains(needle), "the email lacks {needle:?}:\n{text}");
    }

    let hooks = hook.wait_for(1, T).await;
    assert_eq!(hooks.len(), 1, "one grouped webhook");
    let h = &hooks[0];
    assert_eq!(h.method, "POST");
    assert_eq!(h.path, "/hooks/T000/B000/secret");
    assert!(
        h.signed_with(SECRET),
        "bad signature: {:?}",
        h.header("x-hmac-signature")
    );
    assert!(!h.signed_with("another-secret"));
    let body = h.json();
    assert!(body["text"].as_str().unwrap().contains("3 alerts"));
    assert_eq!(body["blocks"][0]["type"], "header");
    assert_eq!(body["logcanary"]["count"], 3);
    assert_eq!(body["logcanary"]["alerts"].as_array().unwrap().len(), 2);

    let rows = n.alerts().await;
    assert_eq!(rows.len(), 6, "3 alerts x 2 channels: {rows:#?}");
    assert!(rows.iter().all(|a| a.status == "sent" && a.attempts == 1));
    assert_eq!(rows.iter().filter(|a| a.channel == "email").count(), 3);
    assert!(rows
        .iter()
        .filter(|a| a.channel != "email")
        .all(|a| a.channel.starts_with("webhook:127.0.0.1#") && !a.channel.contains("secret")));
    n.stop().await;
}

#[tokio::test]
async fn a_receiver_failing_twice_is_retried_and_gets_the_alert_once() {
    let hook = WebhookSink::start().await;
    hook.respond_with(&[503, 502]);
    let n = Notifier::start(&args(&[("--webhook-urls", hook.url("/h"))])).await;
    n.critical("ERROR", &["Payment gateway timeout"]).await;
    n.wait_tasks("SUCCESS", 1).await;
    let got = hook.requests();
    assert_eq!(
        got.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![503, 502, 200]
    );
    assert_eq!(hook.delivered().len(), 1);
    // One message: every attempt carries the same delivery id, for receivers to dedup.
    let ids: Vec<_> = got
        .iter()
        .map(|r| r.header("x-logcanary-delivery").unwrap().to_owned())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]));
    let rows = n.alerts().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "sent");
    assert_eq!(rows[0].attempts, 3);
    assert!(rows[0].last_error.as_deref().unwrap().contains("502"));
    assert!(rows[0].sent_at.is_some());
    assert_eq!(n.dead_letters().await, 0);
    n.stop().await;
}

#[tokio::test]
async fn a_receiver_always_failing_ends_failed_and_dead_lettered() {
    let hook = WebhookSink::start().await;
    hook.always(500);
    let bad = WebhookSink::start().await;
    bad.always(404);
    let n = Notifier::start(&args(&[(
        "--webhook-urls",
        format!("{},{}", hook.url("/down"), bad.url("/gone")),
    )]))
    .await;
    let task = n.critical("CRITICAL", &["Kernel panic"]).await[0];
    n.wait_tasks("FAILURE", 1).await;
    // 5xx: every attempt made; 4xx: no retry.
    assert_eq!(hook.requests().len(), 3);
    assert_eq!(bad.requests().len(), 1);
    let rows = n.alerts().await;
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|a| a.status == "failed"), "{rows:#?}");
    let attempts: Vec<i32> = {
        let mut a: Vec<i32> = rows.iter().map(|r| r.attempts).collect();
        a.sort();
        a
    };
    assert_eq!(attempts, vec![1, 3]);
    test_support::eventually("the message to be dead-lettered", T, || async {
        (n.dead_letters().await == 1).then_some(())
    })
    .await;
    let error =
        n.db.db
            .run(move |c| Ok(db::tasks::get(c, task)?.and_then(|t| t.error)))
            .await
            .unwrap()
            .unwrap_or_default();
    assert!(error.contains("HTTP"), "{error}");
    n.stop().await;
}

#[tokio::test]
async fn two_identical_bursts_inside_the_cooldown_send_one_email() {
    let smtp = SmtpSink::start().await;
    let n = Notifier::start(&args(&[
        ("--smtp-url", smtp.url()),
        ("--alert-emails", "ops@example.com".into()),
    ]))
    .await;
    let burst = ["Connection reset by peer"; 3];
    n.critical("ERROR", &burst).await;
    n.wait_tasks("SUCCESS", 3).await;
    smtp.wait_for(1, T).await;
    n.critical("ERROR", &burst).await;
    n.wait_tasks("SUCCESS", 6).await;
    assert_eq!(smtp.mails().len(), 1, "the second burst is suppressed");
    let rows = n.alerts().await;
    let sent: Vec<_> = rows.iter().filter(|a| a.status == "sent").collect();
    let suppressed: Vec<_> = rows.iter().filter(|a| a.status == "suppressed").collect();
    assert_eq!((sent.len(), suppressed.len()), (3, 3), "{rows:#?}");
    let sent_ids: Vec<i64> = sent.iter().map(|a| a.id).collect();
    assert!(suppressed.iter().all(
        |a| a.attempts == 0 && sent_ids.contains(&a.payload["suppressed_by"].as_i64().unwrap())
    ));
    n.stop().await;
}

#[tokio::test]
async fn smtp_transient_refusals_are_retried_and_permanent_ones_are_not() {
    let smtp = SmtpSink::start().await;
    smtp.refuse_next("451 4.3.0 Try again later");
    let n = Notifier::start(&args(&[
        ("--smtp-url", smtp.url()),
        ("--alert-emails", "ops@example.com".into()),
    ]))
    .await;
    n.critical("ERROR", &["Queue consumer crashed"]).await;
    n.wait_tasks("SUCCESS", 1).await;
    assert_eq!(smtp.transactions(), 2);
    assert_eq!(smtp.mails().len(), 1);

    smtp.refuse_next("554 5.7.1 Relay denied");
    n.critical("CRITICAL", &["A different failure entirely"])
        .await;
    n.wait_tasks("FAILURE", 1).await;
    assert_eq!(smtp.transactions(), 3, "a 5xx reply is not retried");
    let failed: Vec<_> = n
        .alerts()
        .await
        .into_iter()
        .filter(|a| a.status == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].last_error.as_deref().unwrap().contains("554"));
    n.stop().await;
}

#[tokio::test]
async fn a_pattern_alert_describes_the_pattern() {
    let hook = WebhookSink::start().await;
    let n = Notifier::start(&args(&[("--webhook-urls", hook.url("/p"))])).await;
    let task_id = Uuid::new_v4();
    let pattern_id: i64 = n
        .db
        .db
        .run(move |c| {
            #[derive(diesel::QueryableByName)]
            struct Id {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                id: i64,
            }
            let row: Id = diesel::sql_query(
                "INSERT INTO pattern_detections (kind, window_start, window_end, source, severity, details, log_entry_ids) \
                 VALUES ('error_spike', now() - interval '10 minutes', now(), 'api', 'HIGH', \
                 '{\"errors\": 42, \"baseline_median\": 3}', '{}') RETURNING id",
            )
            .get_result(c)?;
            db::tasks::insert(
                c,
                &[NewTask {
                    id: task_id,
                    task_name: tasks::SEND_PATTERN_ALERT.into(),
                    queue: contracts::queues::NOTIFICATIONS.into(),
                    args: json!({"pattern_detection_id": row.id}),
                }],
            )?;
            Ok(row.id)
        })
        .await
        .unwrap();
    n.publisher
        .publish(&v1::SendPatternAlert {
            task_id: task_id.to_string(),
            pattern_detection_id: pattern_id,
        })
        .await
        .unwrap();
    n.wait_tasks("SUCCESS", 1).await;
    let body = hook.wait_for(1, T).await[0].json();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("HIGH pattern: Error spike on api"),
        "{body}"
    );
    let alert = &body["logcanary"]["alerts"][0];
    assert_eq!(alert["pattern_kind"], "error_spike");
    assert_eq!(alert["details"]["errors"], 42);
    assert_eq!(alert["link"], "http://canary.test/api/patterns/");
    n.stop().await;
}

#[tokio::test]
async fn without_channels_alerts_are_recorded_not_lost() {
    let n = Notifier::start(&[]).await;
    n.critical("ERROR", &["Nobody is listening"]).await;
    n.wait_tasks("SUCCESS", 1).await;
    let rows = n.alerts().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].channel, "none");
    assert_eq!(rows[0].status, "suppressed");
    assert!(rows[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("LOGCANARY_SMTP_URL"));
    n.stop().await;
}
