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
    let searched_from = urlencode(&(base - chrono::Duration::minutes(1)).to_rfc3339());
    let q: Value = app
        .get(&format!("/api/logs/?q=job%207%20&since={searched_from}"))
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

pub(crate) fn urlencode(s: &str) -> String {
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

/// The row of one logical queue in `GET /api/stats/queues/`.
fn broker_row<'a>(stats: &'a Value, queue: &str) -> &'a Value {
    stats["queues"]
        .as_array()
        .and_then(|q| q.iter().find(|row| row["queue"] == queue))
        .unwrap_or_else(|| panic!("no {queue} row in {stats}"))
}

#[tokio::test]
async fn queue_stats_show_the_brokers_own_counts_and_the_task_states() {
    let app = spawn_app().await;
    for i in 0..2 {
        let created = app
            .post_signed("/api/logs/", &entry("ERROR", &format!("disk {i} failed")))
            .await;
        assert_eq!(created.status(), 201);
    }
    let batch = json!({"log_entries": [entry("INFO", "a"), entry("INFO", "b")]});
    assert_eq!(
        app.post_signed("/api/batch-analysis/", &batch)
            .await
            .status(),
        202
    );
    app.wait_queue_depth("analysis", 2).await;
    app.wait_queue_depth("batch_processing", 1).await;

    // One message waiting out the longest retry delay and one dead-lettered, put there the
    // way the consumer runner does (plain publishes to those queues), plus a consumer.
    let conn = mq::connect(&test_support::amqp_url(), "test")
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let topology = mq::Topology::new(app.prefix.clone());
    for queue in [
        topology.retry_queue("analysis", std::time::Duration::from_secs(3600)),
        topology.dead_letter_queue("analysis"),
    ] {
        channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                Default::default(),
                b"x",
                Default::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let consumer_channel = conn.create_channel().await.unwrap();
    consumer_channel
        .basic_qos(0, Default::default())
        .await
        .unwrap();
    let _consumer = consumer_channel
        .basic_consume(
            topology.queue("notifications").as_str().into(),
            "watcher".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();

    let stats: Value = app.get("/api/stats/queues/").await.json().await.unwrap();
    assert!(stats["broker_error"].is_null(), "{stats}");
    let names: Vec<&str> = stats["queues"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|q| q["queue"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "analysis",
            "real_time",
            "notifications",
            "batch_processing",
            "maintenance"
        ]
    );
    let analysis = broker_row(&stats, "analysis");
    assert_eq!(
        (
            &analysis["ready"],
            &analysis["consumers"],
            &analysis["retrying"],
            &analysis["dead_lettered"]
        ),
        (&json!(2), &json!(0), &json!(1), &json!(1)),
        "{analysis}"
    );
    assert_eq!(broker_row(&stats, "batch_processing")["ready"], 1);
    assert_eq!(broker_row(&stats, "notifications")["consumers"], 1);

    // And what Postgres says about the same tasks.
    let pending: Vec<(&str, &str, i64)> = stats["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["queue"].as_str().unwrap(),
                t["status"].as_str().unwrap(),
                t["count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(pending.contains(&("analysis", "PENDING", 2)), "{pending:?}");
    assert!(
        pending.contains(&("batch_processing", "PENDING", 1)),
        "{pending:?}"
    );
    let _ = conn.close(200, "bye".into()).await;
    app.cleanup().await;
}

#[tokio::test]
async fn queue_stats_still_answer_while_the_broker_is_down() {
    let app = crate::helpers::spawn_app_with(crate::helpers::Options {
        amqp_url: "amqp://guest:guest@127.0.0.1:1/%2f".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(
        app.post_signed("/api/logs/", &entry("ERROR", "disk failed"))
            .await
            .status(),
        201
    );
    let resp = app.get("/api/stats/queues/").await;
    assert_eq!(resp.status(), 200);
    let stats: Value = resp.json().await.unwrap();
    assert!(stats["queues"].is_null(), "{stats}");
    assert!(
        stats["broker_error"]
            .as_str()
            .is_some_and(|e| e.contains("broker")),
        "{stats}"
    );
    assert_eq!(stats["tasks"][0]["status"], "PENDING", "{stats}");
    app.cleanup().await;
}
