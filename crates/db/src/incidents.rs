//! Open incidents of the channels that track them (Alertmanager, PagerDuty): one row per
//! dedup key and channel while the alert keeps firing, so that the notifier can re-post it
//! (Alertmanager forgets an alert that is not re-posted) and send its end once the alert
//! has gone quiet. The state lives here, not in a process: it survives a restart and is
//! shared by every notifier replica.
//!
//! [`touch`] runs in the transaction of the alert claim (under its per-key advisory lock):
//! every alert of a key, sent or suppressed by the cooldown, moves the incident's
//! `last_seen_at`. [`lease_due`] hands the incidents due for an end or a re-post to one
//! replica for a while (`lease_until`, `FOR UPDATE SKIP LOCKED`), so two replicas never
//! post the same one at once; [`ended`], [`posted`] and [`failed`] record what came of it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::{
    pg::PgConnection,
    prelude::*,
    sql_types::{Array, BigInt, Bool, Double, Integer, Jsonb, Nullable, Text, Timestamptz},
};
use serde::Serialize;

use crate::{
    alerts::{self, status, Alert, Candidate},
    DbError,
};

/// An alert seen on an incident channel, for [`touch`].
#[derive(Debug, Clone)]
pub struct Touch {
    pub dedup_key: String,
    pub kind: String,
    pub channel: String,
    /// The alert (the notifier's `AlertItem`); kept only when it opens the incident.
    pub payload: serde_json::Value,
    /// It is being sent now (a `pending` row). A suppressed alert that opens an incident
    /// leaves it to the sweep to post.
    pub sending: bool,
}

/// An incident row.
#[derive(Debug, Clone, PartialEq, QueryableByName, Serialize)]
pub struct Incident {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub dedup_key: String,
    #[diesel(sql_type = Text)]
    pub channel: String,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Jsonb)]
    pub payload: serde_json::Value,
    #[diesel(sql_type = Timestamptz)]
    pub started_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub last_seen_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub posted_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub resolved_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    pub last_error: Option<String>,
}

/// An incident [`lease_due`] handed out, and what it is due for.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct Leased {
    #[diesel(embed)]
    pub incident: Incident,
    /// No alert of the key for the resolve time: send the end. Otherwise re-post it.
    #[diesel(sql_type = Bool)]
    pub ending: bool,
}

const COLUMNS: &str = "id, dedup_key, channel, kind, payload, started_at, last_seen_at, \
                       posted_at, resolved_at, attempts, last_error";

/// Opens an incident per (dedup key, channel) of `touches`, or moves the open one's
/// `last_seen_at` to now. The first touch of a key in `touches` gives a new incident its
/// payload. Call it in the transaction that claims the alerts.
pub fn touch(conn: &mut PgConnection, touches: &[Touch]) -> Result<(), DbError> {
    let mut sorted: Vec<&Touch> = touches.iter().collect();
    // One order for the row locks, so concurrent claims cannot deadlock; stable, so the
    // first alert of a key stays first.
    sorted.sort_by(|a, b| (&a.dedup_key, &a.channel).cmp(&(&b.dedup_key, &b.channel)));
    sorted.dedup_by(|a, b| a.dedup_key == b.dedup_key && a.channel == b.channel);
    for t in sorted {
        diesel::sql_query(
            "INSERT INTO incidents (dedup_key, channel, kind, payload, posted_at) \
             VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN now() END) \
             ON CONFLICT (dedup_key, channel) WHERE resolved_at IS NULL \
             DO UPDATE SET last_seen_at = greatest(incidents.last_seen_at, now())",
        )
        .bind::<Text, _>(&t.dedup_key)
        .bind::<Text, _>(&t.channel)
        .bind::<Text, _>(&t.kind)
        .bind::<Jsonb, _>(&t.payload)
        .bind::<Bool, _>(t.sending)
        .execute(conn)?;
    }
    Ok(())
}

/// [`alerts::claim`], and in the same transaction a [`touch`] for each alert row claimed
/// `pending` or `suppressed` on one of `tracked` (the channels that track incidents):
/// sent or suppressed, an alert keeps its incident open.
pub fn claim(
    conn: &mut PgConnection,
    candidates: &[Candidate],
    cooldown: Duration,
    tracked: &[String],
) -> Result<Vec<Alert>, DbError> {
    if tracked.is_empty() {
        return alerts::claim(conn, candidates, cooldown);
    }
    conn.transaction(|conn| {
        let claimed = alerts::claim(conn, candidates, cooldown)?;
        let touches: Vec<Touch> = claimed
            .iter()
            .filter(|a| {
                tracked.contains(&a.channel)
                    && matches!(a.status.as_str(), status::PENDING | status::SUPPRESSED)
            })
            .map(|a| Touch {
                dedup_key: a.dedup_key.clone(),
                kind: a.kind.clone(),
                channel: a.channel.clone(),
                payload: a.payload.clone(),
                sending: a.status == status::PENDING,
            })
            .collect();
        touch(conn, &touches)?;
        Ok(claimed)
    })
}

/// What [`lease_due`] looks for on one channel.
#[derive(Debug, Clone, Copy)]
pub struct Due {
    /// No alert for this long: the incident ends.
    pub resolve_after: Duration,
    /// Re-post an open incident not posted for this long; `None`: only those that must go
    /// out again (`posted_at` NULL).
    pub repost_every: Option<Duration>,
    /// How long the caller has the incidents to itself.
    pub lease: Duration,
    pub limit: i64,
}

/// Leases up to `due.limit` open incidents of `channel` that are due for an end or a
/// re-post and that no one else holds, oldest first. One statement; skips rows another
/// replica is leasing.
pub fn lease_due(conn: &mut PgConnection, channel: &str, due: Due) -> Result<Vec<Leased>, DbError> {
    Ok(diesel::sql_query(format!(
        "UPDATE incidents SET lease_until = now() + make_interval(secs => $2) \
         WHERE id IN ( \
           SELECT id FROM incidents \
           WHERE resolved_at IS NULL AND channel = $1 \
             AND (lease_until IS NULL OR lease_until < now()) \
             AND (last_seen_at < now() - make_interval(secs => $3) \
                  OR posted_at IS NULL \
                  OR ($4::float8 IS NOT NULL AND posted_at < now() - make_interval(secs => $4))) \
           ORDER BY last_seen_at LIMIT $5 FOR UPDATE SKIP LOCKED) \
         RETURNING {COLUMNS}, last_seen_at < now() - make_interval(secs => $3) AS ending"
    ))
    .bind::<Text, _>(channel)
    .bind::<Double, _>(due.lease.as_secs_f64())
    .bind::<Double, _>(due.resolve_after.as_secs_f64())
    .bind::<Nullable<Double>, _>(due.repost_every.map(|d| d.as_secs_f64()))
    .bind::<BigInt, _>(due.limit)
    .load(conn)?)
}

/// Records delivered ends (`endsAt` / `resolve`) at `ends_at`. An incident whose key was
/// seen again since it was leased (`last_seen_at` moved) stays open and is marked to go
/// out as firing again. Returns how many ended.
pub fn ended(
    conn: &mut PgConnection,
    leased: &[(i64, DateTime<Utc>)],
    ends_at: DateTime<Utc>,
) -> Result<usize, DbError> {
    conn.transaction(|conn| {
        let mut n = 0;
        for (id, seen) in leased {
            let closed = diesel::sql_query(
                "UPDATE incidents SET resolved_at = $3, lease_until = NULL, \
                   attempts = attempts + 1, last_error = NULL \
                 WHERE id = $1 AND last_seen_at = $2 AND resolved_at IS NULL",
            )
            .bind::<BigInt, _>(id)
            .bind::<Timestamptz, _>(seen)
            .bind::<Timestamptz, _>(ends_at)
            .execute(conn)?;
            if closed == 0 {
                diesel::sql_query(
                    "UPDATE incidents SET posted_at = NULL, lease_until = NULL WHERE id = $1",
                )
                .bind::<BigInt, _>(id)
                .execute(conn)?;
            }
            n += closed;
        }
        Ok(n)
    })
}

/// Records a delivered re-post of `ids`.
pub fn posted(conn: &mut PgConnection, ids: &[i64]) -> Result<usize, DbError> {
    Ok(diesel::sql_query(
        "UPDATE incidents SET posted_at = now(), lease_until = NULL, \
           attempts = attempts + 1, last_error = NULL WHERE id = ANY($1)",
    )
    .bind::<Array<BigInt>, _>(ids)
    .execute(conn)?)
}

/// How an update of incidents failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Worth trying again: the incidents are left alone for `retry_after`.
    Transient { retry_after: Duration },
    /// Refused for good: an end is given up (the incident closes, keeping the error), a
    /// re-post waits for the next one.
    Permanent,
}

/// Records a failed end (`ending`) or re-post of `ids` with `error` (no secret in it).
pub fn failed(
    conn: &mut PgConnection,
    ids: &[i64],
    ending: bool,
    error: &str,
    failure: Failure,
) -> Result<usize, DbError> {
    let (set, retry_after) = match (failure, ending) {
        (Failure::Transient { retry_after }, _) => (
            "lease_until = now() + make_interval(secs => $3)",
            retry_after,
        ),
        (Failure::Permanent, true) => ("resolved_at = now(), lease_until = NULL", Duration::ZERO),
        (Failure::Permanent, false) => ("posted_at = now(), lease_until = NULL", Duration::ZERO),
    };
    Ok(diesel::sql_query(format!(
        "UPDATE incidents SET {set}, attempts = attempts + 1, last_error = $2 \
         WHERE id = ANY($1)"
    ))
    .bind::<Array<BigInt>, _>(ids)
    .bind::<Text, _>(error)
    .bind::<Double, _>(retry_after.as_secs_f64())
    .execute(conn)?)
}

/// Every incident, newest first (for tests and operators).
pub fn list(conn: &mut PgConnection, limit: i64) -> Result<Vec<Incident>, DbError> {
    Ok(diesel::sql_query(format!(
        "SELECT {COLUMNS} FROM incidents ORDER BY id DESC LIMIT $1"
    ))
    .bind::<BigInt, _>(limit)
    .load(conn)?)
}
