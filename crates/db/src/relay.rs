//! The outbox relay's queries: tasks whose message never reached the broker (or reached
//! it and was never taken), claimed for re-publishing, and tasks given up on.
//!
//! A task qualifies when it is PENDING, older than a grace period (the API's own publish
//! stage may still be about to publish a just-committed task), its last publish attempt
//! is older than a retry spacing, and either it was never published or it was published
//! longer ago than a timeout without any worker starting it while its queue is empty (the
//! broker lost it: a queue that still holds messages is a backlog, and re-publishing into
//! it would only add duplicates). Claiming stamps
//! `updated_at`, a lease: a second relay skips the claimed rows (`SKIP LOCKED` while the
//! claim commits, the spacing after it). Workers are idempotent per task id, so a message
//! published twice is processed once.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use diesel::{pg::PgConnection, prelude::*};
use uuid::Uuid;

use crate::{
    models::{status, Task},
    schema::{log_entries, tasks},
    DbError,
};

/// Task names whose arguments are their log entries (`log_entries.analysis_task_id`).
const ENTRY_TASKS: [&str; 2] = [
    "logs.tasks.analyze_log_entry",
    "logs.tasks.batch_analyze_logs",
];

/// When a task is due for (re-)publishing.
#[derive(Debug, Clone)]
pub struct RelayPolicy {
    /// Tasks younger than this are left to the process that created them.
    pub grace: Duration,
    /// A published task not started after this long is published again.
    pub stuck_after: Duration,
    /// Least time between two publish attempts of one task.
    pub retry_every: Duration,
    /// Publish attempts (the first one included) before the task is failed.
    pub max_attempts: i32,
    /// Most tasks claimed at once.
    pub batch: i64,
}

impl Default for RelayPolicy {
    fn default() -> Self {
        Self {
            grace: Duration::seconds(10),
            stuck_after: Duration::minutes(10),
            retry_every: Duration::seconds(10),
            max_attempts: 10,
            batch: 500,
        }
    }
}

/// A claimed task, with its log entries for the tasks whose message lists them.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub task: Task,
    /// Ids of the entries whose `analysis_task_id` is this task, ascending; empty for
    /// other tasks.
    pub entry_ids: Vec<i64>,
}

type Condition =
    Box<dyn BoxableExpression<tasks::table, diesel::pg::Pg, SqlType = diesel::sql_types::Bool>>;

/// Due tasks: never published, or published longer than the stuck time ago without a
/// worker starting them while their queue (logical name, in `lost_from`) holds nothing:
/// the broker has been shown to have lost the message, not merely to hold a backlog.
fn eligible(now: DateTime<Utc>, policy: &RelayPolicy, lost_from: &[String]) -> Condition {
    Box::new(
        tasks::status
            .eq(status::PENDING)
            .and(tasks::created_at.lt(now - policy.grace))
            .and(tasks::updated_at.lt(now - policy.retry_every))
            .and(
                tasks::published_at
                    .is_null()
                    .or(tasks::published_at
                        .lt(now - policy.stuck_after)
                        .and(tasks::queue.eq_any(lost_from.to_vec())))
                    .assume_not_null(),
            ),
    )
}

/// Claims up to `policy.batch` tasks to publish (oldest first) and loads their entries.
/// `empty_queues` are the logical queues the broker reports empty (nothing ready, nothing
/// retrying): only their stuck published tasks are due again. The caller publishes them
/// and the outbox records the outcome ([`crate::tasks::record_publish`] with the relay's clock).
pub fn claim(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    policy: &RelayPolicy,
    empty_queues: &[String],
) -> Result<Vec<Claimed>, DbError> {
    conn.transaction(|conn| {
        let claimed: Vec<Task> = tasks::table
            .filter(eligible(now, policy, empty_queues))
            .filter(tasks::publish_attempts.lt(policy.max_attempts))
            .order(tasks::created_at.asc())
            .limit(policy.batch)
            .select(Task::as_select())
            .for_update()
            .skip_locked()
            .load(conn)?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = claimed.iter().map(|t| t.id).collect();
        diesel::update(tasks::table.filter(tasks::id.eq_any(&ids)))
            .set(tasks::updated_at.eq(now))
            .execute(conn)?;
        let with_entries: Vec<Uuid> = claimed
            .iter()
            .filter(|t| ENTRY_TASKS.contains(&t.task_name.as_str()))
            .map(|t| t.id)
            .collect();
        let mut entries: HashMap<Uuid, Vec<i64>> = HashMap::new();
        if !with_entries.is_empty() {
            let rows: Vec<(Option<Uuid>, i64)> = log_entries::table
                .filter(log_entries::analysis_task_id.eq_any(&with_entries))
                .order(log_entries::id.asc())
                .select((log_entries::analysis_task_id, log_entries::id))
                .load(conn)?;
            for (task, id) in rows {
                if let Some(task) = task {
                    entries.entry(task).or_default().push(id);
                }
            }
        }
        Ok(claimed
            .into_iter()
            .map(|task| Claimed {
                entry_ids: entries.remove(&task.id).unwrap_or_default(),
                task,
            })
            .collect())
    })
}

/// Marks FAILURE every task that would be due for publishing but has used up its
/// attempts without the broker ever confirming one; returns their ids. The error says why,
/// so task status tells the client. A task the broker confirmed is never failed here: its
/// message is queued (or was taken by a worker), and a backlog or a worker outage longer
/// than the relay's patience must not lose its analysis. Such a task is just no longer
/// re-published once its attempts are used up.
pub fn give_up(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    policy: &RelayPolicy,
) -> Result<Vec<Uuid>, DbError> {
    let ids: Vec<Uuid> = tasks::table
        .filter(eligible(now, policy, &[]))
        .filter(tasks::publish_attempts.ge(policy.max_attempts))
        .filter(tasks::published_at.is_null())
        .select(tasks::id)
        .limit(policy.batch)
        .load(conn)?;
    if ids.is_empty() {
        return Ok(ids);
    }
    let error = format!(
        "not delivered to a worker after {} publish attempts; the stored entries are kept",
        policy.max_attempts
    );
    Ok(diesel::update(
        tasks::table
            .filter(tasks::id.eq_any(&ids))
            .filter(tasks::status.eq(status::PENDING)),
    )
    .set((
        tasks::status.eq(status::FAILURE),
        tasks::error.eq(Some(error)),
        tasks::finished_at.eq(Some(now)),
        tasks::updated_at.eq(now),
    ))
    .returning(tasks::id)
    .get_results(conn)?)
}

/// Marks one task FAILURE because its message cannot be rebuilt (entries deleted, args
/// unreadable): publishing it again would never help.
pub fn fail_unbuildable(conn: &mut PgConnection, id: Uuid, error: &str) -> Result<(), DbError> {
    diesel::update(
        tasks::table
            .find(id)
            .filter(tasks::status.eq(status::PENDING)),
    )
    .set((
        tasks::status.eq(status::FAILURE),
        tasks::error.eq(Some(error)),
        tasks::finished_at.eq(crate::db_now()),
        tasks::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)?;
    Ok(())
}

/// Tasks still waiting for the relay (PENDING and never published), for a gauge.
pub fn backlog(conn: &mut PgConnection) -> Result<i64, DbError> {
    Ok(tasks::table
        .filter(tasks::status.eq(status::PENDING))
        .filter(tasks::published_at.is_null())
        .count()
        .get_result(conn)?)
}
