use serde_json::{json, Value};

use crate::helpers::{entry, spawn_app};

#[tokio::test]
async fn listing_filters_and_pages_newest_first() {
    let app = spawn_app().await;
    let base = chrono::Utc::now() - chrono::Duration::minutes(30);
    let entries: Vec<Value> = (0..25)
        .map(|i| {
            json!({
                "timestamp": (base + chrono::Duration::seconds(i)).to_rfc3339(),
                "severity": if i % 5 == 0 { "ERROR" } else { "INFO" },
                "message": format!("job {i} finished"),
            })
        })
        .collect();
    assert_eq!(
        app.post_signed("/api/batch-analysis/", &json!({"log_entries": entries}))
            .await
            .status(),
        202
    );

    let page: Value = app.get("/api/logs/?limit=10").await.json().await.unwrap();
    let results = page["results"].as_array().unwrap();
    assert_eq!(results.len(), 10);
    assert_eq!(results[0]["message"], "job 24 finished");
    let cursor = page["next"].as_str().unwrap();
    let page2: Value = app
        .get(&format!("/api/logs/?limit=10&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page2["results"][0]["message"], "job 14 finished");
    let page3: Value = app
        .get(&format!(
            "/api/logs/?limit=10&cursor={}",
            page2["next"].as_str().unwrap()
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page3["results"].as_array().unwrap().len(), 5);
    assert!(page3["next"].is_null());

    let errors: Value = app
        .get("/api/logs/?severity=ERROR")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(errors["results"].as_array().unwrap().len(), 5);
    let q: Value = app
        .get("/api/logs/?q=job%207%20")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(q["results"].as_array().unwrap().len(), 1);
    let since = (base + chrono::Duration::seconds(20)).to_rfc3339();
    let recent: Value = app
        .get(&format!("/api/logs/?since={}", urlencode(&since)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(recent["results"].as_array().unwrap().len(), 5);

    for bad in [
        "severity=LOUD",
        "limit=0",
        "limit=5000",
        "since=yesterday",
        "is_anomaly=maybe",
        "cursor=zzz",
    ] {
        let resp = app.get(&format!("/api/logs/?{bad}")).await;
        assert_eq!(resp.status(), 400, "{bad}");
        let field = bad.split('=').next().unwrap();
        assert!(
            resp.json::<Value>().await.unwrap().get(field).is_some(),
            "{bad}"
        );
    }
    app.cleanup().await;
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn dashboard_has_every_field_from_real_rows() {
    let app = spawn_app().await;
    for (severity, message) in [("ERROR", "a"), ("ERROR", "b"), ("INFO", "c")] {
        assert_eq!(
            app.post_signed("/api/logs/", &entry(severity, message))
                .await
                .status(),
            201
        );
    }
    // Mark one anomalous as a worker would.
    app.db
        .db
        .run(|c| {
            use diesel::RunQueryDsl;
            diesel::sql_query(
                "UPDATE log_entries SET anomaly_score = 0.93, is_anomaly = true, summary = 'New pattern', analyzed_at = now() WHERE message = 'a'",
            )
            .execute(c)?;
            Ok(())
        })
        .await
        .unwrap();
    let d: Value = app.get("/api/dashboard/").await.json().await.unwrap();
    assert_eq!(d["anomalies_last_24h"], 1);
    assert_eq!(d["anomalies_last_7d"], 1);
    assert_eq!(
        d["severity_distribution_24h"],
        json!({"ERROR": 2, "INFO": 1})
    );
    let recent = d["recent_anomalies"].as_array().unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0]["message"], "a");
    assert_eq!(recent[0]["anomaly_score"], 0.93);
    assert_eq!(recent[0]["summary"], "New pattern");
    for field in ["id", "timestamp", "severity"] {
        assert!(recent[0].get(field).is_some());
    }
    assert!(d["last_updated"].is_string());
    app.cleanup().await;
}

#[tokio::test]
async fn admin_port_serves_probes_and_metrics() {
    let app = spawn_app().await;
    assert_eq!(
        app.post_signed("/api/logs/", &entry("INFO", "x"))
            .await
            .status(),
        201
    );
    let live = app
        .client
        .get(format!("{}/livez", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let ready = app
        .client
        .get(format!("{}/readyz", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = app
        .client
        .get(format!("{}/metrics", app.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("logcanary_http_requests_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("route=\"/api/logs/\""),
        "labelled by route pattern"
    );
    assert!(metrics.contains("logcanary_entries_ingested_total"));
    app.cleanup().await;
}
