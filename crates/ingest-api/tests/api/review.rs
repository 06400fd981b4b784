//! `GET /api/review/` (the review queue) and the re-scoring of the latest entries that an
//! operator's label triggers.
//!
//! No worker runs here: templates and scored entries are written as the analysis worker
//! writes them (a `templates` row, then entries with their score, verdict and
//! `template_id`).

use diesel::{
    sql_types::{BigInt, Bool, Double, Integer, Text},
    RunQueryDsl,
};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

/// Creates a template (`count` lines in all) and returns its id.
async fn template(app: &TestApp, key: &str, text: &str, count: i64) -> i64 {
    template_seen(app, key, text, count, 0, 0).await
}

/// Creates a template first seen `hours` ago, in `windows` time windows (each of a
/// quarter of its lines at most, when there are any), and returns its id.
async fn template_seen(
    app: &TestApp,
    key: &str,
    text: &str,
    count: i64,
    windows: i32,
    hours: i64,
) -> i64 {
    let (key, text) = (key.to_owned(), text.to_owned());
    app.db
        .db
        .run(move |c| {
            let now = chrono::Utc::now();
            let rows = db::templates::upsert(
                c,
                &[db::templates::TemplateDelta {
                    key,
                    template: text,
                    count,
                    first_seen: now - chrono::Duration::hours(hours),
                    last_seen: now,
                    embedding: None,
                    new_after_warmup: true,
                    novelty: 0.0,
                    born_settled: 0.0,
                }],
                // The presence the workers would have counted.
                |_, _| db::templates::StoredPresence {
                    lines: count,
                    windows,
                    max_window_lines: if windows > 0 { count / 4 } else { 0 },
                    episodes: windows,
                    ..db::templates::StoredPresence::default()
                },
            )?;
            Ok(rows[0].1)
        })
        .await
        .unwrap()
}

/// A template the workers learned as normal: `count` lines seen in 6 time windows over
/// two hours, no window holding more than a quarter of them.
async fn learned_normal_template(app: &TestApp, key: &str, text: &str, count: i64) -> i64 {
    template_seen(app, key, text, count, 6, 2).await
}

/// Stores `lines` analysed entries of `template_id`, received `age_minutes` ago, with
/// `score` (flagged at 0.6 and above, as the workers would); returns their ids.
async fn scored_entries(
    app: &TestApp,
    template_id: i64,
    severity: &str,
    lines: i32,
    score: f64,
    age_minutes: i32,
) -> Vec<i64> {
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let severity = severity.to_owned();
    let rows: Vec<Id> = app
        .db
        .db
        .run(move |c| {
            Ok(diesel::sql_query(
                "INSERT INTO log_entries (received_at, logged_at, severity, message, \
                     anomaly_score, is_anomaly, summary, template_id, analyzed_at) \
                 SELECT now() - make_interval(mins => $5), now() - make_interval(mins => $5), \
                     $1, 'line ' || n, $2, $3, 'New message pattern; severity ' || $1, $4, now() \
                 FROM generate_series(1, $6) AS n \
                 RETURNING id",
            )
            .bind::<Text, _>(severity)
            .bind::<Double, _>(score)
            .bind::<Bool, _>(score >= 0.6)
            .bind::<BigInt, _>(template_id)
            .bind::<Integer, _>(age_minutes)
            .bind::<Integer, _>(lines)
            .load(c)?)
        })
        .await
        .unwrap();
    rows.into_iter().map(|r| r.id).collect()
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let resp = app.get(path).await;
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.unwrap()
}

/// Sets the stored prior score of entries `ids`, as the worker writes it.
async fn set_prior(app: &TestApp, ids: Vec<i64>, prior: f32) {
    app.db
        .db
        .run(move |c| {
            Ok(
                diesel::sql_query("UPDATE log_entries SET prior_score = $2 WHERE id = ANY($1)")
                    .bind::<diesel::sql_types::Array<BigInt>, _>(ids)
                    .bind::<diesel::sql_types::Float4, _>(prior)
                    .execute(c)?,
            )
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn review_queue_ranks_a_learned_normal_template_by_its_stored_prior() {
    let app = spawn_app().await;
    // Both learned as normal and scored 0.23 for it; one read like trouble before the rule
    // lowered it (prior 0.48), the other did not (0.12).
    let suspect =
        learned_normal_template(&app, "treview00000000b1", "Wait for ready failed", 12).await;
    let lines = scored_entries(&app, suspect, "INFO", 12, 0.23, 5).await;
    set_prior(&app, lines, 0.48).await;
    let routine = learned_normal_template(&app, "treview00000000b2", "Session opened", 12).await;
    let lines = scored_entries(&app, routine, "INFO", 12, 0.23, 5).await;
    set_prior(&app, lines, 0.12).await;
    // Lines scored before the column existed have no prior: their score stands for it.
    let legacy = learned_normal_template(&app, "treview00000000b3", "Cron ran", 12).await;
    scored_entries(&app, legacy, "INFO", 12, 0.23, 5).await;

    let page = get_json(&app, "/api/review/").await;
    let results = page["results"].as_array().unwrap();
    let ids: Vec<i64> = results
        .iter()
        .map(|r| r["template_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![suspect, legacy, routine], "{page}");
    for r in results {
        assert!(
            (r["mean_score"].as_f64().unwrap() - 0.23).abs() < 1e-9,
            "{r}"
        );
    }
}

#[tokio::test]
async fn review_queue_ranks_uncertain_frequent_severe_templates_first() {
    let app = spawn_app().await;
    // Uncertain (0.62 at a 0.6 threshold), frequent (40 lines) and CRITICAL at worst.
    let uncertain = template(&app, "treview00000000a1", "Replica <*> lagging", 500).await;
    scored_entries(&app, uncertain, "ERROR", 30, 0.62, 5).await;
    let newest = scored_entries(&app, uncertain, "CRITICAL", 10, 0.62, 1).await;
    // As frequent and severe, but certain.
    let certain = template(&app, "treview00000000a2", "Kernel panic on <*>", 40).await;
    scored_entries(&app, certain, "CRITICAL", 40, 0.98, 5).await;
    // As uncertain and severe, but rare.
    let rare = template(&app, "treview00000000a3", "Disk <*> failed", 1).await;
    scored_entries(&app, rare, "CRITICAL", 1, 0.62, 5).await;
    // As uncertain and frequent, but INFO.
    let info = template(&app, "treview00000000a4", "User <*> logged in", 40).await;
    scored_entries(&app, info, "INFO", 40, 0.55, 5).await;
    // Labelled already: not a candidate, however uncertain.
    let labelled = template(&app, "treview00000000a5", "Fan <*> stopped", 40).await;
    scored_entries(&app, labelled, "CRITICAL", 40, 0.6, 5).await;
    app.db
        .db
        .run(move |c| db::templates::set_label(c, labelled, "normal"))
        .await
        .unwrap()
        .expect("labelled");
    // Lines only from two days ago: outside the default 24 h window.
    let old = template(&app, "treview00000000a6", "Link <*> down", 40).await;
    scored_entries(&app, old, "CRITICAL", 40, 0.62, 48 * 60).await;
    // A template whose lines are not scored yet is not a candidate either.
    template(&app, "treview00000000a7", "Not scored <*>", 3).await;

    let page = get_json(&app, "/api/review/").await;
    assert_eq!(page["hours"], 24);
    let results = page["results"].as_array().unwrap();
    let ids: Vec<i64> = results
        .iter()
        .map(|r| r["template_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids[0], uncertain, "{page}");
    assert_eq!(ids.len(), 4, "{page}");
    for other in [certain, rare, info] {
        assert!(ids.contains(&other), "{other} missing: {page}");
    }
    assert!(
        !ids.contains(&labelled),
        "a labelled template is listed: {page}"
    );
    assert!(
        !ids.contains(&old),
        "a template without recent lines: {page}"
    );
    let priorities: Vec<f64> = results
        .iter()
        .map(|r| r["priority"].as_f64().unwrap())
        .collect();
    assert!(
        priorities.windows(2).all(|w| w[0] >= w[1]),
        "not sorted by priority: {page}"
    );

    let first = &results[0];
    assert_eq!(first["template"], "Replica <*> lagging");
    assert_eq!(first["count"], 500);
    assert_eq!(first["recent_lines"], 40);
    assert_eq!(first["flagged"], 40);
    assert!(
        (first["mean_score"].as_f64().unwrap() - 0.62).abs() < 1e-9,
        "{first}"
    );
    assert_eq!(first["severity"], "CRITICAL");
    assert_eq!(first["sample_log_entry_id"], *newest.iter().max().unwrap());
    let info_row = results.iter().find(|r| r["template_id"] == info).unwrap();
    assert_eq!(info_row["severity"], "INFO");
    assert_eq!(info_row["flagged"], 0);

    // `limit` keeps the head of the ranking; a longer window reaches older lines.
    let page = get_json(&app, "/api/review/?limit=2").await;
    assert_eq!(page["results"].as_array().unwrap().len(), 2);
    assert_eq!(page["results"][0]["template_id"], uncertain);
    let page = get_json(&app, "/api/review/?hours=72&limit=200").await;
    assert_eq!(page["hours"], 72);
    let ids: Vec<i64> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["template_id"].as_i64().unwrap())
        .collect();
    assert!(ids.contains(&old), "{page}");
    assert!(!ids.contains(&labelled), "{page}");

    for (query, field, message) in [
        (
            "limit=0",
            "limit",
            "Ensure this value is an integer from 1 to 200.",
        ),
        (
            "limit=201",
            "limit",
            "Ensure this value is an integer from 1 to 200.",
        ),
        (
            "limit=abc",
            "limit",
            "Ensure this value is an integer from 1 to 200.",
        ),
        (
            "hours=0",
            "hours",
            "Ensure this value is an integer from 1 to 720.",
        ),
        (
            "hours=721",
            "hours",
            "Ensure this value is an integer from 1 to 720.",
        ),
    ] {
        let resp = app.get(&format!("/api/review/?{query}")).await;
        assert_eq!(resp.status(), 400, "{query}");
        let out: Value = resp.json().await.unwrap();
        assert_eq!(out[field], json!([message]), "{query}: {out}");
        assert_eq!(out.as_object().unwrap().len(), 1, "{query}: {out}");
    }
    let resp = app
        .client
        .post(format!("{}/api/review/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    app.cleanup().await;
}

#[tokio::test]
async fn review_queue_is_empty_without_scored_lines() {
    let app = spawn_app().await;
    let page = get_json(&app, "/api/review/").await;
    assert_eq!(page, json!({"results": [], "hours": 24}));
    app.cleanup().await;
}

#[tokio::test]
async fn feedback_rescores_the_templates_latest_entries_whatever_their_age() {
    let app = spawn_app().await;
    let id = template(&app, "trescore00000000b1", "Disk <*> failed", 3).await;
    let recent = scored_entries(&app, id, "ERROR", 1, 0.9, 10).await[0];
    // A day and a bit old: a quiet source's earlier line of the same pattern.
    let old = scored_entries(&app, id, "ERROR", 1, 0.9, 25 * 60).await[0];
    // Three days old, at a level above those of the last day: "normal" does not cover it.
    let critical = scored_entries(&app, id, "CRITICAL", 1, 0.9, 72 * 60).await[0];
    // Another template's recent entry is not touched.
    let other = template(&app, "trescore00000000b2", "Fan <*> stopped", 1).await;
    let bystander = scored_entries(&app, other, "ERROR", 1, 0.9, 10).await[0];

    let resp = app
        .post_signed(
            &format!("/api/logs/{recent}/feedback/"),
            &json!({"label": "normal"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let out: Value = resp.json().await.unwrap();
    assert_eq!(out["rescored"], 2, "{out}");
    assert_eq!(out["template"]["label"], "normal");

    for rescored in [recent, old] {
        let entry = get_json(&app, &format!("/api/logs/{rescored}/")).await;
        assert_eq!(entry["is_anomaly"], false, "{entry}");
        assert_eq!(
            entry["summary"],
            "New message pattern; severity ERROR; re-scored: its pattern was marked normal by an operator"
        );
        assert_eq!(entry["anomaly_score"], 0.9, "the score is kept");
    }
    let entry = get_json(&app, &format!("/api/logs/{critical}/")).await;
    assert_eq!(entry["is_anomaly"], true, "{entry}");
    assert_eq!(entry["summary"], "New message pattern; severity CRITICAL");
    let entry = get_json(&app, &format!("/api/logs/{bystander}/")).await;
    assert_eq!(entry["is_anomaly"], true, "{entry}");
    assert_eq!(entry["summary"], "New message pattern; severity ERROR");
    // The review queue no longer asks about it.
    let page = get_json(&app, "/api/review/").await;
    let ids: Vec<&Value> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["template_id"])
        .collect();
    assert_eq!(ids, vec![&json!(other)], "{page}");

    // The same answer again changes nothing, and the note is not appended twice.
    let out: Value = app
        .post_signed(
            &format!("/api/logs/{recent}/feedback/"),
            &json!({"label": "normal"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(out["rescored"], 0, "{out}");
    let entry = get_json(&app, &format!("/api/logs/{recent}/")).await;
    assert_eq!(
        entry["summary"],
        "New message pattern; severity ERROR; re-scored: its pattern was marked normal by an operator"
    );

    // The operator changes their mind: the verdict follows, the note is replaced.
    let out: Value = app
        .post_signed(
            &format!("/api/logs/{recent}/feedback/"),
            &json!({"label": "anomaly"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(out["rescored"], 3, "{out}");
    for (rescored, level) in [(recent, "ERROR"), (old, "ERROR"), (critical, "CRITICAL")] {
        let entry = get_json(&app, &format!("/api/logs/{rescored}/")).await;
        assert_eq!(entry["is_anomaly"], true);
        assert_eq!(
            entry["summary"],
            format!("New message pattern; severity {level}; re-scored: its pattern was marked anomalous by an operator")
        );
    }
    app.cleanup().await;
}

#[tokio::test]
async fn a_label_rescores_no_more_than_the_templates_latest_entries() {
    let app = spawn_app().await;
    let id = template(&app, "trescore00000000b3", "Link <*> down", 3).await;
    let newest = scored_entries(&app, id, "ERROR", 1, 0.9, 10).await[0];
    let middle = scored_entries(&app, id, "ERROR", 1, 0.9, 20).await[0];
    let oldest = scored_entries(&app, id, "ERROR", 1, 0.9, 30).await[0];
    let rescored = app
        .db
        .db
        .run(move |c| db::templates::rescore_latest(c, id, "normal", None, 2))
        .await
        .unwrap();
    assert_eq!(rescored, 2);
    for (entry, flagged) in [(newest, false), (middle, false), (oldest, true)] {
        let entry = get_json(&app, &format!("/api/logs/{entry}/")).await;
        assert_eq!(entry["is_anomaly"], flagged, "{entry}");
    }
    app.cleanup().await;
}
