//! The notifier against a real Prometheus Alertmanager (Debian's `prometheus-alertmanager`,
//! installed by `make setup`), which routes what it gets on to a webhook receiver served
//! by the test: the assertions are on what Alertmanager itself notifies.

use std::time::{Duration, Instant};

use test_support::{
    alertmanager::{Alertmanager, AM_T},
    webhook::{Received, WebhookSink},
};

use crate::delivery::{args, Notifier};

/// The notifications Alertmanager sent with `status` (`firing` or `resolved`).
fn notifications(sink: &WebhookSink, status: &str) -> Vec<(Received, serde_json::Value)> {
    sink.requests()
        .into_iter()
        .map(|r| {
            let body = r.json();
            (r, body)
        })
        .filter(|(_, b)| b["status"] == status)
        .collect()
}

async fn wait_notification(
    am: &Alertmanager,
    sink: &WebhookSink,
    status: &str,
) -> (Received, serde_json::Value) {
    let deadline = Instant::now() + AM_T;
    loop {
        if let Some(n) = notifications(sink, status).into_iter().next() {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "no {status:?} notification from Alertmanager within {AM_T:?}; it got: {:?}\nits log:\n{}",
            sink.requests().iter().map(Received::json).collect::<Vec<_>>(),
            am.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn alertmanager_routes_the_firing_alert_and_then_its_end() {
    let receiver = WebhookSink::start().await;
    let Some(am) = Alertmanager::start(&receiver.url("/alertmanager")).await else {
        return;
    };
    let resolve = Duration::from_secs(3);
    let n = Notifier::start(&args(&[
        ("--alertmanager-urls", am.url()),
        ("--alertmanager-repost-secs", "1".into()),
        ("--incident-resolve-secs", resolve.as_secs().to_string()),
    ]))
    .await;
    n.critical_of("CRITICAL", &["Disk /dev/sda1 is full"], Some(4242))
        .await;
    n.wait_tasks("SUCCESS", 1).await;

    let (_, firing) = wait_notification(&am, &receiver, "firing").await;
    let alert = &firing["alerts"][0];
    assert_eq!(
        firing["alerts"].as_array().map(Vec::len),
        Some(1),
        "{firing}"
    );
    assert_eq!(alert["status"], "firing");
    let labels = &alert["labels"];
    assert_eq!(labels["alertname"], "LogcanaryCriticalAnomaly", "{alert}");
    assert_eq!(labels["severity"], "critical");
    assert_eq!(labels["kind"], "critical_anomaly");
    assert_eq!(labels["template_id"], "4242");
    assert_eq!(labels["source"], "payments");
    assert_eq!(labels["dedup_key"], "critical_anomaly:template:4242");
    let annotations = &alert["annotations"];
    assert!(
        annotations["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("Disk /dev/sda1 is full"),
        "{alert}"
    );
    assert_eq!(
        annotations["description"],
        "Rare template, far from every known line."
    );
    let link = annotations["dashboard_url"].as_str().unwrap_or_default();
    assert!(link.starts_with("http://canary.test/api/logs/"), "{alert}");
    assert_eq!(alert["generatorURL"], link);

    // The same alert again, inside the cooldown: not sent, but the incident goes on.
    let again = Instant::now();
    n.critical_of("CRITICAL", &["Disk /dev/sda1 is full"], Some(4242))
        .await;
    n.wait_tasks("SUCCESS", 2).await;
    let rows = n.alerts().await;
    assert_eq!(
        rows.iter().filter(|a| a.status == "suppressed").count(),
        1,
        "{rows:#?}"
    );

    let (resolved_at, resolved) = wait_notification(&am, &receiver, "resolved").await;
    let ended = &resolved["alerts"][0];
    assert_eq!(ended["status"], "resolved");
    assert_eq!(ended["labels"], *labels, "the end is the same alert");
    assert!(
        resolved_at.at.duration_since(again) >= resolve,
        "the suppressed alert kept the incident open for the resolve time"
    );
    // Re-posts kept the alert alive without notifying again (repeat_interval is long).
    assert_eq!(notifications(&receiver, "firing").len(), 1);

    let incidents =
        n.db.db
            .run(|c| db::incidents::list(c, 10))
            .await
            .expect("listing incidents");
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    let i = &incidents[0];
    assert!(i.resolved_at.is_some() && i.last_error.is_none(), "{i:#?}");
    assert!(
        i.attempts >= 2,
        "re-posted at least once before the end: {i:#?}"
    );
    n.stop().await;
}
