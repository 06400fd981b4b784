//! `GET/POST /api/periodic-tasks/` and `GET/PATCH/DELETE /api/periodic-tasks/{id}/`.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

async fn signed(app: &TestApp, method: reqwest::Method, path: &str, body: &[u8]) -> (u16, Value) {
    let method_name = method.to_string();
    let resp = app
        .client
        .request(method, format!("{}{path}", app.address))
        .header("Content-Type", "application/json")
        .header(
            "X-HMAC-Signature",
            test_support::request_signature(&method_name, path, body),
        )
        .body(body.to_vec())
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn create(app: &TestApp, body: &Value) -> (u16, Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    signed(app, reqwest::Method::POST, "/api/periodic-tasks/", &bytes).await
}

async fn patch(app: &TestApp, id: i64, body: &Value) -> (u16, Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    signed(
        app,
        reqwest::Method::PATCH,
        &format!("/api/periodic-tasks/{id}/"),
        &bytes,
    )
    .await
}

fn patterns_every(seconds: i64) -> Value {
    json!({
        "name": "quick patterns",
        "task": "logs.tasks.detect_anomaly_patterns",
        "args": [1],
        "interval": {"every": seconds, "period": "seconds"},
    })
}

#[tokio::test]
async fn the_seeded_schedules_are_listed() {
    let app = spawn_app().await;
    let list: Value = app.get("/api/periodic-tasks/").await.json().await.unwrap();
    let results = list["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["name"], "Pattern Analysis - 6 hourly");
    assert_eq!(results[0]["task"], "logs.tasks.detect_anomaly_patterns");
    assert_eq!(results[0]["args"], json!([24]));
    assert_eq!(
        results[0]["interval"],
        json!({"every": 6, "period": "hours"})
    );
    assert_eq!(results[1]["name"], "Cleanup old results");
    assert_eq!(
        results[1]["interval"],
        json!({"every": 1, "period": "days"})
    );
    assert_eq!(results[1]["enabled"], true);
    app.cleanup().await;
}

#[tokio::test]
async fn create_read_update_delete() {
    let app = spawn_app().await;
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let (status, created) = create(&app, &patterns_every(30)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["total_run_count"], 0);
    assert_eq!(created["timezone"], "UTC");
    assert!(created["cron"].is_null());
    // An interval is due at once, as with django-celery-beat.
    let next =
        chrono::DateTime::parse_from_rfc3339(created["next_run_at"].as_str().unwrap()).unwrap();
    assert!(next >= before);

    let got: Value = app
        .get(&format!("/api/periodic-tasks/{id}/"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["name"], "quick patterns");

    // Switch to cron in a time zone: the interval goes, next run is the next match.
    let (status, updated) = patch(
        &app,
        id,
        &json!({"interval": null, "cron": "0 3 * * *", "timezone": "Europe/Paris", "enabled": false}),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert!(updated["interval"].is_null());
    assert_eq!(updated["cron"], "0 3 * * *");
    assert_eq!(updated["enabled"], false);
    let next =
        chrono::DateTime::parse_from_rfc3339(updated["next_run_at"].as_str().unwrap()).unwrap();
    // 03:00 in Paris is 02:00 UTC in winter, 01:00 UTC in summer.
    let utc = next.with_timezone(&chrono::Utc).format("%H:%M").to_string();
    assert!(utc == "02:00" || utc == "01:00", "{utc}");

    // Unsigned writes are refused.
    let resp = app
        .client
        .delete(format!("{}/api/periodic-tasks/{id}/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let (status, _) = signed(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/periodic-tasks/{id}/"),
        b"",
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        app.get(&format!("/api/periodic-tasks/{id}/"))
            .await
            .status()
            .as_u16(),
        404
    );
    let (status, _) = signed(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/periodic-tasks/{id}/"),
        b"",
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(patch(&app, 999_999, &json!({"enabled": true})).await.0, 404);
    app.cleanup().await;
}

#[tokio::test]
async fn every_field_is_validated_by_name() {
    let app = spawn_app().await;
    let cases: Vec<(Value, Value)> = vec![
        (
            json!({}),
            json!({
                "name": ["This field is required."],
                "task": ["This field is required."],
                "interval": ["Set either an interval or a cron expression."],
            }),
        ),
        (
            json!({"name": "x", "task": "logs.tasks.nope", "interval": {"every": 1, "period": "days"}}),
            json!("task"),
        ),
        (
            json!({"name": "x", "task": "logs.tasks.analyze_log_entry", "interval": {"every": 1, "period": "days"}}),
            json!("task"),
        ),
        (
            json!({"name": "x", "task": "logs.tasks.cleanup_old_results", "interval": {"every": 0, "period": "days"}}),
            json!({"interval": {"every": ["Ensure this value is greater than or equal to 1."]}}),
        ),
        (
            json!({"name": "x", "task": "logs.tasks.cleanup_old_results", "interval": {"every": -5, "period": "days"}}),
            json!("interval"),
        ),
        (
            json!({"name": "x", "task": "logs.tasks.cleanup_old_results", "interval": {"every": 1, "period": "weeks"}}),
            json!("interval"),
        ),
        (
            json!({"name": "x", "task": "logs.tasks.cleanup_old_results", "cron": "61 * * * *"}),
            json!("cron"),
        ),
        (
            json!({"name": "x", "task": "logs.tasks.cleanup_old_results", "cron": "every day"}),
            json!("cron"),
        ),
        (
            json!({"name": "x", "task": "logs.tasks.cleanup_old_results", "cron": "0 * * * *", "timezone": "Mars/Olympus"}),
            json!("timezone"),
        ),
        (
            json!({"name": "x", "task": "logs.tasks.cleanup_old_results"}),
            json!("interval"),
        ),
        (
            json!({"name": "x", "task": "logs.tasks.cleanup_old_results", "cron": "0 * * * *", "interval": {"every": 1, "period": "days"}}),
            json!("cron"),
        ),
        (
            json!({"name": " ", "task": "logs.tasks.cleanup_old_results", "cron": "0 * * * *"}),
            json!("name"),
        ),
        (
            json!({"name": "x", "task": "logs.tasks.detect_anomaly_patterns", "args": [0], "cron": "0 * * * *"}),
            json!("args"),
        ),
        (
            json!({"name": "x", "task": "logs.tasks.cleanup_old_results", "args": {"entry_days": -1}, "cron": "0 * * * *"}),
            json!("args"),
        ),
        (
            json!({"name": "x", "task": "logs.tasks.cleanup_old_results", "args": {"bogus": 3}, "cron": "0 * * * *"}),
            json!("args"),
        ),
        (
            json!({"name": "x", "task": "logs.tasks.cleanup_old_results", "cron": "0 * * * *", "enabled": "yes"}),
            json!("enabled"),
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = create(&app, &body).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        match expected {
            Value::String(field) => assert!(
                answer.get(&field).is_some(),
                "{body} -> {answer}, expected {field}"
            ),
            whole => assert_eq!(answer, whole, "{body}"),
        }
    }
    // A duplicate name is refused, naming the field.
    let (status, answer) = create(
        &app,
        &json!({"name": "Cleanup old results", "task": "logs.tasks.cleanup_old_results", "cron": "@daily"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        answer,
        json!({"name": ["periodic task with this name already exists."]})
    );
    // A PATCH is validated the same way, and a rejected one changes nothing.
    let (status, created) = create(&app, &patterns_every(60)).await;
    assert_eq!(status, 201);
    let id = created["id"].as_i64().unwrap();
    let (status, answer) = patch(
        &app,
        id,
        &json!({"interval": {"every": 0, "period": "seconds"}}),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = patch(&app, id, &json!({"name": "Cleanup old results"})).await;
    assert_eq!(
        (status, answer),
        (
            400,
            json!({"name": ["periodic task with this name already exists."]})
        )
    );
    let got: Value = app
        .get(&format!("/api/periodic-tasks/{id}/"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["interval"], json!({"every": 60, "period": "seconds"}));
    assert_eq!(got["name"], "quick patterns");
    assert_eq!(app.db.count("SELECT count(*) FROM periodic_tasks").await, 3);
    // Unsigned creation stores nothing.
    let bytes = serde_json::to_vec(&patterns_every(5)).unwrap();
    assert_eq!(
        app.post_raw("/api/periodic-tasks/", &bytes, None)
            .await
            .status()
            .as_u16(),
        401
    );
    assert_eq!(app.db.count("SELECT count(*) FROM periodic_tasks").await, 3);
    app.cleanup().await;
}

/// Found by schemathesis (tests/tests/e2e/schemathesis.rs): a PATCH to `"args": null`
/// stored a null, which the list-or-object `args` of the documented schema (and the task's
/// reader) do not allow. It means the default, `[]`, as on creation.
#[tokio::test]
async fn a_patch_to_null_args_resets_them_to_the_default() {
    let app = spawn_app().await;
    let (status, created) = create(
        &app,
        &json!({
            "name": "cleanup weekly",
            "task": "logs.tasks.cleanup_old_results",
            "args": {"task_days": 7},
            "interval": {"every": 7, "period": "days"},
        }),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    let (status, updated) = patch(&app, id, &json!({"args": null})).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["args"], json!([]));
    let got: Value = app
        .get(&format!("/api/periodic-tasks/{id}/"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["args"], json!([]));
    app.cleanup().await;
}
