//! Periodic tasks (django-celery-beat's), managed over HTTP: `GET/POST
//! /api/periodic-tasks/` and `GET/PATCH/DELETE /api/periodic-tasks/{id}/`. The
//! `scheduler` binary fires them; this module only validates and stores them.
//!
//! Writes are signed like every write (DELETE signs its body, usually empty). A schedule
//! is either an interval (`{"every": 10, "period": "minutes"}`) or a cron expression
//! with a time zone; a new schedule, a changed one or a re-enabled one gets a fresh
//! `next_run_at` (at once for an interval, as django-celery-beat does; the next match
//! for cron). Bad input is a 400 naming the field, nested for `interval`.

use actix_web::{web, HttpResponse};
use chrono::Utc;
use contracts::tasks;
use db::periodic::{PeriodicFields, PeriodicTask, Schedule, PERIODS};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use crate::{
    access::ReadAccess,
    auth::{Scope, WritePolicy},
    body::{SignedDelete, SignedJson, SMALL_BODY_BYTES},
    errors::{push, ApiError, BadRequestBody, ErrorBody, FieldErrors},
    fallback::resource,
    rfc3339,
    state::AppState,
};

/// Tasks a schedule may fire: those whose arguments are known ahead (the others take log
/// entries or detections that exist only when they happen).
pub const SCHEDULABLE: [&str; 2] = [tasks::DETECT_ANOMALY_PATTERNS, tasks::CLEANUP_OLD_RESULTS];

const MAX_NAME_CHARS: usize = 200;

/// Registers the periodic-task routes: reads need `read`; every write (POST, PATCH,
/// DELETE) needs `operate` and a request-bound signature.
pub fn configure(cfg: &mut web::ServiceConfig) {
    const WRITE: WritePolicy = WritePolicy::bound(&[Scope::Operate], SMALL_BODY_BYTES);
    cfg.service(
        resource("/api/periodic-tasks/")
            .app_data(WRITE)
            .route(web::get().to(list_periodic_tasks))
            .route(web::post().to(create_periodic_task)),
    )
    .service(
        resource("/api/periodic-tasks/{id}/")
            .app_data(WRITE)
            .route(web::get().to(get_periodic_task))
            .route(web::patch().to(update_periodic_task))
            .route(web::delete().to(delete_periodic_task)),
    );
}

/// An interval schedule.
#[derive(Deserialize, Serialize, ToSchema)]
pub struct IntervalIn {
    /// Number of periods, at least 1.
    #[schema(example = 6)]
    every: i64,
    /// `seconds`, `minutes`, `hours` or `days`.
    #[schema(example = "hours")]
    period: String,
}

/// A task's `args`: a list (`[hours]`, `[]`) or an object (`{"time_window_hours": 24}`,
/// the clean-up's ages in days).
fn args_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
    Schema::OneOf(
        OneOfBuilder::new()
            .item(ArrayBuilder::new())
            .item(ObjectBuilder::new().schema_type(Type::Object))
            .build(),
    )
}

/// A periodic task to create; on PATCH every field is optional.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // documents the contract; bodies are validated field by field
pub struct PeriodicTaskIn {
    /// Unique name.
    #[schema(example = "Pattern Analysis - 6 hourly")]
    name: String,
    /// `logs.tasks.detect_anomaly_patterns` or `logs.tasks.cleanup_old_results`.
    #[schema(example = "logs.tasks.detect_anomaly_patterns")]
    task: String,
    /// Task arguments: `[hours]` for pattern analysis; `[]` or ages in days
    /// (`task_days`, `entry_days`, `anomaly_days`, `detection_days`, `alert_days`) for
    /// the clean-up. Default `[]`.
    #[schema(schema_with = args_schema, example = json!([24]))]
    args: Option<Value>,
    /// Either this ...
    interval: Option<IntervalIn>,
    /// ... or a cron expression (5 fields, or 6 with seconds first, or `@daily` & co).
    #[schema(example = "30 2 * * *")]
    cron: Option<String>,
    /// IANA time zone of the cron expression; default `UTC`.
    timezone: Option<String>,
    /// Default true.
    enabled: Option<bool>,
}

/// A stored periodic task.
#[derive(Serialize, ToSchema)]
pub struct PeriodicTaskOut {
    id: i64,
    name: String,
    task: String,
    /// As sent ([`PeriodicTaskIn`]), or `[]` by default.
    #[schema(schema_with = args_schema)]
    args: Value,
    interval: Option<IntervalIn>,
    cron: Option<String>,
    timezone: String,
    enabled: bool,
    last_run_at: Option<String>,
    /// When the scheduler fires it next (null while disabled and never scheduled).
    next_run_at: Option<String>,
    total_run_count: i64,
    created_at: String,
    updated_at: String,
}

impl From<PeriodicTask> for PeriodicTaskOut {
    fn from(t: PeriodicTask) -> Self {
        let interval = match (t.interval_every, t.interval_period) {
            (Some(every), Some(period)) => Some(IntervalIn {
                every: i64::from(every),
                period,
            }),
            _ => None,
        };
        Self {
            id: t.id,
            name: t.name,
            task: t.task,
            args: t.args,
            interval,
            cron: t.cron,
            timezone: t.timezone,
            enabled: t.enabled,
            last_run_at: t.last_run_at.map(rfc3339::format),
            next_run_at: t.next_run_at.map(rfc3339::format),
            total_run_count: t.total_run_count,
            created_at: rfc3339::format(t.created_at),
            updated_at: rfc3339::format(t.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct PeriodicTaskPage {
    results: Vec<PeriodicTaskOut>,
}

fn nested(errors: &mut FieldErrors, field: &str, inner: &str, message: impl Into<String>) {
    let entry = errors
        .entry(field.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(map) = entry {
        map.insert(inner.to_owned(), json!([message.into()]));
    }
}

/// Validates `body` over `current` (None on create) and returns the fields to store.
/// `now` seeds `next_run_at` when the schedule is new, changed or re-enabled.
fn validate(
    body: &Value,
    current: Option<&PeriodicTask>,
    now: chrono::DateTime<Utc>,
) -> Result<PeriodicFields, ApiError> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::BadRequest(
            "Invalid data. Expected a dictionary.".into(),
        ));
    };
    let mut errors = FieldErrors::new();
    let mut fields = match current {
        Some(row) => PeriodicFields::from(row),
        None => PeriodicFields {
            name: String::new(),
            task: String::new(),
            args: json!([]),
            interval_every: None,
            interval_period: None,
            cron: None,
            timezone: "UTC".into(),
            enabled: true,
            next_run_at: None,
        },
    };
    let creating = current.is_none();
    let mut reschedule = creating;

    match obj.get("name") {
        None if creating => push(&mut errors, "name", "This field is required."),
        None => {}
        Some(Value::String(s)) if s.trim().is_empty() => {
            push(&mut errors, "name", "This field may not be blank.")
        }
        Some(Value::String(s)) if s.chars().count() > MAX_NAME_CHARS => push(
            &mut errors,
            "name",
            format!("Ensure this field has no more than {MAX_NAME_CHARS} characters."),
        ),
        Some(Value::String(s)) => fields.name = s.trim().to_owned(),
        Some(_) => push(&mut errors, "name", "Not a valid string."),
    }
    match obj.get("task") {
        None if creating => push(&mut errors, "task", "This field is required."),
        None => {}
        Some(Value::String(s)) if SCHEDULABLE.contains(&s.as_str()) => fields.task = s.clone(),
        Some(Value::String(s)) if tasks::ALL.contains(&s.as_str()) => push(
            &mut errors,
            "task",
            format!(
                "\"{s}\" cannot be scheduled: its arguments exist only when it happens. Schedulable: {}.",
                SCHEDULABLE.join(", ")
            ),
        ),
        Some(other) => push(
            &mut errors,
            "task",
            format!(
                "{other} is not a valid choice; use one of {}.",
                SCHEDULABLE.join(", ")
            ),
        ),
    }
    match obj.get("args") {
        None => {}
        // The default, as on creation: a PATCH to null stored a null the task's reader and
        // the documented list-or-object shape do not expect.
        Some(Value::Null) => fields.args = json!([]),
        Some(args) => fields.args = args.clone(),
    }
    if let Some(enabled) = obj.get("enabled") {
        match enabled {
            Value::Bool(b) => {
                if *b && !fields.enabled {
                    reschedule = true;
                }
                fields.enabled = *b;
            }
            _ => push(&mut errors, "enabled", "Must be a valid boolean."),
        }
    }

    // The schedule: interval xor cron, with its time zone.
    if let Some(interval) = obj.get("interval") {
        reschedule = true;
        match interval {
            Value::Null => {
                fields.interval_every = None;
                fields.interval_period = None;
            }
            Value::Object(map) => {
                let every = match map.get("every") {
                    None => {
                        nested(&mut errors, "interval", "every", "This field is required.");
                        None
                    }
                    Some(v) => match v.as_i64() {
                        Some(n) if n >= 1 && n <= i64::from(i32::MAX) => Some(n),
                        Some(_) => {
                            nested(
                                &mut errors,
                                "interval",
                                "every",
                                "Ensure this value is greater than or equal to 1.",
                            );
                            None
                        }
                        None => {
                            nested(&mut errors, "interval", "every", "A valid integer is required.");
                            None
                        }
                    },
                };
                let period = match map.get("period").and_then(Value::as_str) {
                    Some(p) if PERIODS.contains(&p) => Some(p.to_owned()),
                    Some(p) => {
                        nested(
                            &mut errors,
                            "interval",
                            "period",
                            format!("\"{p}\" is not a valid choice; use one of {}.", PERIODS.join(", ")),
                        );
                        None
                    }
                    None => {
                        nested(&mut errors, "interval", "period", "This field is required.");
                        None
                    }
                };
                if let (Some(every), Some(period)) = (every, period) {
                    match Schedule::interval(every, &period) {
                        Ok(_) => {
                            fields.interval_every = i32::try_from(every).ok();
                            fields.interval_period = Some(period);
                        }
                        Err(e) => nested(&mut errors, "interval", e.field, e.message),
                    }
                }
            }
            _ => push(
                &mut errors,
                "interval",
                "Expected {\"every\": <int>, \"period\": \"seconds\"|\"minutes\"|\"hours\"|\"days\"} or null.",
            ),
        }
    }
    if let Some(cron) = obj.get("cron") {
        reschedule = true;
        match cron {
            Value::Null => fields.cron = None,
            Value::String(s) => fields.cron = Some(s.trim().to_owned()),
            _ => push(&mut errors, "cron", "Not a valid string."),
        }
    }
    if let Some(tz) = obj.get("timezone") {
        reschedule = true;
        match tz {
            Value::String(s) => fields.timezone = s.trim().to_owned(),
            _ => push(&mut errors, "timezone", "Not a valid string."),
        }
    }
    if !errors.contains_key("interval") && !errors.contains_key("cron") {
        match (fields.interval_every.is_some(), fields.cron.is_some()) {
            (true, true) => push(
                &mut errors,
                "cron",
                "Set either an interval or a cron expression, not both.",
            ),
            (false, false) => push(
                &mut errors,
                "interval",
                "Set either an interval or a cron expression.",
            ),
            _ => {}
        }
    }
    let schedule = match (
        &fields.interval_every,
        &fields.interval_period,
        &fields.cron,
    ) {
        (Some(every), Some(period), None) => Schedule::interval(i64::from(*every), period).ok(),
        (None, None, Some(cron)) if !errors.contains_key("cron") => {
            match Schedule::cron(cron, &fields.timezone) {
                Ok(s) => Some(s),
                Err(e) => {
                    push(&mut errors, e.field, e.message);
                    None
                }
            }
        }
        _ => None,
    };
    if fields.cron.is_none() && !errors.contains_key("timezone") {
        // The zone only matters to cron, but a stored one must still be valid.
        if let Err(e) = db::periodic::check_timezone(&fields.timezone) {
            push(&mut errors, e.field, e.message);
        }
    }
    if !errors.contains_key("task") && !errors.contains_key("args") {
        if let Err((field, message)) = check_args(&fields.task, &fields.args) {
            push(&mut errors, &field, message);
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    if reschedule {
        fields.next_run_at = schedule.map(|s| s.first_due(now));
    }
    Ok(fields)
}

/// The args of each schedulable task, as its worker reads them.
fn check_args(task: &str, args: &Value) -> Result<(), (String, String)> {
    match task {
        tasks::DETECT_ANOMALY_PATTERNS => {
            let hours = match args {
                Value::Array(items) if items.len() <= 1 => items.first(),
                Value::Object(map) => map.get("time_window_hours"),
                _ => {
                    return Err((
                        "args".into(),
                        "Expected [hours] or {\"time_window_hours\": hours}.".into(),
                    ))
                }
            };
            match hours {
                None => Ok(()),
                Some(h) if h.as_u64().is_some_and(|h| (1..=720).contains(&h)) => Ok(()),
                Some(_) => Err((
                    "args".into(),
                    "The time window must be a whole number of hours from 1 to 720.".into(),
                )),
            }
        }
        tasks::CLEANUP_OLD_RESULTS => db::retention::RetentionPolicy::from_args(args)
            .map(|_| ())
            .map_err(|(key, message)| {
                let field = if key == "args" {
                    key
                } else {
                    format!("args.{key}")
                };
                ("args".into(), format!("{field}: {message}"))
            }),
        _ => Ok(()),
    }
}

fn not_found() -> ApiError {
    ApiError::NotFound("No periodic task with this id.".into())
}

fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| not_found())
}

fn name_taken() -> ApiError {
    ApiError::field("name", "periodic task with this name already exists.")
}

/// Periodic tasks, oldest first.
#[utoipa::path(get, path = "/api/periodic-tasks/", tag = "crate::periodic",
    responses((status = 200, body = PeriodicTaskPage)))]
pub async fn list_periodic_tasks(
    _: ReadAccess,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let rows = state.read_db.run(db::periodic::list).await?;
    Ok(HttpResponse::Ok().json(PeriodicTaskPage {
        results: rows.into_iter().map(Into::into).collect(),
    }))
}

/// Create a periodic task; the scheduler fires it from its `next_run_at` on.
#[utoipa::path(post, path = "/api/periodic-tasks/", tag = "crate::periodic", request_body = PeriodicTaskIn,
    responses((status = 201, body = PeriodicTaskOut), (status = 400, body = BadRequestBody),
        (status = 401, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("hmac" = ["operate"])))]
pub async fn create_periodic_task(
    SignedJson(body): SignedJson,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let fields = validate(&body, None, Utc::now())?;
    let stored = state
        .db
        .run(move |c| {
            if db::periodic::name_taken(c, &fields.name, None)? {
                return Ok(None);
            }
            db::periodic::insert(c, &fields).map(Some)
        })
        .await;
    match stored {
        Ok(Some(row)) => {
            tracing::info!(periodic_task_id = row.id, name = %row.name, task = %row.task, "Periodic task created.");
            Ok(HttpResponse::Created().json(PeriodicTaskOut::from(row)))
        }
        Ok(None) => Err(name_taken()),
        Err(e) if db::periodic::is_name_conflict(&e) => Err(name_taken()),
        Err(e) => Err(e.into()),
    }
}

/// One periodic task.
#[utoipa::path(get, path = "/api/periodic-tasks/{id}/", tag = "crate::periodic", params(("id" = i64, Path)),
    responses((status = 200, body = PeriodicTaskOut), (status = 404, body = ErrorBody)))]
pub async fn get_periodic_task(
    _: ReadAccess,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let row = state
        .read_db
        .run(move |c| db::periodic::get(c, id))
        .await?
        .ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(PeriodicTaskOut::from(row)))
}

/// Change some fields of a periodic task (enable, disable, reschedule, rename, ...).
#[utoipa::path(patch, path = "/api/periodic-tasks/{id}/", tag = "crate::periodic", params(("id" = i64, Path)),
    request_body = PeriodicTaskIn,
    responses((status = 200, body = PeriodicTaskOut), (status = 400, body = BadRequestBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("hmac" = ["operate"])))]
pub async fn update_periodic_task(
    SignedJson(body): SignedJson,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let now = Utc::now();
    let updated = state
        .db
        .run(move |c| {
            // Validated against the row as it is under lock, so concurrent PATCHes merge;
            // a rename onto a taken name is refused by the unique index.
            db::periodic::update_with(c, id, |current| validate(&body, Some(current), now))
        })
        .await;
    match updated {
        Ok(None) => Err(not_found()),
        Ok(Some(Err(e))) => Err(e),
        Ok(Some(Ok(row))) => {
            tracing::info!(periodic_task_id = row.id, name = %row.name, enabled = row.enabled, "Periodic task updated.");
            Ok(HttpResponse::Ok().json(PeriodicTaskOut::from(row)))
        }
        Err(e) if db::periodic::is_name_conflict(&e) => Err(name_taken()),
        Err(e) => Err(e.into()),
    }
}

/// Delete a periodic task; tasks it already fired are kept.
#[utoipa::path(delete, path = "/api/periodic-tasks/{id}/", tag = "crate::periodic", params(("id" = i64, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("hmac" = ["operate"])))]
pub async fn delete_periodic_task(
    _: SignedDelete,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    if state.db.run(move |c| db::periodic::delete(c, id)).await? {
        tracing::info!(periodic_task_id = id, "Periodic task deleted.");
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(not_found())
    }
}
