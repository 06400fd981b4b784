//! Reads cannot starve ingest: they run on a pool of their own under a statement time-out,
//! a text search needs a bounded time range, and a page stops at a byte budget.

use std::time::{Duration, Instant};

use diesel::{Connection, PgConnection, RunQueryDsl};
use logcanary_ingest_api::{
    errors::QUERY_TIMEOUT_DETAIL,
    pagination::MAX_PAGE_BYTES,
    routes::entries::{MAX_SEARCH_DAYS, SEARCH_RANGE_MESSAGE},
    validation::MAX_MESSAGE_CHARS,
};
use serde_json::{json, Value};

use crate::{
    helpers::{entry, spawn_app, spawn_app_with, Options},
    reads::urlencode,
};

/// Holds an ACCESS EXCLUSIVE lock on `table` (every read of it waits) until the returned
/// sender is dropped or sent to.
fn lock_table(url: &str, table: &'static str) -> std::sync::mpsc::Sender<()> {
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (locked, is_locked) = std::sync::mpsc::channel::<()>();
    let url = url.to_owned();
    std::thread::spawn(move || {
        let mut conn = PgConnection::establish(&url).expect("postgres");
        conn.transaction::<_, diesel::result::Error, _>(|c| {
            diesel::sql_query(format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")).execute(c)?;
            let _ = locked.send(());
            let _ = released.recv();
            Ok(())
        })
        .expect("lock transaction");
    });
    is_locked
        .recv_timeout(Duration::from_secs(10))
        .expect("the lock was taken");
    release
}

#[tokio::test]
async fn a_read_past_its_statement_timeout_answers_503_while_ingest_goes_on() {
    let app = spawn_app_with(Options {
        db_pool_size: 2,
        extra_args: vec![
            "--read-pool-size=1".into(),
            "--read-statement-timeout-ms=400".into(),
        ],
        ..Options::default()
    })
    .await;
    // Warm the write pool (key table, signatures) before the lock is taken.
    let warm = app
        .post_signed("/api/logs/", &entry("INFO", "warm-up"))
        .await;
    assert_eq!(warm.status(), 201);

    let release = lock_table(&app.db.url, "templates");
    // Three reads stuck behind the lock hold the single read connection in turn...
    let reads: Vec<_> = (0..3)
        .map(|_| {
            let client = app.client.clone();
            let url = format!("{}/api/templates/", app.address);
            tokio::spawn(async move {
                let started = Instant::now();
                let resp = client.get(url).send().await.expect("request sent");
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.expect("json");
                (status, body, started.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ...while writes, on their own pool, are served at once.
    for i in 0..3 {
        let started = Instant::now();
        let resp = app
            .post_signed(
                "/api/logs/",
                &entry("ERROR", &format!("write {i} during slow reads")),
            )
            .await;
        assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a write waited {:?} behind the reads",
            started.elapsed()
        );
    }
    for read in reads {
        let (status, body, took) = read.await.expect("read task");
        assert_eq!(status, 503, "{body}");
        assert_eq!(body, json!({"detail": QUERY_TIMEOUT_DETAIL}));
        assert!(took < Duration::from_secs(4), "cancelled after {took:?}");
    }
    drop(release);
    // Once the lock is gone the same read answers.
    test_support::eventually(
        "templates readable again",
        Duration::from_secs(10),
        || async { (app.get("/api/templates/").await.status() == 200).then_some(()) },
    )
    .await;
    assert_eq!(app.counts().await.0, 4);
    app.cleanup().await;
}

#[tokio::test]
async fn a_text_search_needs_a_time_range_of_at_most_seven_days() {
    let app = spawn_app().await;
    let at = chrono::Utc::now() - chrono::Duration::days(3);
    let body = json!({"log_entries": [
        {"timestamp": at.to_rfc3339(), "severity": "ERROR", "message": "disk sda1 full"},
        {"timestamp": chrono::Utc::now().to_rfc3339(), "severity": "INFO", "message": "disk sda1 ok"},
    ]});
    assert_eq!(
        app.post_signed("/api/batch-analysis/", &body)
            .await
            .status(),
        202
    );
    let ago =
        |days: i64| urlencode(&(chrono::Utc::now() - chrono::Duration::days(days)).to_rfc3339());

    for refused in [
        "q=sda1".to_owned(),
        format!("q=sda1&until={}", ago(0)),
        format!("q=sda1&since={}", ago(MAX_SEARCH_DAYS + 1)),
        format!("q=sda1&since={}&until={}", ago(30), ago(1)),
    ] {
        let resp = app.get(&format!("/api/logs/?{refused}")).await;
        assert_eq!(resp.status(), 400, "{refused}");
        assert_eq!(
            resp.json::<Value>().await.unwrap(),
            json!({"q": [SEARCH_RANGE_MESSAGE]}),
            "{refused}"
        );
    }
    // A bad `since` is named as such, not as a missing range.
    let resp = app.get("/api/logs/?q=sda1&since=yesterday").await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body.get("since").is_some() && body.get("q").is_none(),
        "{body}"
    );

    let found: Value = app
        .get(&format!(
            "/api/logs/?q=sda1&since={}",
            ago(MAX_SEARCH_DAYS - 1)
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["results"].as_array().unwrap().len(), 2, "{found}");
    let older: Value = app
        .get(&format!(
            "/api/logs/?q=full&since={}&until={}",
            ago(20),
            ago(14)
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(older["results"].as_array().unwrap().len(), 0, "{older}");
    // Without `q` any range is fine.
    let all = app.get(&format!("/api/logs/?since={}", ago(365))).await;
    assert_eq!(all.status(), 200);
    app.cleanup().await;
}

#[tokio::test]
async fn a_page_of_long_messages_stops_at_the_byte_budget_and_pages_on() {
    let app = spawn_app_with(Options {
        max_body_bytes: 16 * 1024 * 1024,
        ..Options::default()
    })
    .await;
    let per_page = MAX_PAGE_BYTES / MAX_MESSAGE_CHARS; // 64 of the longest messages
    let total = per_page + 6;
    let base = chrono::Utc::now() - chrono::Duration::minutes(10);
    let entries: Vec<Value> = (0..total)
        .map(|i| {
            let mut message = format!("long {i:03} ");
            message.push_str(&"x".repeat(MAX_MESSAGE_CHARS - message.len()));
            json!({
                "timestamp": (base + chrono::Duration::seconds(i as i64)).to_rfc3339(),
                "severity": "INFO",
                "message": message,
            })
        })
        .collect();
    let resp = app
        .post_signed("/api/batch-analysis/", &json!({"log_entries": entries}))
        .await;
    assert_eq!(resp.status(), 202, "{:?}", resp.text().await);

    let resp = app.get("/api/logs/?limit=1000").await;
    assert_eq!(resp.status(), 200);
    let first: Value = resp.json().await.unwrap();
    let results = first["results"].as_array().unwrap();
    assert_eq!(results.len(), per_page);
    let bytes: usize = results
        .iter()
        .map(|e| e["message"].as_str().unwrap().len())
        .sum();
    assert!(bytes <= MAX_PAGE_BYTES, "{bytes}");
    assert!(results[0]["message"]
        .as_str()
        .unwrap()
        .starts_with(&format!("long {:03} ", total - 1)));
    let next = first["next"]
        .as_str()
        .expect("a cut page says where to go on");

    let second: Value = app
        .get(&format!("/api/logs/?limit=1000&cursor={next}"))
        .await
        .json()
        .await
        .unwrap();
    let rest = second["results"].as_array().unwrap();
    assert_eq!(rest.len(), total - per_page);
    assert!(second["next"].is_null());
    let mut ids: Vec<i64> = results
        .iter()
        .chain(rest)
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total, "every entry once");
    app.cleanup().await;
}
