//! Alert records: one row per alert task and delivery channel, with its delivery state
//! (`pending` -> `sent` | `failed`, or `suppressed` by the cooldown), attempts and last
//! error.
//!
//! [`claim`] decides, under a per-(dedup key, channel) advisory lock, whether an alert is
//! new or a repeat inside the cooldown, so two notifier replicas never both send the same
//! alert. A redelivered task finds the rows it wrote (unique on task id + channel).

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use diesel::{
    pg::PgConnection,
    prelude::*,
    sql_types::{BigInt, Bool, Double, Text},
};
use serde::Serialize;
use uuid::Uuid;

use crate::{
    schema::{alerts, pattern_detections},
    DbError,
};

/// Delivery states of an alert row.
pub mod status {
    /// Recorded, not yet delivered (or being retried).
    pub const PENDING: &str = "pending";
    pub const SENT: &str = "sent";
    /// Every attempt failed, or a permanent error; the task was dead-lettered.
    pub const FAILED: &str = "failed";
    /// The same alert was sent (or is being sent) on this channel inside the cooldown.
    pub const SUPPRESSED: &str = "suppressed";
    pub const ALL: [&str; 4] = [PENDING, SENT, FAILED, SUPPRESSED];
}

/// An alert row.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = alerts)]
pub struct Alert {
    pub id: i64,
    pub dedup_key: String,
    pub kind: String,
    pub channel: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub payload: serde_json::Value,
    pub log_entry_id: Option<i64>,
    pub pattern_detection_id: Option<i64>,
    pub task_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = alerts)]
struct NewAlert<'a> {
    dedup_key: &'a str,
    kind: &'a str,
    channel: &'a str,
    status: &'a str,
    payload: serde_json::Value,
    log_entry_id: Option<i64>,
    pattern_detection_id: Option<i64>,
    task_id: Uuid,
}

/// An alert to record on one channel.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Same key + channel inside the cooldown: suppressed.
    pub dedup_key: String,
    pub kind: String,
    pub channel: String,
    pub payload: serde_json::Value,
    pub log_entry_id: Option<i64>,
    pub pattern_detection_id: Option<i64>,
    pub task_id: Uuid,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    #[allow(dead_code)]
    locked: bool,
}

/// Records `candidates` and returns their rows, one per candidate in the same order.
///
/// A candidate whose task already has a row on its channel gets that row back unchanged
/// (redelivery). Otherwise, per (dedup key, channel): when a row of another task with the
/// same key was sent or is pending on that channel within `cooldown`, the candidates are
/// stored `suppressed` (payload gains `suppressed_by`: that row's id); else `pending`.
/// Candidates of one call that share a key are decided together, so they are all pending
/// (to be grouped in one message) or all suppressed. One transaction; blocks on other
/// claims of the same keys until they commit.
pub fn claim(
    conn: &mut PgConnection,
    candidates: &[Candidate],
    cooldown: Duration,
) -> Result<Vec<Alert>, DbError> {
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    conn.transaction(|conn| {
        let task_ids: Vec<Uuid> = candidates.iter().map(|c| c.task_id).collect();
        let existing = rows_for_tasks(conn, &task_ids)?;
        let have = |c: &Candidate| {
            existing
                .iter()
                .any(|a| a.task_id == Some(c.task_id) && a.channel == c.channel)
        };
        // Lock the keys in one order, so concurrent claims cannot deadlock.
        let mut keys: Vec<(&str, &str)> = candidates
            .iter()
            .filter(|c| !have(c))
            .map(|c| (c.dedup_key.as_str(), c.channel.as_str()))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        for (key, channel) in keys {
            diesel::sql_query(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0)) IS NOT NULL AS locked",
            )
            .bind::<Text, _>(format!("alert:{key}:{channel}"))
            .load::<Locked>(conn)?;
            let earlier: Option<i64> = alerts::table
                .filter(alerts::dedup_key.eq(key))
                .filter(alerts::channel.eq(channel))
                .filter(alerts::status.eq_any([status::SENT, status::PENDING]))
                .filter(
                    alerts::task_id
                        .is_null()
                        .or(alerts::task_id.ne_all(&task_ids)),
                )
                .filter(
                    diesel::dsl::sql::<Bool>("created_at > now() - make_interval(secs => ")
                        .bind::<Double, _>(cooldown.as_secs_f64())
                        .sql(")"),
                )
                .order(alerts::id.desc())
                .select(alerts::id)
                .first(conn)
                .optional()?;
            let rows: Vec<NewAlert<'_>> = candidates
                .iter()
                .filter(|c| c.dedup_key == key && c.channel == channel && !have(c))
                .map(|c| {
                    let mut payload = c.payload.clone();
                    if let (Some(id), Some(map)) = (earlier, payload.as_object_mut()) {
                        map.insert("suppressed_by".into(), id.into());
                    }
                    NewAlert {
                        dedup_key: &c.dedup_key,
                        kind: &c.kind,
                        channel: &c.channel,
                        status: if earlier.is_some() {
                            status::SUPPRESSED
                        } else {
                            status::PENDING
                        },
                        payload,
                        log_entry_id: c.log_entry_id,
                        pattern_detection_id: c.pattern_detection_id,
                        task_id: c.task_id,
                    }
                })
                .collect();
            diesel::insert_into(alerts::table)
                .values(&rows)
                .on_conflict((alerts::task_id, alerts::channel))
                .do_nothing()
                .execute(conn)?;
        }
        let by_key: HashMap<(Uuid, String), Alert> = rows_for_tasks(conn, &task_ids)?
            .into_iter()
            .filter_map(|a| Some(((a.task_id?, a.channel.clone()), a)))
            .collect();
        candidates
            .iter()
            .map(|c| {
                by_key
                    .get(&(c.task_id, c.channel.clone()))
                    .cloned()
                    .ok_or(DbError::Query(diesel::result::Error::NotFound))
            })
            .collect()
    })
}

/// Every alert row of these tasks.
pub fn rows_for_tasks(conn: &mut PgConnection, task_ids: &[Uuid]) -> Result<Vec<Alert>, DbError> {
    Ok(alerts::table
        .filter(alerts::task_id.eq_any(task_ids))
        .select(Alert::as_select())
        .order(alerts::id)
        .load(conn)?)
}

/// What one delivery attempt of a group of rows came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Sent,
    /// Failed; another attempt follows (the rows stay pending).
    WillRetry(String),
    /// Failed for good.
    Failed(String),
    /// Not attempted and never will be (no channel to send it on): suppressed, with why.
    Skipped(String),
}

/// Counts one attempt on each of `ids` (none for [`Attempt::Skipped`]) and records its
/// outcome. Rows no longer pending (another replica finished them) are left alone.
pub fn record_attempt(
    conn: &mut PgConnection,
    ids: &[i64],
    attempt: &Attempt,
) -> Result<usize, DbError> {
    let target = alerts::table
        .filter(alerts::id.eq_any(ids))
        .filter(alerts::status.eq(status::PENDING));
    let n = match attempt {
        Attempt::Sent => diesel::update(target)
            .set((
                alerts::status.eq(status::SENT),
                alerts::attempts.eq(alerts::attempts + 1),
                alerts::sent_at.eq(crate::db_now()),
            ))
            .execute(conn)?,
        Attempt::WillRetry(error) => diesel::update(target)
            .set((
                alerts::attempts.eq(alerts::attempts + 1),
                alerts::last_error.eq(Some(error)),
            ))
            .execute(conn)?,
        Attempt::Failed(error) => diesel::update(target)
            .set((
                alerts::status.eq(status::FAILED),
                alerts::attempts.eq(alerts::attempts + 1),
                alerts::last_error.eq(Some(error)),
            ))
            .execute(conn)?,
        Attempt::Skipped(reason) => diesel::update(target)
            .set((
                alerts::status.eq(status::SUPPRESSED),
                alerts::last_error.eq(Some(reason)),
            ))
            .execute(conn)?,
    };
    Ok(n)
}

/// Marks the rows of `task_id` still pending `failed` with `error` (its message was
/// dead-lettered). Returns how many.
pub fn fail_pending(conn: &mut PgConnection, task_id: Uuid, error: &str) -> Result<usize, DbError> {
    Ok(diesel::update(
        alerts::table
            .filter(alerts::task_id.eq(task_id))
            .filter(alerts::status.eq(status::PENDING)),
    )
    .set((
        alerts::status.eq(status::FAILED),
        alerts::last_error.eq(Some(error)),
    ))
    .execute(conn)?)
}

/// Filters for [`list`]; newest first.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<String>,
    pub kind: Option<String>,
    /// Exact channel (`email`, `webhook:...`), or a prefix ending in `:` (`webhook:`).
    pub channel: Option<String>,
    pub since: Option<DateTime<Utc>>,
    /// Keyset cursor: rows with a smaller id.
    pub before_id: Option<i64>,
    pub limit: i64,
}

pub fn list(conn: &mut PgConnection, f: &ListFilter) -> Result<Vec<Alert>, DbError> {
    let mut q = alerts::table.select(Alert::as_select()).into_boxed();
    if let Some(s) = &f.status {
        q = q.filter(alerts::status.eq(s.clone()));
    }
    if let Some(k) = &f.kind {
        q = q.filter(alerts::kind.eq(k.clone()));
    }
    if let Some(c) = &f.channel {
        if c.ends_with(':') {
            let escaped = c
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            q = q.filter(alerts::channel.like(format!("{escaped}%")));
        } else {
            q = q.filter(alerts::channel.eq(c.clone()));
        }
    }
    if let Some(s) = f.since {
        q = q.filter(alerts::created_at.ge(s));
    }
    if let Some(id) = f.before_id {
        q = q.filter(alerts::id.lt(id));
    }
    Ok(q.order(alerts::id.desc()).limit(f.limit).load(conn)?)
}

/// A detected pattern, as an alert describes it.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = pattern_detections)]
pub struct PatternForAlert {
    pub id: i64,
    pub kind: String,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub source: String,
    pub severity: String,
    pub details: serde_json::Value,
    pub log_entry_ids: Vec<i64>,
    pub detected_at: DateTime<Utc>,
}

/// The pattern detections among `ids` that exist.
pub fn patterns(conn: &mut PgConnection, ids: &[i64]) -> Result<Vec<PatternForAlert>, DbError> {
    Ok(pattern_detections::table
        .filter(pattern_detections::id.eq_any(ids))
        .select(PatternForAlert::as_select())
        .load(conn)?)
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Number of alert rows.
pub fn count(conn: &mut PgConnection) -> Result<i64, DbError> {
    let rows: Vec<Count> =
        diesel::sql_query("SELECT count(*)::bigint AS n FROM alerts").load(conn)?;
    Ok(rows.first().map_or(0, |r| r.n))
}
