//! `db::alerts::claim` under the conditions the notifier meets: replicas claiming the same
//! alert at once, redelivered tasks, and the end of a cooldown.

use std::time::Duration;

use db::alerts::{claim, Attempt, Candidate};
use serde_json::json;
use test_support::TestDb;
use uuid::Uuid;

fn candidate(key: &str, channel: &str, task_id: Uuid) -> Candidate {
    Candidate {
        dedup_key: key.into(),
        kind: "critical_anomaly".into(),
        channel: channel.into(),
        payload: json!({"title": key}),
        log_entry_id: None,
        pattern_detection_id: None,
        task_id,
    }
}

#[tokio::test]
async fn replicas_claiming_the_same_alert_at_once_send_it_once() {
    let db = TestDb::new().await;
    let cooldown = Duration::from_secs(60);
    let claims = (0..8).map(|_| {
        let pool = db.db.clone();
        tokio::spawn(async move {
            pool.run(move |c| claim(c, &[candidate("k", "email", Uuid::new_v4())], cooldown))
                .await
                .expect("claim")
        })
    });
    let rows: Vec<_> = futures::future::join_all(claims)
        .await
        .into_iter()
        .flat_map(|r| r.expect("claim task"))
        .collect();
    let pending = rows.iter().filter(|a| a.status == "pending").count();
    assert_eq!(pending, 1, "{rows:#?}");
    assert_eq!(rows.iter().filter(|a| a.status == "suppressed").count(), 7);
}

#[tokio::test]
async fn a_redelivered_task_gets_its_rows_back_and_channels_are_independent() {
    let db = TestDb::new().await;
    let cooldown = Duration::from_secs(60);
    let task = Uuid::new_v4();
    let both = vec![
        candidate("k", "email", task),
        candidate("k", "webhook:h#1", task),
    ];
    let (c1, c2) = (both.clone(), both.clone());
    let first = db.db.run(move |c| claim(c, &c1, cooldown)).await.unwrap();
    assert!(first.iter().all(|a| a.status == "pending"));
    let again = db.db.run(move |c| claim(c, &c2, cooldown)).await.unwrap();
    assert_eq!(first, again, "a redelivery records nothing new");
    assert_eq!(db.count("SELECT count(*) FROM alerts").await, 2);

    // A failed delivery does not start a cooldown: the next alert of that key goes out.
    let failed = first[1].id;
    db.db
        .run(move |c| db::alerts::record_attempt(c, &[failed], &Attempt::Failed("x".into())))
        .await
        .unwrap();
    let next = Uuid::new_v4();
    let later = db
        .db
        .run(move |c| {
            claim(
                c,
                &[
                    candidate("k", "email", next),
                    candidate("k", "webhook:h#1", next),
                ],
                cooldown,
            )
        })
        .await
        .unwrap();
    assert_eq!(later[0].status, "suppressed");
    assert_eq!(later[0].payload["suppressed_by"], first[0].id);
    assert_eq!(later[1].status, "pending");
}

#[tokio::test]
async fn after_the_cooldown_the_same_alert_is_sent_again() {
    let db = TestDb::new().await;
    let first = db
        .db
        .run(|c| {
            claim(
                c,
                &[candidate("k", "email", Uuid::new_v4())],
                Duration::from_secs(60),
            )
        })
        .await
        .unwrap();
    assert_eq!(first[0].status, "pending");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = db
        .db
        .run(|c| {
            claim(
                c,
                &[candidate("k", "email", Uuid::new_v4())],
                Duration::from_millis(200),
            )
        })
        .await
        .unwrap();
    assert_eq!(second[0].status, "pending");
}
