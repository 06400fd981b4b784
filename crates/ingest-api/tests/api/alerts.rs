//! `GET /api/alerts/`: what the notifier recorded, with delivery state and filters. No
//! notifier runs here: rows are written with the same `db::alerts` calls it makes.

use db::alerts::{Attempt, Candidate};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{spawn_app, TestApp};

/// Three alerts: a sent email, a failed webhook, and a repeat suppressed by the cooldown.
async fn seed(app: &TestApp) -> Vec<i64> {
    app.db
        .db
        .run(|c| {
            let candidate = |channel: &str, key: &str, kind: &str| Candidate {
                dedup_key: key.into(),
                kind: kind.into(),
                channel: channel.into(),
                payload: json!({"title": format!("{kind} {key}"), "severity": "ERROR", "summary": "why"}),
                log_entry_id: Some(1),
                pattern_detection_id: None,
                task_id: Uuid::new_v4(),
            };
            let cooldown = std::time::Duration::from_secs(600);
            let first = db::alerts::claim(
                c,
                &[
                    candidate("email", "critical_anomaly:template:1", "critical_anomaly"),
                    candidate("webhook:hooks.test#0011aabb", "pattern:error_spike:api", "pattern"),
                ],
                cooldown,
            )?;
            db::alerts::record_attempt(c, &[first[0].id], &Attempt::Sent)?;
            db::alerts::record_attempt(c, &[first[1].id], &Attempt::Failed("HTTP 500".into()))?;
            let repeat = db::alerts::claim(
                c,
                &[candidate("email", "critical_anomaly:template:1", "critical_anomaly")],
                cooldown,
            )?;
            Ok(vec![first[0].id, first[1].id, repeat[0].id])
        })
        .await
        .expect("seeding alerts")
}

async fn page(app: &TestApp, query: &str) -> Value {
    let resp = app.get(&format!("/api/alerts/{query}")).await;
    assert_eq!(resp.status(), 200, "{query}");
    resp.json().await.unwrap()
}

fn ids(page: &Value) -> Vec<i64> {
    page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn alerts_are_listed_newest_first_with_their_delivery_state() {
    let app = spawn_app().await;
    let empty = page(&app, "").await;
    assert_eq!(empty, json!({"results": [], "next": null}));
    let [sent, failed, suppressed] = seed(&app).await[..] else {
        panic!("three alerts")
    };

    let all = page(&app, "").await;
    assert_eq!(ids(&all), vec![suppressed, failed, sent]);
    let first = &all["results"][2];
    assert_eq!(first["status"], "sent");
    assert_eq!(first["channel"], "email");
    assert_eq!(first["attempts"], 1);
    assert!(first["sent_at"].is_string() && first["created_at"].is_string());
    assert_eq!(
        first["title"],
        "critical_anomaly critical_anomaly:template:1"
    );
    assert!(first["task_id"].is_string());
    assert_eq!(all["results"][1]["last_error"], "HTTP 500");
    assert_eq!(all["results"][0]["status"], "suppressed");
    assert_eq!(all["results"][0]["suppressed_by"], sent);

    assert_eq!(ids(&page(&app, "?status=failed").await), vec![failed]);
    assert_eq!(ids(&page(&app, "?kind=pattern").await), vec![failed]);
    assert_eq!(ids(&page(&app, "?channel=webhook:").await), vec![failed]);
    assert_eq!(
        ids(&page(&app, "?channel=email").await),
        vec![suppressed, sent]
    );

    let one = page(&app, "?limit=2").await;
    assert_eq!(ids(&one), vec![suppressed, failed]);
    let cursor = one["next"].as_str().unwrap().to_owned();
    let rest = page(&app, &format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(ids(&rest), vec![sent]);
    assert_eq!(rest["next"], Value::Null);
}

#[tokio::test]
async fn bad_filters_are_400_naming_the_field() {
    let app = spawn_app().await;
    let resp = app
        .get("/api/alerts/?status=lost&limit=0&since=yesterday&cursor=x")
        .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    for field in ["status", "limit", "since", "cursor"] {
        assert!(body[field].is_array(), "{field} missing in {body}");
    }
    let resp = app
        .client
        .post(format!("{}/api/alerts/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
}
