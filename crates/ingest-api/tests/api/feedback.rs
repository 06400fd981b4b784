//! `POST /api/logs/{id}/feedback/` and `GET /api/templates/`.
//!
//! No worker runs here: an entry is "analysed" by writing what the analysis worker
//! writes (a `templates` row and the entry's `template_id`).

use serde_json::{json, Value};

use crate::helpers::{entry, spawn_app, TestApp};

/// Posts an entry and marks it analysed with a template of its own; returns
/// (entry id, template row id).
async fn analysed_entry(app: &TestApp, key: &str, template: &str, count: i64) -> (i64, i64) {
    let created: Value = app
        .post_signed("/api/logs/", &entry("ERROR", template))
        .await
        .json()
        .await
        .unwrap();
    let entry_id = created["id"].as_i64().unwrap();
    let (key, template) = (key.to_owned(), template.to_owned());
    let template_id = app
        .db
        .db
        .run(move |c| {
            let now = chrono::Utc::now();
            let rows = db::templates::upsert(
                c,
                &[db::templates::TemplateDelta {
                    key,
                    template,
                    count,
                    first_seen: now,
                    last_seen: now,
                    embedding: Some(vec![0.6, 0.8]),
                    new_after_warmup: true,
                    novelty: 0.0,
                    born_settled: 0.0,
                }],
                |_, _| db::templates::StoredPresence::default(),
            )?;
            let id = rows[0].1;
            db::entries::write_scores(
                c,
                &[db::models::EntryScore {
                    id: entry_id,
                    anomaly_score: 0.9,
                    is_anomaly: true,
                    summary: "New message pattern; severity ERROR".into(),
                    template_id: Some(id),
                    prior_score: None,
                }],
            )?;
            Ok(id)
        })
        .await
        .unwrap();
    (entry_id, template_id)
}

/// Posts a label on an entry's template (`POST /api/logs/{id}/feedback/`); the `200` answer.
async fn answer(app: &TestApp, entry_id: i64, label: &str) -> Value {
    let resp = app
        .post_signed(
            &format!("/api/logs/{entry_id}/feedback/"),
            &json!({ "label": label }),
        )
        .await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn labelled(app: &TestApp) -> i64 {
    app.db
        .count("SELECT count(*) FROM templates WHERE label IS NOT NULL OR labelled_at IS NOT NULL")
        .await
}

#[tokio::test]
async fn feedback_labels_the_template_of_an_analysed_entry() {
    let app = spawn_app().await;
    let (entry_id, template_id) =
        analysed_entry(&app, "t00000000000000aa", "Disk <*> failed", 3).await;

    let out = answer(&app, entry_id, "normal").await;
    assert_eq!(out["log_entry_id"], entry_id);
    assert_eq!(out["template"]["id"], template_id);
    assert_eq!(out["template"]["template"], "Disk <*> failed");
    assert_eq!(out["template"]["template_key"], "t00000000000000aa");
    assert_eq!(out["template"]["label"], "normal");
    assert!(out["template"]["labelled_at"].is_string(), "{out}");
    assert_eq!(out["template"]["label_max_level"], "ERROR", "{out}");
    // The entry itself was received just now: its verdict follows the label.
    assert_eq!(out["rescored"], 1, "{out}");
    assert_eq!(
        app.db
            .count(
                "SELECT count(*) FROM templates WHERE label = 'normal' AND labelled_at IS NOT NULL"
            )
            .await,
        1
    );
    // A normal label records the levels it covers: the template's entries of the day
    // came at ERROR at most (the workers then flag a later CRITICAL burst of it until
    // CRITICAL lines of it arrive steadily).
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM templates WHERE label_max_level = 'ERROR'")
            .await,
        1
    );

    // The operator changes their mind: the last label wins.
    let out = answer(&app, entry_id, "anomaly").await;
    assert_eq!(out["template"]["label"], "anomaly");
    assert_eq!(out["template"]["label_max_level"], Value::Null, "{out}");
    assert_eq!(out["rescored"], 1, "{out}");
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM templates WHERE label_max_level IS NULL")
            .await,
        1,
        "an anomaly label covers every level"
    );

    let page: Value = app.get("/api/templates/").await.json().await.unwrap();
    let results = page["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["id"], template_id);
    assert_eq!(results[0]["label"], "anomaly");
    assert_eq!(results[0]["count"], 3);
    for field in ["first_seen", "last_seen", "labelled_at", "template_key"] {
        assert!(results[0][field].is_string(), "{field} in {page}");
    }
    app.cleanup().await;
}

/// An operator who answers from a longer view of the review queue (`?hours=72`), on a
/// template with no entries that day, labels the levels its entries had come at, not
/// every level: a later CRITICAL burst of an ERROR pattern is still judged on its own.
#[tokio::test]
async fn a_normal_answer_on_an_older_pattern_covers_the_levels_it_came_at() {
    let app = spawn_app().await;
    let (entry_id, _) = analysed_entry(&app, "t00000000000000cc", "Disk <*> failed", 1).await;
    app.move_entry_back(entry_id, 3).await;

    let out = answer(&app, entry_id, "normal").await;
    assert_eq!(out["rescored"], 1, "{out}");
    assert_eq!(
        out["template"]["label_max_level"], "ERROR",
        "the label covers ERROR, the level of the template's latest entries: {out}"
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM templates WHERE label_max_level = 'ERROR'")
            .await,
        1
    );
    app.cleanup().await;
}

#[tokio::test]
async fn bad_feedback_is_rejected_and_stores_nothing() {
    let app = spawn_app().await;
    let (entry_id, _) = analysed_entry(&app, "t00000000000000bb", "Disk <*> failed", 1).await;
    let path = format!("/api/logs/{entry_id}/feedback/");
    let cases: Vec<(Value, Value)> = vec![
        (
            json!({"label": "x"}),
            json!({"label": ["\"x\" is not a valid choice."]}),
        ),
        (
            json!({"label": "Normal"}),
            json!({"label": ["\"Normal\" is not a valid choice."]}),
        ),
        (
            json!({"label": 5}),
            json!({"label": ["\"5\" is not a valid choice."]}),
        ),
        (
            json!({"label": null}),
            json!({"label": ["This field may not be null."]}),
        ),
        (json!({}), json!({"label": ["This field is required."]})),
        (
            json!(["normal"]),
            json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
        ),
    ];
    for (body, expected) in cases {
        let resp = app.post_signed(&path, &body).await;
        assert_eq!(resp.status(), 400, "{body}");
        let out: Value = resp.json().await.unwrap();
        assert_eq!(out, expected, "{body}");
    }

    let bytes = b"{\"label\": ";
    let resp = app
        .post_raw(
            &path,
            bytes,
            Some(test_support::request_signature("POST", &path, bytes)),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let out: Value = resp.json().await.unwrap();
    assert!(
        out["detail"]
            .as_str()
            .unwrap()
            .starts_with("JSON parse error"),
        "{out}"
    );

    // Unsigned and wrongly signed: 401 before anything is looked at.
    let body = serde_json::to_vec(&json!({"label": "normal"})).unwrap();
    for signature in [None, Some("deadbeef".to_owned())] {
        let resp = app.post_raw(&path, &body, signature.clone()).await;
        assert_eq!(resp.status(), 401, "{signature:?}");
        let out: Value = resp.json().await.unwrap();
        assert!(out["detail"].is_string(), "{out}");
    }

    // Not JSON.
    let resp = app
        .client
        .post(format!("{}{path}", app.address))
        .header("Content-Type", "text/plain")
        .header("X-HMAC-Signature", test_support::legacy_signature(&body))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let out: Value = resp.json().await.unwrap();
    assert!(out["detail"].is_string(), "{out}");

    assert_eq!(labelled(&app).await, 0, "no label stored");
    app.cleanup().await;
}

#[tokio::test]
async fn feedback_on_an_unknown_or_unanalysed_entry_is_refused() {
    let app = spawn_app().await;
    for path in [
        "/api/logs/987654/feedback/",
        "/api/logs/not-a-number/feedback/",
    ] {
        let resp = app.post_signed(path, &json!({"label": "normal"})).await;
        assert_eq!(resp.status(), 404, "{path}");
        let out: Value = resp.json().await.unwrap();
        assert_eq!(
            out,
            json!({"detail": "No log entry with this id."}),
            "{path}"
        );
    }

    // Stored but not analysed yet: no template to label.
    let created: Value = app
        .post_signed("/api/logs/", &entry("ERROR", "Kernel panic"))
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_i64().unwrap();
    let resp = app
        .post_signed(
            &format!("/api/logs/{id}/feedback/"),
            &json!({"label": "normal"}),
        )
        .await;
    assert_eq!(resp.status(), 409);
    let out: Value = resp.json().await.unwrap();
    assert!(
        out["detail"]
            .as_str()
            .unwrap()
            .contains("has not been analysed yet"),
        "{out}"
    );
    assert_eq!(app.db.count("SELECT count(*) FROM templates").await, 0);

    // GET is not a method of this resource.
    let resp = app.get(&format!("/api/logs/{id}/feedback/")).await;
    assert_eq!(resp.status(), 405);
    app.cleanup().await;
}

#[tokio::test]
async fn templates_are_listed_most_frequent_or_newest_first() {
    let app = spawn_app().await;
    analysed_entry(&app, "t00000000000000c1", "Disk <*> failed", 2).await;
    analysed_entry(&app, "t00000000000000c2", "Fan <*> stopped", 50).await;
    analysed_entry(&app, "t00000000000000c3", "Link <*> down", 7).await;

    let page: Value = app.get("/api/templates/").await.json().await.unwrap();
    let counts: Vec<i64> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, vec![50, 7, 2]);

    let page: Value = app
        .get("/api/templates/?ordering=-last_seen&limit=2")
        .await
        .json()
        .await
        .unwrap();
    let texts: Vec<&str> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["template"].as_str().unwrap())
        .collect();
    assert_eq!(texts, vec!["Link <*> down", "Fan <*> stopped"]);

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("limit=1001", "limit"),
        ("ordering=count", "ordering"),
    ] {
        let resp = app.get(&format!("/api/templates/?{query}")).await;
        assert_eq!(resp.status(), 400, "{query}");
        let out: Value = resp.json().await.unwrap();
        assert!(out[field][0].is_string(), "{query}: {out}");
    }
    app.cleanup().await;
}
