//! The transactional outbox, the one way every process hands a task to the broker.
//!
//! A task row is committed first (in the transaction that did the work); its message is
//! published after the commit, and the outcome is recorded on the row: `published_at`
//! when the broker confirmed it, `publish_error` when it did not. A row left unpublished
//! (broker down, process killed between commit and publish) is what the scheduler's
//! relay re-publishes, through [`Outbox::relay`]. Nothing committed is lost, and workers
//! are idempotent per task id, so a message published twice is processed once.
//!
//! Depends on `db`, `mq` and `contracts` only; every binary may use it.

use chrono::{DateTime, Utc};
use contracts::{Task, TaskMessage};
use uuid::Uuid;

/// Publishes committed task rows' messages and records the outcome on the rows. Cheap to
/// clone.
#[derive(Clone)]
pub struct Outbox {
    db: db::Db,
    publisher: mq::Publisher,
}

/// What one [`Outbox::relay`] pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Relayed {
    /// Tasks the broker confirmed.
    pub published: usize,
    /// Tasks whose attempt failed (at most one: the pass stops at the first failure).
    pub failed: usize,
}

impl Outbox {
    pub fn new(db: db::Db, publisher: mq::Publisher) -> Self {
        Self { db, publisher }
    }

    /// The publisher, for readiness and queue depths.
    pub fn publisher(&self) -> &mq::Publisher {
        &self.publisher
    }

    /// Publishes messages of one task kind whose rows are committed (one round of
    /// confirms), then records the outcome on their rows.
    ///
    /// # Errors
    ///
    /// The publish error; the rows then say `publish_error` and stay PENDING for the
    /// relay, so the caller only reports it.
    pub async fn publish<M: TaskMessage>(&self, msgs: &[M]) -> Result<(), mq::MqError> {
        if msgs.is_empty() {
            return Ok(());
        }
        let ids = task_ids(msgs.iter().map(TaskMessage::task_id));
        let result = self.publisher.publish_many(msgs).await;
        self.record(ids, &result, None, M::TASK_NAME).await;
        result
    }

    /// [`Outbox::publish`] for tasks of several kinds at once.
    ///
    /// # Errors
    ///
    /// As [`Outbox::publish`].
    pub async fn publish_tasks(&self, tasks: &[Task]) -> Result<(), mq::MqError> {
        if tasks.is_empty() {
            return Ok(());
        }
        let ids = task_ids(tasks.iter().map(Task::task_id));
        let result = self.publisher.publish_tasks(tasks).await;
        self.record(ids, &result, None, "mixed").await;
        result
    }

    /// The relay's pass over tasks it claimed: publishes them one by one and stops at the
    /// first failure, so a broker outage costs one attempt of one task per pass instead
    /// of an attempt (and a time-out) of each. Outcomes are stamped with `now`, the pass
    /// time the relay's spacing and time-outs are computed from.
    pub async fn relay(&self, tasks: Vec<(Uuid, Task)>, now: DateTime<Utc>) -> Relayed {
        let mut confirmed = Vec::new();
        let mut failure = None;
        for (id, task) in tasks {
            match self.publisher.publish_task(&task).await {
                Ok(()) => confirmed.push(id),
                Err(error) => {
                    failure = Some((id, Err(error)));
                    break;
                }
            }
        }
        let relayed = Relayed {
            published: confirmed.len(),
            failed: usize::from(failure.is_some()),
        };
        if !confirmed.is_empty() {
            self.record(confirmed, &Ok(()), Some(now), "relay").await;
        }
        if let Some((id, result)) = failure {
            self.record(vec![id], &result, Some(now), "relay").await;
        }
        relayed
    }

    /// Writes a publish outcome on the rows. A failure to write is only logged: a row
    /// whose confirmed publish is not recorded is published again by the relay, which
    /// workers tolerate; one whose failure is not recorded stays unpublished anyway.
    async fn record(
        &self,
        ids: Vec<Uuid>,
        result: &Result<(), mq::MqError>,
        at: Option<DateTime<Utc>>,
        task: &'static str,
    ) {
        let error = result.as_ref().err().map(ToString::to_string);
        if let Some(error) = &error {
            tracing::warn!(%error, tasks = ids.len(), task, "Publish failed; the tasks stay PENDING for the relay.");
        }
        let written = self
            .db
            .run(move |c| db::tasks::record_publish(c, &ids, error.as_deref(), at))
            .await;
        if let Err(error) = written {
            tracing::warn!(%error, task, "Could not record the publish outcome; the relay decides from the rows.");
        }
    }
}

fn task_ids<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<Uuid> {
    ids.filter_map(|id| Uuid::parse_str(id).ok()).collect()
}
