//! The dashboard's numbers, from real queries over `log_entries`.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use diesel::{dsl::count_star, pg::PgConnection, prelude::*};

use crate::{models::LogEntry, schema::log_entries, DbError};

#[derive(Debug, Clone)]
pub struct Dashboard {
    pub anomalies_last_24h: i64,
    pub anomalies_last_7d: i64,
    pub severity_distribution_24h: BTreeMap<String, i64>,
    pub recent_anomalies: Vec<LogEntry>,
    pub last_updated: DateTime<Utc>,
}

/// Counts by the entries' own timestamps (`logged_at`), relative to `now`.
pub fn load(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    recent: i64,
) -> Result<Dashboard, DbError> {
    let day_ago = now - Duration::hours(24);
    let week_ago = now - Duration::days(7);
    let anomalies = |since: DateTime<Utc>, conn: &mut PgConnection| -> Result<i64, DbError> {
        Ok(log_entries::table
            .filter(log_entries::is_anomaly.eq(true))
            .filter(log_entries::logged_at.ge(since))
            .filter(log_entries::logged_at.le(now))
            .count()
            .get_result(conn)?)
    };
    let anomalies_last_24h = anomalies(day_ago, conn)?;
    let anomalies_last_7d = anomalies(week_ago, conn)?;
    let severity_distribution_24h = log_entries::table
        .filter(log_entries::logged_at.ge(day_ago))
        .filter(log_entries::logged_at.le(now))
        .group_by(log_entries::severity)
        .select((log_entries::severity, count_star()))
        .load::<(String, i64)>(conn)?
        .into_iter()
        .collect();
    let recent_anomalies = log_entries::table
        .filter(log_entries::is_anomaly.eq(true))
        .order((log_entries::logged_at.desc(), log_entries::id.desc()))
        .limit(recent)
        .select(LogEntry::as_select())
        .load(conn)?;
    Ok(Dashboard {
        anomalies_last_24h,
        anomalies_last_7d,
        severity_distribution_24h,
        recent_anomalies,
        last_updated: now,
    })
}
