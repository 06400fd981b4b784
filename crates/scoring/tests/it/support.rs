//! What the scoring handler's tests share: a handler on the real model and the test's
//! own database, and one batch task scored through it as the workers score deliveries.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use contracts::{queues, tasks, v1};
use db::models::{NewLogEntry, NewTask};
use detector::{
    embedder::{Embedder, EmbedderConfig},
    scorer::ScorerConfig,
};
use logcanary_scoring::{
    handler::{relearn_rule, ScoringHandler},
    shared::{SharedEmbedder, SharedScorer},
};
use mq::{Delivery, Outcome};
use prost::Message;
use serde_json::json;
use test_support::TestDb;
use uuid::Uuid;

/// An entry of source `bgl` logged at `at`.
pub fn entry(at: chrono::DateTime<chrono::Utc>, severity: &str, message: &str) -> NewLogEntry {
    NewLogEntry {
        logged_at: at,
        severity: severity.into(),
        message: message.into(),
        source: Some("bgl".into()),
    }
}

/// A handler scoring with `config` (the real model, `make setup`), on `test_db`.
pub fn handler(test_db: &TestDb, config: ScorerConfig) -> ScoringHandler {
    let embedder = Embedder::start(EmbedderConfig::from_env())
        .unwrap_or_else(|e| panic!("embedder did not start: {e}"));
    let publisher = mq::Publisher::lazy(
        &test_support::amqp_url(),
        mq::Topology::new(test_support::queue_prefix()),
        "scoring-test",
        mq::PublisherConfig::default(),
    );
    let relearn = relearn_rule(&config);
    ScoringHandler {
        db: test_db.db.clone(),
        outbox: outbox::Outbox::new(test_db.db.clone(), publisher),
        detector: Arc::new(Mutex::new(SharedScorer::new(
            config,
            SharedEmbedder(Arc::new(embedder)),
        ))),
        refresh_every: Duration::ZERO,
        refresh: Mutex::default(),
        relearn,
    }
}

/// Stores `entries` with one batch task and scores it; returns their ids, in order.
pub async fn score_entries(h: &ScoringHandler, entries: Vec<NewLogEntry>) -> Vec<i64> {
    let task_id = Uuid::new_v4();
    let n = entries.len();
    let task = NewTask {
        id: task_id,
        task_name: tasks::BATCH_ANALYZE_LOGS.into(),
        queue: queues::BATCH_PROCESSING.into(),
        args: json!({}),
    };
    let ids =
        h.db.run(move |c| db::entries::insert_with_tasks(c, &[task], &entries, &vec![task_id; n]))
            .await
            .expect("entries stored");
    let body = v1::BatchAnalyzeLogs {
        task_id: task_id.to_string(),
        log_entry_ids: ids.clone(),
    }
    .encode_to_vec();
    let delivery = Delivery::new(
        queues::BATCH_PROCESSING,
        tasks::BATCH_ANALYZE_LOGS,
        task_id.to_string(),
        body,
    );
    let outcomes = h.score_deliveries(&[&delivery]).await;
    assert_eq!(outcomes, vec![Outcome::Done]);
    ids
}
