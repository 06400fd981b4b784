//! The HTTP API of API.md, route by route.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, SecondsFormat, Utc};
use contracts::{tasks, v1};
use db::models::LogEntry;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    body::{check_read_access, signed_json},
    errors::ApiError,
    ingest::{new_task, MessagesFor, Outgoing, Submission},
    startup::AppState,
    validation,
};

/// Registers every API route. Each resource answers other methods with a JSON 405.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/api/logs/")
            .route(web::post().to(create_log))
            .route(web::get().to(list_logs)),
    )
    .service(resource("/api/logs/{id}/").route(web::get().to(get_log)))
    .service(resource("/api/batch-analysis/").route(web::post().to(batch_analysis)))
    .service(resource("/api/pattern-analysis/").route(web::post().to(pattern_analysis)))
    .service(resource("/api/real-time-analysis/").route(web::post().to(real_time_analysis)))
    .service(resource("/api/dashboard/").route(web::get().to(dashboard)))
    .service(resource("/api/task-status/{task_id}/").route(web::get().to(task_status)))
    .service(resource("/api/openapi.json").route(web::get().to(openapi)))
    .configure(crate::templates::configure)
    .configure(crate::review::configure)
    .configure(crate::alerts::configure)
    .configure(crate::periodic::configure)
    .configure(crate::patterns::configure)
    .configure(crate::web::configure);
}

pub(crate) fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(|req: HttpRequest| async move {
        HttpResponse::MethodNotAllowed()
            .json(json!({"detail": format!("Method \"{}\" not allowed.", req.method())}))
    }))
}

pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A log entry as clients send it.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // documents the contract; bodies are validated field by field
pub struct LogEntryIn {
    /// RFC 3339 time the line was logged.
    #[schema(example = "2024-01-15T10:30:00Z")]
    timestamp: String,
    #[schema(example = "ERROR")]
    severity: Severity,
    #[schema(example = "Database connection failed after 3 retries")]
    message: String,
    /// Where the line came from (host, service); used to group patterns.
    source: Option<String>,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[allow(clippy::upper_case_acronyms)]
pub enum Severity {
    DEBUG,
    INFO,
    WARNING,
    ERROR,
    CRITICAL,
}

#[derive(Serialize, ToSchema)]
pub struct LogEntryCreated {
    id: i64,
    timestamp: String,
    severity: String,
    message: String,
    source: Option<String>,
    analysis_task_id: String,
    /// Always `processing`: analysis happens asynchronously.
    status: String,
}

/// Store one entry and queue its analysis.
#[utoipa::path(post, path = "/api/logs/", request_body = LogEntryIn,
    responses((status = 201, body = LogEntryCreated), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("hmac" = [])))]
pub async fn create_log(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let value = signed_json(&req, payload, &state).await?;
    let entry = validation::entry(&value)?;
    let task_id = Uuid::new_v4();
    let created = LogEntryCreated {
        id: 0,
        timestamp: rfc3339(entry.timestamp),
        severity: entry.severity.clone(),
        message: entry.message.clone(),
        source: entry.source.clone(),
        analysis_task_id: task_id.to_string(),
        status: "processing".into(),
    };
    let committed = state
        .ingestor
        .submit(Submission::one_task(
            new_task(task_id, tasks::ANALYZE_LOG_ENTRY, json!({})),
            vec![entry.into()],
            MessagesFor::EachEntry,
        ))
        .await?;
    let id = committed
        .entry_ids
        .first()
        .copied()
        .ok_or_else(|| ApiError::Internal("insert returned no id".into()))?;
    Ok(HttpResponse::Created().json(LogEntryCreated { id, ..created }))
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct BatchIn {
    /// 1 to 10 000 entries.
    log_entries: Vec<LogEntryIn>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchAccepted {
    message: String,
    task_id: String,
    count: usize,
    log_entry_ids: Vec<i64>,
}

/// Store up to 10 000 entries and queue one batch analysis over them.
#[utoipa::path(post, path = "/api/batch-analysis/", request_body = BatchIn,
    responses((status = 202, body = BatchAccepted), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("hmac" = [])))]
pub async fn batch_analysis(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let value = signed_json(&req, payload, &state).await?;
    let entries = validation::batch(&value)?;
    let task_id = Uuid::new_v4();
    let count = entries.len();
    let committed = state
        .ingestor
        .submit(Submission::one_task(
            new_task(task_id, tasks::BATCH_ANALYZE_LOGS, json!({"count": count})),
            entries.into_iter().map(Into::into).collect(),
            MessagesFor::Batch { task_id },
        ))
        .await?;
    Ok(HttpResponse::Accepted().json(BatchAccepted {
        message: format!("Batch analysis started for {count} log entries"),
        task_id: task_id.to_string(),
        count,
        log_entry_ids: committed.entry_ids,
    }))
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct PatternAnalysisIn {
    /// Hours to look back, 1 to 720 (default 24).
    time_window_hours: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct PatternAnalysisAccepted {
    message: String,
    task_id: String,
    time_window_hours: u32,
}

/// Queue a pattern analysis over the last `time_window_hours`.
#[utoipa::path(post, path = "/api/pattern-analysis/", request_body = PatternAnalysisIn,
    responses((status = 202, body = PatternAnalysisAccepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("hmac" = [])))]
pub async fn pattern_analysis(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let value = signed_json(&req, payload, &state).await?;
    let hours = validation::time_window_hours(&value)?;
    let task_id = Uuid::new_v4();
    state
        .ingestor
        .submit(Submission::one_task(
            new_task(task_id, tasks::DETECT_ANOMALY_PATTERNS, json!([hours])),
            vec![],
            MessagesFor::Ready(vec![Outgoing::Patterns(v1::DetectAnomalyPatterns {
                task_id: task_id.to_string(),
                time_window_hours: hours,
            })]),
        ))
        .await?;
    Ok(HttpResponse::Accepted().json(PatternAnalysisAccepted {
        message: format!("Pattern analysis started for {hours} hour window"),
        task_id: task_id.to_string(),
        time_window_hours: hours,
    }))
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct RealTimeIn {
    /// Ids of stored entries, 1 to 10 000.
    log_entry_ids: Vec<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct RealTimeAccepted {
    message: String,
    task_id: String,
    log_entry_ids: Vec<i64>,
}

/// Queue low-latency analysis of stored entries.
#[utoipa::path(post, path = "/api/real-time-analysis/", request_body = RealTimeIn,
    responses((status = 202, body = RealTimeAccepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("hmac" = [])))]
pub async fn real_time_analysis(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let value = signed_json(&req, payload, &state).await?;
    let ids = validation::log_entry_ids(&value)?;
    let lookup = ids.clone();
    let existing: std::collections::HashSet<i64> = state
        .db
        .run(move |c| db::entries::existing_ids(c, &lookup))
        .await?
        .into_iter()
        .collect();
    let unknown: Vec<String> = ids
        .iter()
        .filter(|id| !existing.contains(id))
        .map(|id| id.to_string())
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::field(
            "log_entry_ids",
            format!("Unknown log entry ids: {}.", unknown.join(", ")),
        ));
    }
    let task_id = Uuid::new_v4();
    state
        .ingestor
        .submit(Submission::one_task(
            new_task(
                task_id,
                tasks::ANALYZE_REAL_TIME_STREAM,
                json!({"log_entry_ids": ids}),
            ),
            vec![],
            MessagesFor::Ready(vec![Outgoing::RealTime(v1::AnalyzeRealTimeStream {
                task_id: task_id.to_string(),
                log_entry_ids: ids.clone(),
            })]),
        ))
        .await?;
    Ok(HttpResponse::Accepted().json(RealTimeAccepted {
        message: format!("Real-time analysis started for {} log entries", ids.len()),
        task_id: task_id.to_string(),
        log_entry_ids: ids,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct RecentAnomaly {
    id: i64,
    timestamp: String,
    severity: String,
    message: String,
    anomaly_score: Option<f64>,
    summary: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DashboardOut {
    anomalies_last_24h: i64,
    anomalies_last_7d: i64,
    severity_distribution_24h: std::collections::BTreeMap<String, i64>,
    recent_anomalies: Vec<RecentAnomaly>,
    last_updated: String,
}

/// Anomaly counts, the severity mix of the last 24 h and the latest anomalies.
#[utoipa::path(get, path = "/api/dashboard/", responses((status = 200, body = DashboardOut)))]
pub async fn dashboard(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    check_read_access(&req, &state)?;
    let d = state
        .db
        .run(|c| db::dashboard::load(c, Utc::now(), 10))
        .await?;
    Ok(HttpResponse::Ok().json(DashboardOut {
        anomalies_last_24h: d.anomalies_last_24h,
        anomalies_last_7d: d.anomalies_last_7d,
        severity_distribution_24h: d.severity_distribution_24h,
        recent_anomalies: d
            .recent_anomalies
            .into_iter()
            .map(|e| RecentAnomaly {
                id: e.id,
                timestamp: rfc3339(e.logged_at),
                severity: e.severity,
                message: e.message,
                anomaly_score: e.anomaly_score,
                summary: e.summary,
            })
            .collect(),
        last_updated: rfc3339(d.last_updated),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct TaskStatusOut {
    task_id: String,
    /// PENDING, STARTED, RETRY, SUCCESS or FAILURE.
    status: String,
    task_name: String,
    #[schema(value_type = Object)]
    result: Option<serde_json::Value>,
    error: Option<String>,
    attempts: i32,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
}

/// State of a task, Celery-style.
#[utoipa::path(get, path = "/api/task-status/{task_id}/",
    params(("task_id" = String, Path, description = "Task id returned when the task was queued")),
    responses((status = 200, body = TaskStatusOut), (status = 404, body = ErrorBody)))]
pub async fn task_status(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    check_read_access(&req, &state)?;
    let not_found = || ApiError::NotFound("No task with this id.".into());
    let id = Uuid::parse_str(&path).map_err(|_| not_found())?;
    let task = state
        .db
        .run(move |c| db::tasks::get(c, id))
        .await?
        .ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(TaskStatusOut {
        task_id: task.id.to_string(),
        status: task.status,
        task_name: task.task_name,
        result: task.result,
        error: task.error,
        attempts: task.attempts,
        created_at: rfc3339(task.created_at),
        started_at: task.started_at.map(rfc3339),
        finished_at: task.finished_at.map(rfc3339),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct LogEntryOut {
    id: i64,
    timestamp: String,
    received_at: String,
    severity: String,
    message: String,
    source: Option<String>,
    anomaly_score: Option<f64>,
    is_anomaly: Option<bool>,
    summary: Option<String>,
    template_id: Option<i64>,
    analysis_task_id: Option<String>,
    /// `processing`, `analyzed` or `failed`.
    status: String,
}

fn entry_out(e: LogEntry, task_status: Option<&str>) -> LogEntryOut {
    let status = if e.analyzed_at.is_some() {
        "analyzed"
    } else if task_status == Some(db::models::status::FAILURE) {
        "failed"
    } else {
        "processing"
    };
    LogEntryOut {
        id: e.id,
        timestamp: rfc3339(e.logged_at),
        received_at: rfc3339(e.received_at),
        severity: e.severity,
        message: e.message,
        source: e.source,
        anomaly_score: e.anomaly_score,
        is_anomaly: e.is_anomaly,
        summary: e.summary,
        template_id: e.template_id,
        analysis_task_id: e.analysis_task_id.map(|t| t.to_string()),
        status: status.into(),
    }
}

/// One entry with its analysis.
#[utoipa::path(get, path = "/api/logs/{id}/", params(("id" = i64, Path)),
    responses((status = 200, body = LogEntryOut), (status = 404, body = ErrorBody)))]
pub async fn get_log(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    check_read_access(&req, &state)?;
    let not_found = || ApiError::NotFound("No log entry with this id.".into());
    let id: i64 = path.parse().map_err(|_| not_found())?;
    let (entry, status) = state
        .db
        .run(move |c| db::entries::get_with_status(c, id))
        .await?
        .ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(entry_out(entry, status.as_deref())))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// DEBUG, INFO, WARNING, ERROR or CRITICAL.
    severity: Option<String>,
    /// `true` or `false`.
    is_anomaly: Option<String>,
    /// RFC 3339; entries logged at or after.
    since: Option<String>,
    /// RFC 3339; entries logged before.
    until: Option<String>,
    /// Substring of the message.
    q: Option<String>,
    /// Page size, 1 to 1 000 (default 100).
    limit: Option<String>,
    /// The `next` value of the previous page.
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LogPage {
    results: Vec<LogEntryOut>,
    /// Cursor of the next page, or null on the last one.
    next: Option<String>,
}

/// Entries, newest first, with filters and keyset pagination.
#[utoipa::path(get, path = "/api/logs/", params(ListQuery),
    responses((status = 200, body = LogPage), (status = 400, body = ErrorBody)))]
pub async fn list_logs(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    check_read_access(&req, &state)?;
    let query = web::Query::<ListQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(format!("Invalid query string: {e}")))?
        .into_inner();
    let mut errors = crate::errors::FieldErrors::new();
    let mut bad = |field: &str, msg: String| {
        errors.insert(field.to_owned(), json!([msg]));
    };
    let severity = query.severity.filter(|s| !s.is_empty());
    if let Some(s) = &severity {
        if !validation::SEVERITIES.contains(&s.as_str()) {
            bad(
                "severity",
                format!("Select a valid choice. {s} is not one of the available choices."),
            );
        }
    }
    let is_anomaly = match query.is_anomaly.as_deref() {
        None | Some("") => None,
        Some("true") | Some("True") | Some("1") => Some(true),
        Some("false") | Some("False") | Some("0") => Some(false),
        Some(other) => {
            bad("is_anomaly", format!("\"{other}\" is not a valid boolean."));
            None
        }
    };
    let mut time = |field: &str, raw: Option<String>| -> Option<DateTime<Utc>> {
        let raw = raw.filter(|s| !s.is_empty())?;
        match DateTime::parse_from_rfc3339(&raw) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                bad(field, "Enter a valid date/time (RFC 3339).".into());
                None
            }
        }
    };
    let since = time("since", query.since);
    let until = time("until", query.until);
    let limit = match query.limit.as_deref() {
        None | Some("") => 100,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                bad(
                    "limit",
                    "Ensure this value is an integer from 1 to 1000.".into(),
                );
                100
            }
        },
    };
    let before = match query.cursor.as_deref() {
        None | Some("") => None,
        Some(raw) => match decode_cursor(raw) {
            Some(c) => Some(c),
            None => {
                bad("cursor", "Invalid cursor.".into());
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let filter = db::entries::ListFilter {
        severity,
        is_anomaly,
        since,
        until,
        contains: query.q.filter(|s| !s.is_empty()),
        before,
        limit,
    };
    let rows = state.db.run(move |c| db::entries::list(c, &filter)).await?;
    let next = if rows.len() as i64 == limit {
        rows.last().map(|e| encode_cursor(e.logged_at, e.id))
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(LogPage {
        results: rows.into_iter().map(|e| entry_out(e, None)).collect(),
        next,
    }))
}

fn encode_cursor(t: DateTime<Utc>, id: i64) -> String {
    format!("{}_{}", t.timestamp_micros(), id)
}

fn decode_cursor(raw: &str) -> Option<(DateTime<Utc>, i64)> {
    let (micros, id) = raw.split_once('_')?;
    let t = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some((t, id.parse().ok()?))
}

/// Error bodies: `{"detail": "..."}` or per-field lists of messages.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    detail: String,
}

/// This document.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::document())
}
