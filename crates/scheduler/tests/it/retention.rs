//! Retention (`cleanup_old_results`) against the real Postgres: what is past its age goes,
//! everything else stays, anomalies are kept longer, and emptied old partitions are
//! dropped. (The queries live in `db::retention`; the analysis worker runs them when the
//! scheduler fires the clean-up.)

use chrono::{Duration, Utc};
use db::retention::{RetentionPolicy, RetentionReport};
use diesel::RunQueryDsl;
use serde_json::json;
use test_support::TestDb;

async fn exec(db: &TestDb, sql: String) {
    db.db
        .run(move |c| {
            diesel::sql_query(sql).execute(c)?;
            Ok(())
        })
        .await
        .expect("test SQL");
}

async fn entry(db: &TestDb, days_ago: i64, anomaly: Option<bool>, message: &str) {
    let anomaly = anomaly.map_or("NULL".to_owned(), |a| a.to_string());
    exec(
        db,
        format!(
            "INSERT INTO log_entries (received_at, logged_at, severity, message, is_anomaly) \
             VALUES (now() - interval '{days_ago} days', now() - interval '{days_ago} days', 'INFO', '{message}', {anomaly})"
        ),
    )
    .await;
}

async fn task(db: &TestDb, status: &str, days_ago: i64) {
    let finished = if status == "SUCCESS" || status == "FAILURE" {
        format!("now() - interval '{days_ago} days'")
    } else {
        "NULL".into()
    };
    exec(
        db,
        format!(
            "INSERT INTO tasks (id, task_name, queue, status, created_at, finished_at) \
             VALUES (gen_random_uuid(), 'logs.tasks.analyze_log_entry', 'analysis', '{status}', \
             now() - interval '{days_ago} days', {finished})"
        ),
    )
    .await;
}

#[tokio::test]
async fn retention_deletes_what_is_past_its_age_and_nothing_else() {
    let db = TestDb::new().await;
    // Daily partitions for two old days (one that will hold a row, one empty).
    exec(
        &db,
        "SELECT logcanary_ensure_partitions((now() - interval '100 days')::date, 1)".into(),
    )
    .await;
    exec(
        &db,
        "SELECT logcanary_ensure_partitions((now() - interval '200 days')::date, 1)".into(),
    )
    .await;

    for i in 0..5 {
        entry(&db, 40, Some(false), &format!("old normal {i}")).await;
    }
    entry(&db, 40, None, "old never scored").await;
    entry(&db, 10, Some(false), "recent normal").await;
    entry(&db, 40, Some(true), "old anomaly, kept longer").await;
    entry(&db, 100, Some(true), "very old anomaly").await;
    entry(&db, 0, Some(false), "today").await;

    task(&db, "SUCCESS", 8).await;
    task(&db, "FAILURE", 8).await;
    task(&db, "SUCCESS", 1).await;
    task(&db, "PENDING", 30).await;
    task(&db, "STARTED", 30).await;

    for (days, kind) in [(100, "old"), (10, "recent")] {
        exec(
            &db,
            format!(
                "INSERT INTO pattern_detections (kind, window_start, window_end, severity, detected_at) \
                 VALUES ('{kind}', now(), now(), 'WARNING', now() - interval '{days} days')"
            ),
        )
        .await;
        exec(
            &db,
            format!(
                "INSERT INTO alerts (dedup_key, kind, channel, created_at) \
                 VALUES ('{kind}', 'critical', 'email', now() - interval '{days} days')"
            ),
        )
        .await;
    }

    // Small batches, so several statements run per kind.
    let policy = RetentionPolicy {
        batch: 2,
        ..RetentionPolicy::default()
    };
    let report = db
        .db
        .run(move |c| db::retention::run(c, Utc::now(), &policy))
        .await
        .expect("retention");
    assert_eq!(
        report,
        RetentionReport {
            tasks_deleted: 2,
            entries_deleted: 6,
            anomalies_deleted: 1,
            detections_deleted: 1,
            alerts_deleted: 1,
            partitions_dropped: 2,
        }
    );
    assert_eq!(db.count("SELECT count(*) FROM log_entries").await, 3);
    assert_eq!(
        db.count("SELECT count(*) FROM log_entries WHERE message IN ('recent normal', 'old anomaly, kept longer', 'today')")
            .await,
        3
    );
    assert_eq!(
        db.count("SELECT count(*) FROM tasks").await,
        3,
        "unfinished and recent tasks stay"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM tasks WHERE status IN ('PENDING', 'STARTED')")
            .await,
        2
    );
    assert_eq!(
        db.count("SELECT count(*) FROM pattern_detections WHERE kind = 'recent'")
            .await,
        1
    );
    assert_eq!(db.count("SELECT count(*) FROM alerts").await, 1);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM pg_class WHERE relname ~ '^log_entries_[0-9]{8}$' \
             AND relname < 'log_entries_' || to_char(now() - interval '90 days', 'YYYYMMDD')"
        )
        .await,
        0,
        "old partitions dropped"
    );
    assert!(
        db.count(&format!(
            "SELECT count(*) FROM pg_class WHERE relname = 'log_entries_{}'",
            (Utc::now() + Duration::days(3)).format("%Y%m%d")
        ))
        .await
            == 1,
        "partitions ahead exist"
    );

    // Run again: nothing left to delete.
    let again = db
        .db
        .run(|c| db::retention::run(c, Utc::now(), &RetentionPolicy::default()))
        .await
        .unwrap();
    assert_eq!(again, RetentionReport::default());
}

#[test]
fn ages_come_from_the_task_args() {
    let p = RetentionPolicy::from_args(&json!({"entry_days": 14, "anomaly_days": 365})).unwrap();
    assert_eq!(p.entries, Duration::days(14));
    assert_eq!(p.anomalies, Duration::days(365));
    assert_eq!(p.tasks, RetentionPolicy::default().tasks);
    assert_eq!(
        RetentionPolicy::from_args(&json!([])).unwrap(),
        RetentionPolicy::default()
    );
    assert_eq!(
        RetentionPolicy::from_args(&json!({"entry_days": 0}))
            .unwrap_err()
            .0,
        "entry_days"
    );
    assert_eq!(
        RetentionPolicy::from_args(&json!({"nope": 3}))
            .unwrap_err()
            .0,
        "nope"
    );
    assert_eq!(
        RetentionPolicy::from_args(&json!("x")).unwrap_err().0,
        "args"
    );
}
