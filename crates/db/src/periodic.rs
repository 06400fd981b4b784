//! Periodic tasks (django-celery-beat's model): a task name with JSON args and either an
//! interval (`every` + `period`) or a cron expression in a time zone, plus the bookkeeping
//! the scheduler keeps (last run, next run, total runs).
//!
//! [`fire_due`] is the heart of "exactly once per due time": in one transaction it locks
//! the due rows (`FOR UPDATE SKIP LOCKED`, so two schedulers never take the same row),
//! inserts one `tasks` row per due schedule and moves `next_run_at` past `now`. A crash
//! before the commit fires nothing; a crash after it leaves PENDING task rows that the
//! relay publishes. After downtime a schedule fires once, not once per missed slot.

use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use diesel::{pg::PgConnection, prelude::*};
use serde::Serialize;
use uuid::Uuid;

use crate::{models::NewTask, schema::periodic_tasks, DbError};

/// Interval periods, as django-celery-beat names them.
pub const PERIODS: [&str; 4] = ["seconds", "minutes", "hours", "days"];

/// Longest interval accepted (ten years), so date arithmetic cannot overflow.
const MAX_INTERVAL_SECS: i64 = 10 * 366 * 24 * 3600;

/// A stored periodic task.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, PartialEq)]
#[diesel(table_name = periodic_tasks)]
pub struct PeriodicTask {
    pub id: i64,
    pub name: String,
    pub task: String,
    pub args: serde_json::Value,
    pub interval_every: Option<i32>,
    pub interval_period: Option<String>,
    pub cron: Option<String>,
    pub timezone: String,
    pub enabled: bool,
    pub last_run_at: Option<DateTime<Utc>>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub total_run_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The writable columns of a periodic task (validated by the caller with [`Schedule`]).
#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = periodic_tasks, treat_none_as_null = true)]
pub struct PeriodicFields {
    pub name: String,
    pub task: String,
    pub args: serde_json::Value,
    pub interval_every: Option<i32>,
    pub interval_period: Option<String>,
    pub cron: Option<String>,
    pub timezone: String,
    pub enabled: bool,
    pub next_run_at: Option<DateTime<Utc>>,
}

impl From<&PeriodicTask> for PeriodicFields {
    fn from(t: &PeriodicTask) -> Self {
        Self {
            name: t.name.clone(),
            task: t.task.clone(),
            args: t.args.clone(),
            interval_every: t.interval_every,
            interval_period: t.interval_period.clone(),
            cron: t.cron.clone(),
            timezone: t.timezone.clone(),
            enabled: t.enabled,
            next_run_at: t.next_run_at,
        }
    }
}

/// Why a schedule is invalid; `field` names the offending input field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ScheduleError {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> ScheduleError {
    ScheduleError {
        field,
        message: message.into(),
    }
}

/// When a periodic task is due.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Every `step`, counted from the first due time.
    Interval { step: Duration },
    /// The times a cron expression matches, in a time zone (DST handled by the zone).
    Cron { cron: Box<croner::Cron>, tz: Tz },
}

impl Schedule {
    /// An interval of `every` `period`s (`seconds`, `minutes`, `hours`, `days`).
    ///
    /// # Errors
    ///
    /// `every` not positive or over ten years; `period` not one of [`PERIODS`].
    pub fn interval(every: i64, period: &str) -> Result<Self, ScheduleError> {
        let unit = match period {
            "seconds" => 1,
            "minutes" => 60,
            "hours" => 3600,
            "days" => 86_400,
            other => {
                return Err(invalid(
                    "period",
                    format!(
                        "\"{other}\" is not a valid choice; use one of {}.",
                        PERIODS.join(", ")
                    ),
                ))
            }
        };
        if every <= 0 {
            return Err(invalid(
                "every",
                "Ensure this value is greater than or equal to 1.",
            ));
        }
        let secs = every
            .checked_mul(unit)
            .filter(|s| *s <= MAX_INTERVAL_SECS)
            .ok_or_else(|| invalid("every", "The interval must not exceed ten years."))?;
        Ok(Schedule::Interval {
            step: Duration::seconds(secs),
        })
    }

    /// A cron expression (5 fields, or 6 with seconds first; `@daily` and the like) in
    /// the IANA time zone `timezone`.
    ///
    /// # Errors
    ///
    /// An unparsable expression, one that never matches, or an unknown time zone.
    pub fn cron(expression: &str, timezone: &str) -> Result<Self, ScheduleError> {
        check_timezone(timezone)?;
        let tz = Tz::from_str(timezone).map_err(|_| invalid("timezone", "unknown time zone"))?;
        let cron = croner::Cron::from_str(expression.trim())
            .map_err(|e| invalid("cron", format!("Invalid cron expression: {e}.")))?;
        let schedule = Schedule::Cron {
            cron: Box::new(cron),
            tz,
        };
        if schedule.next_cron_after(Utc::now()).is_none() {
            return Err(invalid(
                "cron",
                "This cron expression never matches a time.",
            ));
        }
        Ok(schedule)
    }

    /// The schedule of a stored row.
    ///
    /// # Errors
    ///
    /// As [`Schedule::interval`] / [`Schedule::cron`]; a row with neither is an error.
    pub fn of(task: &PeriodicTask) -> Result<Self, ScheduleError> {
        match (&task.interval_every, &task.interval_period, &task.cron) {
            (Some(every), Some(period), None) => Schedule::interval(i64::from(*every), period),
            (None, None, Some(cron)) => Schedule::cron(cron, &task.timezone),
            _ => Err(invalid(
                "interval",
                "Set either an interval or a cron expression.",
            )),
        }
    }

    /// First due time of a new (or re-enabled, or rescheduled) task: right away for an
    /// interval, as django-celery-beat does; the next match for a cron expression.
    pub fn first_due(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Schedule::Interval { .. } => now,
            Schedule::Cron { .. } => self.next_cron_after(now).unwrap_or(now),
        }
    }

    /// The due time after a run that was due at `due` and fired at `now`: the first slot
    /// strictly after `now`, so slots missed during downtime collapse into the one run
    /// just fired. Intervals keep their phase (no drift from firing late).
    pub fn next_after(&self, due: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Schedule::Interval { step } => {
                let step_ms = step.num_milliseconds().max(1);
                let behind_ms = (now - due).num_milliseconds().max(0);
                let steps = behind_ms / step_ms + 1;
                due + Duration::milliseconds(step_ms.saturating_mul(steps))
            }
            // A cron that stops matching (a year field in the past) is parked far away.
            Schedule::Cron { .. } => self
                .next_cron_after(now)
                .unwrap_or_else(|| now + Duration::days(3650)),
        }
    }

    fn next_cron_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron { cron, tz } => cron
                .find_next_occurrence(&after.with_timezone(tz), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            Schedule::Interval { .. } => None,
        }
    }
}

/// Checks an IANA time zone name.
///
/// # Errors
///
/// An unknown zone, on the `timezone` field.
pub fn check_timezone(timezone: &str) -> Result<(), ScheduleError> {
    Tz::from_str(timezone).map(|_| ()).map_err(|_| {
        invalid(
            "timezone",
            format!("\"{timezone}\" is not a known IANA time zone (e.g. UTC, Europe/Paris)."),
        )
    })
}

/// Whether an insert or update failed because another periodic task has the name.
pub fn is_name_conflict(error: &DbError) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    matches!(
        error,
        DbError::Query(Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _))
    )
}

pub fn list(conn: &mut PgConnection) -> Result<Vec<PeriodicTask>, DbError> {
    Ok(periodic_tasks::table
        .order(periodic_tasks::id)
        .select(PeriodicTask::as_select())
        .load(conn)?)
}

pub fn get(conn: &mut PgConnection, id: i64) -> Result<Option<PeriodicTask>, DbError> {
    Ok(periodic_tasks::table
        .find(id)
        .select(PeriodicTask::as_select())
        .first(conn)
        .optional()?)
}

/// Whether another periodic task (not `except`) already has this name.
pub fn name_taken(
    conn: &mut PgConnection,
    name: &str,
    except: Option<i64>,
) -> Result<bool, DbError> {
    let mut query = periodic_tasks::table
        .filter(periodic_tasks::name.eq(name))
        .into_boxed();
    if let Some(id) = except {
        query = query.filter(periodic_tasks::id.ne(id));
    }
    Ok(diesel::select(diesel::dsl::exists(query)).get_result(conn)?)
}

/// Inserts a periodic task.
///
/// # Errors
///
/// A unique violation on `name` when another insert took it first.
pub fn insert(conn: &mut PgConnection, fields: &PeriodicFields) -> Result<PeriodicTask, DbError> {
    Ok(diesel::insert_into(periodic_tasks::table)
        .values(fields)
        .returning(PeriodicTask::as_returning())
        .get_result(conn)?)
}

/// Locks the row, lets `change` compute its new fields from the current ones (or refuse
/// with its own error) and writes them, all in one transaction. `Ok(None)`: no such row.
pub fn update_with<E>(
    conn: &mut PgConnection,
    id: i64,
    change: impl FnOnce(&PeriodicTask) -> Result<PeriodicFields, E>,
) -> Result<Option<Result<PeriodicTask, E>>, DbError> {
    conn.transaction(|conn| {
        let Some(current) = periodic_tasks::table
            .find(id)
            .select(PeriodicTask::as_select())
            .for_update()
            .first(conn)
            .optional()?
        else {
            return Ok(None);
        };
        let fields = match change(&current) {
            Ok(fields) => fields,
            Err(e) => return Ok(Some(Err(e))),
        };
        let row = diesel::update(periodic_tasks::table.find(id))
            .set((&fields, periodic_tasks::updated_at.eq(diesel::dsl::now)))
            .returning(PeriodicTask::as_returning())
            .get_result(conn)?;
        Ok(Some(Ok(row)))
    })
}

/// Deletes a periodic task; false when there was none. Task rows it fired stay.
pub fn delete(conn: &mut PgConnection, id: i64) -> Result<bool, DbError> {
    Ok(diesel::delete(periodic_tasks::table.find(id)).execute(conn)? > 0)
}

/// One run fired by [`fire_due`].
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    pub periodic_id: i64,
    pub name: String,
    pub task_id: Uuid,
    pub task_name: String,
    pub queue: String,
    pub args: serde_json::Value,
    /// When the run was due (`fired_at - due_at` is the scheduler's lag).
    pub due_at: DateTime<Utc>,
    pub fired_at: DateTime<Utc>,
}

/// A due row that could not fire (bad task name or schedule stored by hand).
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub periodic_id: i64,
    pub name: String,
    pub error: String,
}

/// What one pass of [`fire_due`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FireReport {
    pub fired: Vec<Fired>,
    pub skipped: Vec<Skipped>,
}

/// Fires every enabled periodic task due at `now` (at most `limit` of them), in one
/// transaction: a `tasks` row (PENDING, unpublished) per run, and `next_run_at`,
/// `last_run_at`, `total_run_count` moved on. The caller publishes the fired tasks after
/// the commit; if it cannot, the relay will.
///
/// `route` gives the queue of a task name, or an error for a task it cannot route; such
/// a row and a row whose stored schedule is invalid are disabled (they would otherwise be
/// due forever) and reported in [`FireReport::skipped`].
///
/// Rows locked by another scheduler are skipped, not waited for, so two schedulers at
/// once never fire the same due time twice.
pub fn fire_due(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
    route: &dyn Fn(&str) -> Result<String, String>,
) -> Result<FireReport, DbError> {
    conn.transaction(|conn| {
        let due: Vec<PeriodicTask> = periodic_tasks::table
            .filter(periodic_tasks::enabled.eq(true))
            .filter(
                periodic_tasks::next_run_at
                    .is_null()
                    .or(periodic_tasks::next_run_at.le(now)),
            )
            .order(periodic_tasks::next_run_at.asc().nulls_first())
            .limit(limit)
            .select(PeriodicTask::as_select())
            .for_update()
            .skip_locked()
            .load(conn)?;
        let mut report = FireReport::default();
        for row in due {
            let checked = Schedule::of(&row)
                .map_err(|e| format!("invalid schedule: {e}"))
                .and_then(|s| route(&row.task).map(|q| (s, q)));
            let (schedule, queue) = match checked {
                Ok(ok) => ok,
                Err(error) => {
                    diesel::update(periodic_tasks::table.find(row.id))
                        .set((
                            periodic_tasks::enabled.eq(false),
                            periodic_tasks::updated_at.eq(diesel::dsl::now),
                        ))
                        .execute(conn)?;
                    report.skipped.push(Skipped {
                        periodic_id: row.id,
                        name: row.name,
                        error,
                    });
                    continue;
                }
            };
            let due_at = row.next_run_at.unwrap_or_else(|| schedule.first_due(now));
            if due_at > now {
                // A row never scheduled (inserted by SQL or the seed) whose first time
                // is still ahead.
                diesel::update(periodic_tasks::table.find(row.id))
                    .set(periodic_tasks::next_run_at.eq(Some(due_at)))
                    .execute(conn)?;
                continue;
            }
            let task_id = Uuid::new_v4();
            crate::tasks::insert(
                conn,
                &[NewTask {
                    id: task_id,
                    task_name: row.task.clone(),
                    queue: queue.clone(),
                    args: row.args.clone(),
                }],
            )?;
            diesel::update(periodic_tasks::table.find(row.id))
                .set((
                    periodic_tasks::next_run_at.eq(Some(schedule.next_after(due_at, now))),
                    periodic_tasks::last_run_at.eq(Some(now)),
                    periodic_tasks::total_run_count.eq(periodic_tasks::total_run_count + 1),
                ))
                .execute(conn)?;
            report.fired.push(Fired {
                periodic_id: row.id,
                name: row.name,
                task_id,
                task_name: row.task,
                queue,
                args: row.args,
                due_at,
                fired_at: now,
            });
        }
        Ok(report)
    })
}

/// The earliest `next_run_at` of the enabled tasks, for sleeping until it.
pub fn next_due(conn: &mut PgConnection) -> Result<Option<DateTime<Utc>>, DbError> {
    Ok(periodic_tasks::table
        .filter(periodic_tasks::enabled.eq(true))
        .select(diesel::dsl::min(periodic_tasks::next_run_at))
        .first(conn)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn intervals_validate_their_fields() {
        assert_eq!(Schedule::interval(0, "seconds").unwrap_err().field, "every");
        assert_eq!(Schedule::interval(-3, "hours").unwrap_err().field, "every");
        assert_eq!(Schedule::interval(1, "weeks").unwrap_err().field, "period");
        assert_eq!(
            Schedule::interval(100_000, "days").unwrap_err().field,
            "every"
        );
        assert!(Schedule::interval(6, "hours").is_ok());
    }

    #[test]
    fn an_interval_fires_once_after_downtime_and_keeps_its_phase() {
        let s = Schedule::interval(10, "minutes").unwrap();
        let due = t("2026-01-01T00:00:00Z");
        // On time: the next slot.
        assert_eq!(s.next_after(due, due), t("2026-01-01T00:10:00Z"));
        // Late by a few seconds: still the next slot, no drift.
        assert_eq!(
            s.next_after(due, t("2026-01-01T00:00:03Z")),
            t("2026-01-01T00:10:00Z")
        );
        // Down for 35 minutes: one run now, then the first slot after now.
        assert_eq!(
            s.next_after(due, t("2026-01-01T00:35:00Z")),
            t("2026-01-01T00:40:00Z")
        );
        // Exactly on a later slot: that slot is the one just fired.
        assert_eq!(
            s.next_after(due, t("2026-01-01T00:20:00Z")),
            t("2026-01-01T00:30:00Z")
        );
        assert_eq!(s.first_due(due), due);
    }

    #[test]
    fn cron_expressions_follow_their_time_zone() {
        let s = Schedule::cron("30 2 * * *", "Europe/Paris").unwrap();
        // 02:30 in Paris is 01:30 UTC in winter.
        assert_eq!(
            s.first_due(t("2026-01-10T12:00:00Z")),
            t("2026-01-11T01:30:00Z")
        );
        // ... and 00:30 UTC in summer.
        assert_eq!(
            s.first_due(t("2026-07-10T12:00:00Z")),
            t("2026-07-11T00:30:00Z")
        );
        // After downtime: the next match after now, once.
        assert_eq!(
            s.next_after(t("2026-01-11T01:30:00Z"), t("2026-01-14T09:00:00Z")),
            t("2026-01-15T01:30:00Z")
        );
    }

    #[test]
    fn cron_with_seconds_and_aliases() {
        let s = Schedule::cron("*/5 * * * * *", "UTC").unwrap();
        assert_eq!(
            s.next_after(t("2026-01-01T00:00:00Z"), t("2026-01-01T00:00:01Z")),
            t("2026-01-01T00:00:05Z")
        );
        assert!(Schedule::cron("@daily", "UTC").is_ok());
    }

    #[test]
    fn bad_cron_and_zones_name_their_field() {
        assert_eq!(
            Schedule::cron("61 * * * *", "UTC").unwrap_err().field,
            "cron"
        );
        assert_eq!(Schedule::cron("not cron", "UTC").unwrap_err().field, "cron");
        assert_eq!(Schedule::cron("", "UTC").unwrap_err().field, "cron");
        assert_eq!(
            Schedule::cron("0 * * * *", "Mars/Olympus")
                .unwrap_err()
                .field,
            "timezone"
        );
    }
}
