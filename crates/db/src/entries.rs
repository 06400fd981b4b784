//! Log entry queries: ingest, lookups, listing, storing scores.

use chrono::{DateTime, Utc};
use diesel::{
    pg::PgConnection,
    prelude::*,
    sql_types::{
        Array, BigInt, Bool, Double, Float4, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid,
    },
};
use uuid::Uuid;

use crate::{
    models::{status, EntryScore, LogEntry, NewLogEntry, NewTask},
    schema::{log_entries, tasks},
    DbError,
};

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Inserts entries, each tagged with its task, in one statement; returns their ids in
/// input order. `task_ids[i]` is the task of `entries[i]`.
pub fn insert_entries(
    conn: &mut PgConnection,
    entries: &[NewLogEntry],
    task_ids: &[Uuid],
) -> Result<Vec<i64>, DbError> {
    insert_entries_with_attributes(conn, entries, task_ids, &[])
}

/// [`insert_entries`], with `attributes[i]` (a JSON object, or None) stored beside
/// `entries[i]`; an empty `attributes` stores none.
pub fn insert_entries_with_attributes(
    conn: &mut PgConnection,
    entries: &[NewLogEntry],
    task_ids: &[Uuid],
    attributes: &[Option<serde_json::Value>],
) -> Result<Vec<i64>, DbError> {
    debug_assert_eq!(entries.len(), task_ids.len());
    debug_assert!(attributes.is_empty() || attributes.len() == entries.len());
    let logged: Vec<DateTime<Utc>> = entries.iter().map(|e| e.logged_at).collect();
    let severity: Vec<&str> = entries.iter().map(|e| e.severity.as_str()).collect();
    let message: Vec<&str> = entries.iter().map(|e| e.message.as_str()).collect();
    let source: Vec<Option<&str>> = entries.iter().map(|e| e.source.as_deref()).collect();
    // One statement with array parameters, whatever the batch size: no bind-parameter
    // limit and one plan. Ids come from one sequence in row order, so sorting the returned
    // ids restores input order. Entries of the JSON API have no attributes: their batches
    // skip that column (and its array) altogether.
    let mut rows: Vec<IdRow> = if attributes.iter().all(Option::is_none) {
        diesel::sql_query(
            "INSERT INTO log_entries (logged_at, severity, message, source, analysis_task_id) \
             SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::uuid[]) \
             RETURNING id",
        )
        .bind::<Array<Timestamptz>, _>(&logged)
        .bind::<Array<Text>, _>(&severity)
        .bind::<Array<Text>, _>(&message)
        .bind::<Array<Nullable<Text>>, _>(&source)
        .bind::<Array<SqlUuid>, _>(task_ids)
        .load(conn)?
    } else {
        diesel::sql_query(
            "INSERT INTO log_entries (logged_at, severity, message, source, analysis_task_id, attributes) \
             SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::jsonb[]) \
             RETURNING id",
        )
        .bind::<Array<Timestamptz>, _>(&logged)
        .bind::<Array<Text>, _>(&severity)
        .bind::<Array<Text>, _>(&message)
        .bind::<Array<Nullable<Text>>, _>(&source)
        .bind::<Array<SqlUuid>, _>(task_ids)
        .bind::<Array<Nullable<Jsonb>>, _>(attributes)
        .load(conn)?
    };
    rows.sort_unstable_by_key(|r| r.id);
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// Task rows per `INSERT` statement: each row binds 4 parameters and Postgres takes at
/// most 65 535 per statement, so a commit group of more than 16 383 single-entry
/// requests would otherwise fail as a whole.
pub const TASK_ROWS_PER_STATEMENT: usize = 10_000;

/// The ingest unit of work: tasks and their entries in one transaction, so a task row
/// never exists without its entries and no entry is stored without a task. Any number of
/// tasks: they go in statements of [`TASK_ROWS_PER_STATEMENT`] (the entries travel as
/// arrays, a fixed number of parameters).
pub fn insert_with_tasks(
    conn: &mut PgConnection,
    new_tasks: &[NewTask],
    entries: &[NewLogEntry],
    entry_task: &[Uuid],
) -> Result<Vec<i64>, DbError> {
    insert_with_tasks_and_attributes(conn, new_tasks, entries, entry_task, &[])
}

/// [`insert_with_tasks`] with each entry's attributes (see
/// [`insert_entries_with_attributes`]).
pub fn insert_with_tasks_and_attributes(
    conn: &mut PgConnection,
    new_tasks: &[NewTask],
    entries: &[NewLogEntry],
    entry_task: &[Uuid],
    attributes: &[Option<serde_json::Value>],
) -> Result<Vec<i64>, DbError> {
    conn.transaction(|conn| {
        for chunk in new_tasks.chunks(TASK_ROWS_PER_STATEMENT) {
            diesel::insert_into(tasks::table)
                .values(chunk)
                .execute(conn)?;
        }
        insert_entries_with_attributes(conn, entries, entry_task, attributes)
    })
}

/// One entry and the status of its analysis task.
pub fn get_with_status(
    conn: &mut PgConnection,
    id: i64,
) -> Result<Option<(LogEntry, Option<String>)>, DbError> {
    let row = log_entries::table
        .left_join(tasks::table.on(tasks::id.nullable().eq(log_entries::analysis_task_id)))
        .filter(log_entries::id.eq(id))
        .select((LogEntry::as_select(), tasks::status.nullable()))
        .first::<(LogEntry, Option<String>)>(conn)
        .optional()?;
    Ok(row)
}

/// The stored attributes of entry `id` (what a shipper sent beside the line), if any.
pub fn attributes(conn: &mut PgConnection, id: i64) -> Result<Option<serde_json::Value>, DbError> {
    Ok(log_entries::table
        .filter(log_entries::id.eq(id))
        .select(log_entries::attributes)
        .first::<Option<serde_json::Value>>(conn)
        .optional()?
        .flatten())
}

/// Entries by id (any order); missing ids are simply absent.
pub fn by_ids(conn: &mut PgConnection, ids: &[i64]) -> Result<Vec<LogEntry>, DbError> {
    Ok(log_entries::table
        .filter(log_entries::id.eq_any(ids))
        .order(log_entries::id.asc())
        .select(LogEntry::as_select())
        .load(conn)?)
}

/// Locks the entries of `ids` that have no score yet and returns their ids, in id order
/// (a fixed lock order, so concurrent workers cannot deadlock). Inside a transaction, a
/// second worker on the same entries waits here and then sees them analysed: an entry is
/// scored and counted once.
pub fn lock_unanalysed(conn: &mut PgConnection, ids: &[i64]) -> Result<Vec<i64>, DbError> {
    Ok(log_entries::table
        .filter(log_entries::id.eq_any(ids))
        .filter(log_entries::analyzed_at.is_null())
        .order(log_entries::id.asc())
        .select(log_entries::id)
        .for_update()
        .load(conn)?)
}

/// Which of `ids` exist.
pub fn existing_ids(conn: &mut PgConnection, ids: &[i64]) -> Result<Vec<i64>, DbError> {
    Ok(log_entries::table
        .filter(log_entries::id.eq_any(ids))
        .select(log_entries::id)
        .load(conn)?)
}

/// Filters for listing entries, newest first.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub severity: Option<String>,
    pub is_anomaly: Option<bool>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub contains: Option<String>,
    /// Keyset cursor: entries strictly older than this (logged_at, id).
    pub before: Option<(DateTime<Utc>, i64)>,
    pub limit: i64,
}

pub fn list(conn: &mut PgConnection, f: &ListFilter) -> Result<Vec<LogEntry>, DbError> {
    let mut q = log_entries::table
        .select(LogEntry::as_select())
        .into_boxed();
    if let Some(s) = &f.severity {
        q = q.filter(log_entries::severity.eq(s.clone()));
    }
    if let Some(a) = f.is_anomaly {
        q = q.filter(log_entries::is_anomaly.eq(a));
    }
    if let Some(s) = f.since {
        q = q.filter(log_entries::logged_at.ge(s));
    }
    if let Some(u) = f.until {
        q = q.filter(log_entries::logged_at.lt(u));
    }
    if let Some(text) = &f.contains {
        let escaped = text
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        q = q.filter(log_entries::message.like(format!("%{escaped}%")));
    }
    if let Some((ts, id)) = f.before {
        q = q.filter(
            log_entries::logged_at
                .lt(ts)
                .or(log_entries::logged_at.eq(ts).and(log_entries::id.lt(id))),
        );
    }
    Ok(
        q.order((log_entries::logged_at.desc(), log_entries::id.desc()))
            .limit(f.limit)
            .load(conn)?,
    )
}

/// Writes scores and marks the task SUCCESS with `result`, in one transaction.
///
/// Idempotent: entries already analysed keep their first score, and a task already in a
/// final state is left alone (returns false), so a redelivered message changes nothing.
pub fn store_scores(
    conn: &mut PgConnection,
    task_id: Uuid,
    scores: &[EntryScore],
    result: &serde_json::Value,
) -> Result<bool, DbError> {
    conn.transaction(|conn| {
        let current: Option<String> = tasks::table
            .find(task_id)
            .select(tasks::status)
            .for_update()
            .first(conn)
            .optional()?;
        if matches!(
            current.as_deref(),
            Some(status::SUCCESS) | Some(status::FAILURE)
        ) {
            return Ok(false);
        }
        write_scores(conn, scores)?;
        diesel::update(tasks::table.find(task_id))
            .set((
                tasks::status.eq(status::SUCCESS),
                tasks::result.eq(Some(result)),
                tasks::error.eq(None::<String>),
                tasks::finished_at.eq(crate::db_now()),
                tasks::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)?;
        Ok(true)
    })
}

/// Writes scores of entries not yet analysed (first write wins).
pub fn write_scores(conn: &mut PgConnection, scores: &[EntryScore]) -> Result<usize, DbError> {
    if scores.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = scores.iter().map(|s| s.id).collect();
    let score: Vec<f64> = scores.iter().map(|s| s.anomaly_score).collect();
    let anomalous: Vec<bool> = scores.iter().map(|s| s.is_anomaly).collect();
    let summary: Vec<&str> = scores.iter().map(|s| s.summary.as_str()).collect();
    let template: Vec<Option<i64>> = scores.iter().map(|s| s.template_id).collect();
    let prior: Vec<Option<f32>> = scores.iter().map(|s| s.prior_score).collect();
    Ok(diesel::sql_query(
        "UPDATE log_entries e SET anomaly_score = u.score, is_anomaly = u.anomalous, \
             summary = u.summary, template_id = u.template_id, prior_score = u.prior, \
             analyzed_at = now() \
         FROM unnest($1::bigint[], $2::float8[], $3::bool[], $4::text[], $5::bigint[], $6::real[]) \
             AS u(id, score, anomalous, summary, template_id, prior) \
         WHERE e.id = u.id AND e.analyzed_at IS NULL",
    )
    .bind::<Array<BigInt>, _>(&ids)
    .bind::<Array<Double>, _>(&score)
    .bind::<Array<Bool>, _>(&anomalous)
    .bind::<Array<Text>, _>(&summary)
    .bind::<Array<Nullable<BigInt>>, _>(&template)
    .bind::<Array<Nullable<Float4>>, _>(&prior)
    .execute(conn)?)
}

/// Row count, for tests and diagnostics.
pub fn count(conn: &mut PgConnection) -> Result<i64, DbError> {
    Ok(log_entries::table.count().get_result(conn)?)
}
