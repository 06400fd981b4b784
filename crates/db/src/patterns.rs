//! Pattern analysis storage: what the detectors read (entries of a window, counted per
//! source, bucket and severity, and the entries that may be named) and the detections
//! they write to `pattern_detections`, one row per incident (kind, source and
//! overlapping windows).

use chrono::{DateTime, Utc};
use diesel::{
    pg::PgConnection,
    prelude::*,
    sql_types::{BigInt, Bool, Text, Timestamptz},
};
use serde::Serialize;
use uuid::Uuid;

use crate::{schema::pattern_detections, DbError};

/// A stored detection.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, PartialEq)]
#[diesel(table_name = pattern_detections)]
pub struct PatternDetection {
    pub id: i64,
    pub kind: String,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub source: String,
    pub severity: String,
    pub details: serde_json::Value,
    pub log_entry_ids: Vec<i64>,
    pub task_id: Option<Uuid>,
    pub detected_at: DateTime<Utc>,
}

/// A detection to store.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = pattern_detections)]
pub struct NewPatternDetection {
    pub kind: String,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub source: String,
    pub severity: String,
    pub details: serde_json::Value,
    pub log_entry_ids: Vec<i64>,
    pub task_id: Option<Uuid>,
}

/// Entries of one source (`""` for none), severity and bucket.
#[derive(Debug, Clone, QueryableByName, PartialEq)]
pub struct CountRow {
    #[diesel(sql_type = Text)]
    pub source: String,
    #[diesel(sql_type = Timestamptz)]
    pub bucket_start: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    pub severity: String,
    #[diesel(sql_type = BigInt)]
    pub count: i64,
}

/// Counts entries logged in `[from, until)` per source, severity and bucket of
/// `bucket_secs` seconds aligned to the Unix epoch.
pub fn counts(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    bucket_secs: i64,
) -> Result<Vec<CountRow>, DbError> {
    Ok(diesel::sql_query(
        "SELECT COALESCE(source, '') AS source, \
                to_timestamp(floor(extract(epoch FROM logged_at) / $3) * $3) AS bucket_start, \
                severity, count(*) AS count \
         FROM log_entries WHERE logged_at >= $1 AND logged_at < $2 \
         GROUP BY 1, 2, 3",
    )
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(until)
    .bind::<BigInt, _>(bucket_secs.max(1))
    .load(conn)?)
}

/// One entry as the detectors see it.
#[derive(Debug, Clone, QueryableByName, PartialEq)]
pub struct EventRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Timestamptz)]
    pub logged_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    pub source: String,
    #[diesel(sql_type = Text)]
    pub severity: String,
    #[diesel(sql_type = Bool)]
    pub is_anomaly: bool,
}

/// Entries logged in `[from, until)`, oldest first, at most `limit`: every entry, or with
/// `notable_only` just the anomalies and the ERROR/CRITICAL ones.
pub fn events(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    notable_only: bool,
    limit: i64,
) -> Result<Vec<EventRow>, DbError> {
    Ok(diesel::sql_query(
        "SELECT id, logged_at, COALESCE(source, '') AS source, severity, \
                COALESCE(is_anomaly, false) AS is_anomaly \
         FROM log_entries WHERE logged_at >= $1 AND logged_at < $2 \
           AND (NOT $3 OR is_anomaly OR severity IN ('ERROR', 'CRITICAL')) \
         ORDER BY logged_at, id LIMIT $4",
    )
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(until)
    .bind::<Bool, _>(notable_only)
    .bind::<BigInt, _>(limit)
    .load(conn)?)
}

/// Entries logged in `[from, until)` not yet scored: a pattern analysis run before they
/// are would miss their anomalies.
pub fn unscored(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<i64, DbError> {
    use crate::schema::log_entries;
    Ok(log_entries::table
        .filter(log_entries::logged_at.ge(from))
        .filter(log_entries::logged_at.lt(until))
        .filter(log_entries::analyzed_at.is_null())
        .count()
        .get_result(conn)?)
}

/// Rank of a detection severity, for "did it get worse".
fn severity_rank(severity: &str) -> u8 {
    match severity {
        "CRITICAL" => 4,
        "ERROR" => 3,
        "WARNING" => 2,
        "INFO" => 1,
        _ => 0,
    }
}

/// Stores each detection as an incident: one of the same kind and source whose window
/// overlaps or touches a stored one is the same incident seen again (a re-run, a run that
/// saw more of it after the window edge cut it, or the realtime and periodic workers both
/// catching it), so the stored row is widened to cover both windows and takes the union of
/// their entries and the latest details, instead of a second row. Returns, in input order,
/// the row id and whether it calls for an alert: a new incident, or one whose severity
/// rose. Writers of the same kind and source are serialised by an advisory lock held to
/// the end of the caller's transaction.
pub fn insert_new(
    conn: &mut PgConnection,
    detections: &[NewPatternDetection],
) -> Result<Vec<(i64, bool)>, DbError> {
    let mut out = Vec::with_capacity(detections.len());
    for d in detections {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind::<Text, _>(format!("pattern_detections:{}:{}", d.kind, d.source))
            .execute(conn)?;
        let same_incident: Option<PatternDetection> = pattern_detections::table
            .filter(pattern_detections::kind.eq(&d.kind))
            .filter(pattern_detections::source.eq(&d.source))
            .filter(pattern_detections::window_start.le(d.window_end))
            .filter(pattern_detections::window_end.ge(d.window_start))
            .order(pattern_detections::window_end.desc())
            .select(PatternDetection::as_select())
            .first(conn)
            .optional()?;
        let Some(stored) = same_incident else {
            let id = diesel::insert_into(pattern_detections::table)
                .values(d)
                .returning(pattern_detections::id)
                .get_result(conn)?;
            out.push((id, true));
            continue;
        };
        let mut ids = stored.log_entry_ids.clone();
        ids.extend(&d.log_entry_ids);
        ids.sort_unstable();
        ids.dedup();
        let escalated = severity_rank(&d.severity) > severity_rank(&stored.severity);
        let (severity, details) = if escalated || d.window_end > stored.window_end {
            let severity = if escalated {
                d.severity.clone()
            } else {
                stored.severity.clone()
            };
            (severity, d.details.clone())
        } else {
            (stored.severity.clone(), stored.details.clone())
        };
        diesel::update(pattern_detections::table.find(stored.id))
            .set((
                pattern_detections::window_start.eq(stored.window_start.min(d.window_start)),
                pattern_detections::window_end.eq(stored.window_end.max(d.window_end)),
                pattern_detections::log_entry_ids.eq(ids),
                pattern_detections::severity.eq(severity),
                pattern_detections::details.eq(details),
            ))
            .execute(conn)?;
        out.push((stored.id, escalated));
    }
    Ok(out)
}

pub fn get(conn: &mut PgConnection, id: i64) -> Result<Option<PatternDetection>, DbError> {
    Ok(pattern_detections::table
        .find(id)
        .select(PatternDetection::as_select())
        .first(conn)
        .optional()?)
}

/// Filters of [`list`].
#[derive(Debug, Clone, Default)]
pub struct PatternFilter {
    pub kind: Option<String>,
    pub source: Option<String>,
    pub severity: Option<String>,
    /// Detections made at or after.
    pub since: Option<DateTime<Utc>>,
    /// Keyset cursor: ids below this one.
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// Detections, newest first (by id, which follows detection time).
pub fn list(conn: &mut PgConnection, f: &PatternFilter) -> Result<Vec<PatternDetection>, DbError> {
    let mut q = pattern_detections::table
        .select(PatternDetection::as_select())
        .into_boxed();
    if let Some(k) = &f.kind {
        q = q.filter(pattern_detections::kind.eq(k.clone()));
    }
    if let Some(s) = &f.source {
        q = q.filter(pattern_detections::source.eq(s.clone()));
    }
    if let Some(s) = &f.severity {
        q = q.filter(pattern_detections::severity.eq(s.clone()));
    }
    if let Some(t) = f.since {
        q = q.filter(pattern_detections::detected_at.ge(t));
    }
    if let Some(id) = f.before_id {
        q = q.filter(pattern_detections::id.lt(id));
    }
    Ok(q.order(pattern_detections::id.desc())
        .limit(f.limit)
        .load(conn)?)
}
