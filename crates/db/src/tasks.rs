//! Task records: the Celery-like state machine PENDING -> STARTED (-> RETRY) -> SUCCESS | FAILURE,
//! and the outbox columns that say whether the broker has the message.

use chrono::{DateTime, Utc};
use diesel::{pg::PgConnection, prelude::*};
use uuid::Uuid;

use crate::{
    models::{status, NewTask, Task},
    schema::tasks,
    DbError,
};

pub fn insert(conn: &mut PgConnection, new_tasks: &[NewTask]) -> Result<(), DbError> {
    diesel::insert_into(tasks::table)
        .values(new_tasks)
        .execute(conn)?;
    Ok(())
}

pub fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<Task>, DbError> {
    Ok(tasks::table
        .find(id)
        .select(Task::as_select())
        .first(conn)
        .optional()?)
}

/// Current status of each of `ids` that exists (no lock: a hint, re-checked by
/// [`start`] in the writing transaction).
pub fn statuses(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<(Uuid, String)>, DbError> {
    Ok(tasks::table
        .filter(tasks::id.eq_any(ids))
        .select((tasks::id, tasks::status))
        .load(conn)?)
}

/// Records that the broker confirmed these tasks' messages, stamped by the database's
/// clock.
pub fn mark_published(conn: &mut PgConnection, ids: &[Uuid]) -> Result<(), DbError> {
    record_publish(conn, ids, None, None)
}

/// Records the outcome of one publish attempt of these tasks (the outbox's bookkeeping):
/// `error` None means the broker confirmed them (`published_at` set, `publish_error`
/// cleared), `Some` that it did not (the task stays PENDING with `published_at` as it
/// was, for the relay). `at` stamps the change with the caller's clock (the relay's pass
/// time) instead of the database's.
pub fn record_publish(
    conn: &mut PgConnection,
    ids: &[Uuid],
    error: Option<&str>,
    at: Option<DateTime<Utc>>,
) -> Result<(), DbError> {
    conn.transaction(|conn| {
        lock_in_id_order(conn, ids)?;
        let rows = tasks::table.filter(tasks::id.eq_any(ids));
        let attempts = tasks::publish_attempts.eq(tasks::publish_attempts + 1);
        match (error, at) {
            (None, None) => diesel::update(rows)
                .set((
                    tasks::published_at.eq(crate::db_now()),
                    tasks::publish_error.eq(None::<String>),
                    attempts,
                    tasks::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)?,
            (None, Some(at)) => diesel::update(rows)
                .set((
                    tasks::published_at.eq(Some(at)),
                    tasks::publish_error.eq(None::<String>),
                    attempts,
                    tasks::updated_at.eq(at),
                ))
                .execute(conn)?,
            (Some(error), None) => diesel::update(rows)
                .set((
                    tasks::publish_error.eq(Some(error)),
                    attempts,
                    tasks::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)?,
            (Some(error), Some(at)) => diesel::update(rows)
                .set((
                    tasks::publish_error.eq(Some(error)),
                    attempts,
                    tasks::updated_at.eq(at),
                ))
                .execute(conn)?,
        };
        Ok(())
    })
}

/// Locks the task rows of `ids` in id order. A multi-row `UPDATE .. WHERE id = ANY(..)`
/// locks rows in whatever order its plan reads them (index order for a few ids, heap
/// order for many), so two such updates over overlapping tasks (the API's publish stage
/// and the relay recording the same tasks) could deadlock; locking first, in one order,
/// makes the later update take no new locks. Call inside a transaction.
pub fn lock_in_id_order(conn: &mut PgConnection, ids: &[Uuid]) -> Result<(), DbError> {
    if ids.len() > 1 {
        tasks::table
            .filter(tasks::id.eq_any(ids))
            .order(tasks::id.asc())
            .select(tasks::id)
            .for_update()
            .load::<Uuid>(conn)?;
    }
    Ok(())
}

/// Records that publishing failed; the task stays PENDING with `published_at` NULL for
/// the scheduler's relay to re-publish.
pub fn mark_publish_failed(
    conn: &mut PgConnection,
    ids: &[Uuid],
    error: &str,
) -> Result<(), DbError> {
    record_publish(conn, ids, Some(error), None)
}

/// What a worker should do with a delivered task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartDecision {
    /// The task is now STARTED (attempt counted); do the work.
    Run(Box<Task>),
    /// Already SUCCESS or FAILURE: a redelivery; ack without working.
    AlreadyFinished(String),
    /// No such task row (e.g. its database was reset): poison.
    Unknown,
}

impl PartialEq for Task {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}
impl Eq for Task {}

/// Marks a task STARTED unless it already finished.
pub fn start(conn: &mut PgConnection, id: Uuid) -> Result<StartDecision, DbError> {
    Ok(start_many(conn, &[id])?
        .pop()
        .map_or(StartDecision::Unknown, |(_, decision)| decision))
}

/// [`start`] for many tasks in three statements (lock in id order, then one update):
/// what a worker does with a micro-batch of small tasks. Returns a decision per id, in
/// the order of `ids`; a started task's attempts count one more.
pub fn start_many(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, StartDecision)>, DbError> {
    conn.transaction(|conn| {
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let current: Vec<(Uuid, String)> = tasks::table
            .filter(tasks::id.eq_any(&sorted))
            .order(tasks::id.asc())
            .select((tasks::id, tasks::status))
            .for_update()
            .load(conn)?;
        let current: std::collections::HashMap<Uuid, String> = current.into_iter().collect();
        let runnable: Vec<Uuid> = sorted
            .iter()
            .copied()
            .filter(|id| {
                current
                    .get(id)
                    .is_some_and(|s| s != status::SUCCESS && s != status::FAILURE)
            })
            .collect();
        let started: Vec<Task> = if runnable.is_empty() {
            Vec::new()
        } else {
            diesel::update(tasks::table.filter(tasks::id.eq_any(&runnable)))
                .set((
                    tasks::status.eq(status::STARTED),
                    tasks::attempts.eq(tasks::attempts + 1),
                    tasks::started_at.eq(crate::db_now()),
                    // A message that reached a worker was published, whatever the API recorded.
                    tasks::published_at.eq(diesel::dsl::sql::<
                        diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
                    >("COALESCE(published_at, now())")),
                    tasks::updated_at.eq(diesel::dsl::now),
                ))
                .returning(Task::as_returning())
                .get_results(conn)?
        };
        let mut started: std::collections::HashMap<Uuid, Task> =
            started.into_iter().map(|t| (t.id, t)).collect();
        Ok(ids
            .iter()
            .map(|id| {
                let decision = match (started.remove(id), current.get(id)) {
                    (Some(task), _) => StartDecision::Run(Box::new(task)),
                    (None, Some(state)) => StartDecision::AlreadyFinished(state.clone()),
                    (None, None) => StartDecision::Unknown,
                };
                (*id, decision)
            })
            .collect())
    })
}

/// Marks a task RETRY with the error that caused it (the broker holds the retry).
pub fn mark_retry(conn: &mut PgConnection, id: Uuid, error: &str) -> Result<(), DbError> {
    diesel::update(
        tasks::table
            .find(id)
            .filter(tasks::status.ne_all([status::SUCCESS, status::FAILURE])),
    )
    .set((
        tasks::status.eq(status::RETRY),
        tasks::error.eq(Some(error)),
        tasks::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)?;
    Ok(())
}

/// Marks a task FAILURE with its error, unless it already succeeded.
pub fn mark_failed(conn: &mut PgConnection, id: Uuid, error: &str) -> Result<(), DbError> {
    diesel::update(
        tasks::table
            .find(id)
            .filter(tasks::status.ne(status::SUCCESS)),
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

/// Marks a task SUCCESS with a result (for tasks that write nothing else).
pub fn mark_success(
    conn: &mut PgConnection,
    id: Uuid,
    result: &serde_json::Value,
) -> Result<(), DbError> {
    diesel::update(tasks::table.find(id))
        .set((
            tasks::status.eq(status::SUCCESS),
            tasks::result.eq(Some(result)),
            tasks::finished_at.eq(crate::db_now()),
            tasks::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)?;
    Ok(())
}

/// [`mark_success`] for many tasks in one statement.
pub fn mark_success_many(
    conn: &mut PgConnection,
    results: &[(Uuid, serde_json::Value)],
) -> Result<(), DbError> {
    use diesel::sql_types::{Array, Jsonb, Uuid as SqlUuid};
    if results.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = results.iter().map(|(id, _)| *id).collect();
    let values: Vec<&serde_json::Value> = results.iter().map(|(_, r)| r).collect();
    diesel::sql_query(
        "UPDATE tasks t SET status = 'SUCCESS', result = u.result, \
             finished_at = clock_timestamp(), updated_at = now() \
         FROM unnest($1::uuid[], $2::jsonb[]) AS u(id, result) WHERE t.id = u.id",
    )
    .bind::<Array<SqlUuid>, _>(&ids)
    .bind::<Array<Jsonb>, _>(&values)
    .execute(conn)?;
    Ok(())
}

pub fn count(conn: &mut PgConnection) -> Result<i64, DbError> {
    Ok(tasks::table.count().get_result(conn)?)
}
