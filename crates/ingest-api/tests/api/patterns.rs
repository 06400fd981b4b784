//! `GET /api/patterns/`: detections as the analysis stores them, listed newest first.

use chrono::{Duration, Utc};
use db::patterns::NewPatternDetection;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

async fn store(app: &TestApp, rows: Vec<NewPatternDetection>) -> Vec<(i64, bool)> {
    app.db
        .db
        .run(move |c| db::patterns::insert_new(c, &rows))
        .await
        .unwrap()
}

fn detection(kind: &str, source: &str, severity: &str, minutes_ago: i64) -> NewPatternDetection {
    let end = Utc::now() - Duration::minutes(minutes_ago);
    NewPatternDetection {
        kind: kind.into(),
        window_start: end - Duration::minutes(10),
        window_end: end,
        source: source.into(),
        severity: severity.into(),
        details: json!({"summary": format!("{kind} on {source}"), "errors": 12}),
        log_entry_ids: vec![3, 1, 2],
        task_id: Some(uuid::Uuid::new_v4()),
    }
}

#[tokio::test]
async fn detections_are_listed_newest_first_with_their_details() {
    let app = spawn_app().await;
    let empty: Value = app.get("/api/patterns/").await.json().await.unwrap();
    assert_eq!(empty, json!({"results": [], "next": null}));

    let ids = store(
        &app,
        vec![
            detection("error_spike", "payments", "WARNING", 30),
            detection("anomaly_cluster", "", "CRITICAL", 20),
            detection("low_activity", "web", "CRITICAL", 10),
        ],
    )
    .await;
    assert!(ids.iter().all(|(_, new)| *new));

    let resp = app.get("/api/patterns/").await;
    assert_eq!(resp.status(), 200);
    let page: Value = resp.json().await.unwrap();
    let results = page["results"].as_array().unwrap();
    let kinds: Vec<&str> = results
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["low_activity", "anomaly_cluster", "error_spike"]);
    let spike = &results[2];
    assert_eq!(spike["id"], ids[0].0);
    assert_eq!(spike["source"], "payments");
    assert_eq!(spike["severity"], "WARNING");
    assert_eq!(spike["details"]["errors"], 12);
    assert_eq!(spike["details"]["summary"], "error_spike on payments");
    assert_eq!(spike["log_entry_ids"], json!([3, 1, 2]));
    assert!(spike["task_id"].is_string());
    for field in ["window_start", "window_end", "detected_at"] {
        let t = spike[field].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(t).is_ok(),
            "{field}: {t}"
        );
    }
    assert!(page["next"].is_null());
    app.cleanup().await;
}

#[tokio::test]
async fn storing_the_same_window_twice_keeps_one_row() {
    let app = spawn_app().await;
    let d = detection("error_spike", "payments", "WARNING", 30);
    let first = store(&app, vec![d.clone()]).await;
    let again = store(&app, vec![d]).await;
    assert_eq!(first[0].0, again[0].0);
    assert_eq!((first[0].1, again[0].1), (true, false));
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM pattern_detections")
            .await,
        1
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_detection_that_continues_a_stored_one_widens_that_incident() {
    let app = spawn_app().await;
    let first = detection("error_spike", "payments", "WARNING", 20);
    let stored = store(&app, vec![first.clone()]).await;
    assert!(stored[0].1, "a new incident alerts");
    let id = stored[0].0;

    // The next run sees the spike go on past the window edge that cut the first one.
    let mut more = first.clone();
    more.window_start = first.window_end - Duration::minutes(2);
    more.window_end = first.window_end + Duration::minutes(8);
    more.log_entry_ids = vec![2, 4];
    more.details = json!({"summary": "error_spike on payments, still going", "errors": 30});
    assert_eq!(
        store(&app, vec![more.clone()]).await,
        vec![(id, false)],
        "the same incident: no second row, no second alert"
    );
    // Touching windows continue it too; a worse severity alerts again.
    let mut worse = more.clone();
    worse.window_start = more.window_end;
    worse.window_end = more.window_end + Duration::minutes(5);
    worse.severity = "CRITICAL".into();
    worse.log_entry_ids = vec![9];
    assert_eq!(store(&app, vec![worse.clone()]).await, vec![(id, true)]);

    let page: Value = app.get("/api/patterns/").await.json().await.unwrap();
    let rows = page["results"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{page}");
    let incident = &rows[0];
    assert_eq!(incident["id"], id);
    assert_eq!(incident["severity"], "CRITICAL");
    assert_eq!(incident["log_entry_ids"], json!([1, 2, 3, 4, 9]));
    assert_eq!(incident["details"]["errors"], 30);
    let start =
        chrono::DateTime::parse_from_rfc3339(incident["window_start"].as_str().unwrap()).unwrap();
    let end =
        chrono::DateTime::parse_from_rfc3339(incident["window_end"].as_str().unwrap()).unwrap();
    assert_eq!(start.timestamp(), first.window_start.timestamp());
    assert_eq!(end.timestamp(), worse.window_end.timestamp());

    // Another source, or a later spike after a quiet gap, is another incident.
    let elsewhere = detection("error_spike", "search", "WARNING", 20);
    let mut later = first.clone();
    later.window_start = worse.window_end + Duration::minutes(30);
    later.window_end = later.window_start + Duration::minutes(10);
    let stored = store(&app, vec![elsewhere, later]).await;
    assert!(
        stored.iter().all(|(other, new)| *new && *other != id),
        "{stored:?}"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn filters_and_pages_narrow_the_list() {
    let app = spawn_app().await;
    let mut rows = Vec::new();
    for i in 0..5 {
        rows.push(detection(
            "error_spike",
            &format!("s{i}"),
            "WARNING",
            60 - i,
        ));
    }
    rows.push(detection("low_activity", "web", "CRITICAL", 5));
    store(&app, rows).await;

    let spikes: Value = app
        .get("/api/patterns/?kind=error_spike")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(spikes["results"].as_array().unwrap().len(), 5);
    let web: Value = app
        .get("/api/patterns/?source=web")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(web["results"][0]["kind"], "low_activity");
    let critical: Value = app
        .get("/api/patterns/?severity=CRITICAL")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(critical["results"].as_array().unwrap().len(), 1);

    // Pages of two: 6 rows -> 2 + 2 + 2, no overlap.
    let mut seen = Vec::new();
    let mut path = "/api/patterns/?limit=2".to_owned();
    loop {
        let page: Value = app.get(&path).await.json().await.unwrap();
        for r in page["results"].as_array().unwrap() {
            seen.push(r["id"].as_i64().unwrap());
        }
        match page["next"].as_str() {
            Some(next) => path = format!("/api/patterns/?limit=2&cursor={next}"),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(seen, sorted, "newest first, each once");
    assert_eq!(seen.len(), 6);

    let future = (Utc::now() + Duration::hours(1)).to_rfc3339();
    let none: Value = app
        .get(&format!(
            "/api/patterns/?since={}",
            future.replace('+', "%2B")
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["results"], json!([]));
    app.cleanup().await;
}

#[tokio::test]
async fn bad_filters_are_rejected_field_by_field() {
    let app = spawn_app().await;
    let resp = app
        .get("/api/patterns/?kind=meteor&severity=LOUD&limit=0&since=yesterday&cursor=x")
        .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    for field in ["kind", "severity", "limit", "since", "cursor"] {
        assert!(body[field].is_array(), "{field} missing in {body}");
    }
    let resp = app
        .client
        .post(format!("{}/api/patterns/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    app.cleanup().await;
}
