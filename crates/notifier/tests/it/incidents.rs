//! `db::incidents` under the conditions the notifier meets: replicas sweeping at once, and
//! a new alert of a key arriving while its end is being sent.

use std::{collections::HashSet, time::Duration};

use db::{
    alerts::Candidate,
    incidents::{claim, ended, lease_due, list, Due},
};
use serde_json::json;
use test_support::TestDb;
use uuid::Uuid;

const CHANNEL: &str = "alertmanager:127.0.0.1#00000000";

fn candidate(key: &str) -> Candidate {
    Candidate {
        dedup_key: key.into(),
        kind: "critical_anomaly".into(),
        channel: CHANNEL.into(),
        payload: json!({"title": key}),
        log_entry_id: None,
        pattern_detection_id: None,
        task_id: Uuid::new_v4(),
    }
}

async fn alert(db: &TestDb, key: &str) {
    let c = candidate(key);
    db.db
        .run(move |conn| claim(conn, &[c], Duration::from_secs(60), &[CHANNEL.to_owned()]))
        .await
        .expect("claim");
}

fn due(resolve_ms: u64) -> Due {
    Due {
        resolve_after: Duration::from_millis(resolve_ms),
        repost_every: Some(Duration::from_secs(60)),
        lease: Duration::from_secs(60),
        limit: 100,
    }
}

#[tokio::test]
async fn replicas_sweeping_at_once_lease_each_incident_once() {
    let db = TestDb::new().await;
    for key in ["a", "b", "c"] {
        alert(&db, key).await;
        // Sent or suppressed, the same key stays one incident.
        alert(&db, key).await;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let sweeps = (0..4).map(|_| {
        let pool = db.db.clone();
        tokio::spawn(async move {
            pool.run(|c| lease_due(c, CHANNEL, due(50)))
                .await
                .expect("lease")
        })
    });
    let leased: Vec<_> = futures::future::join_all(sweeps)
        .await
        .into_iter()
        .flat_map(|r| r.expect("sweep task"))
        .collect();
    assert_eq!(leased.len(), 3, "{leased:#?}");
    assert!(leased.iter().all(|l| l.ending));
    let keys: HashSet<_> = leased
        .iter()
        .map(|l| l.incident.dedup_key.clone())
        .collect();
    assert_eq!(keys.len(), 3);
    // Leased: nobody else gets them until the lease runs out.
    let again = db.db.run(|c| lease_due(c, CHANNEL, due(50))).await.unwrap();
    assert!(again.is_empty(), "{again:#?}");
}

#[tokio::test]
async fn an_alert_arriving_while_its_end_is_sent_keeps_the_incident_open() {
    let db = TestDb::new().await;
    alert(&db, "k").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let leased = db
        .db
        .run(|c| lease_due(c, CHANNEL, due(300)))
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    assert!(leased[0].ending);
    // The end is on its way when the key fires again.
    alert(&db, "k").await;
    let seen = vec![(leased[0].incident.id, leased[0].incident.last_seen_at)];
    let closed = db
        .db
        .run(move |c| ended(c, &seen, chrono::Utc::now()))
        .await
        .unwrap();
    assert_eq!(closed, 0, "the incident goes on");
    let rows = db.db.run(|c| list(c, 10)).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert!(rows[0].resolved_at.is_none() && rows[0].posted_at.is_none());
    // So the next sweep posts it as firing again (the end may have reached the receiver).
    let next = db
        .db
        .run(|c| lease_due(c, CHANNEL, due(300)))
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert!(!next[0].ending);
}
