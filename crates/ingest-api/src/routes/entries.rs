//! Log entries: `POST /api/logs/` stores one signed entry and queues its analysis;
//! `GET /api/logs/` lists entries newest first (filters, keyset pagination) and
//! `GET /api/logs/{id}/` shows one with its analysis.

use actix_web::{web, HttpResponse};
use contracts::tasks;
use db::models::LogEntry;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    access::ReadAccess,
    auth::{Scope, WritePolicy},
    body::{SignedJson, ENTRY_BODY_BYTES},
    errors::{ApiError, BadRequestBody, ErrorBody},
    fallback::resource,
    ingest::{new_task, MessagesFor, Submission},
    pagination,
    query::QueryCheck,
    rfc3339,
    state::AppState,
    validation,
};

/// Registers the log entry routes. `POST /api/logs/` is the old API's: a key with
/// `ingest`, any signature form the settings allow, one entry's worth of body. The GETs
/// need `read` ([`ReadAccess`]).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/api/logs/")
            .app_data(WritePolicy::old_api(
                &[Scope::Ingest],
                Some(ENTRY_BODY_BYTES),
            ))
            .route(web::post().to(create_log))
            .route(web::get().to(list_logs)),
    )
    .service(resource("/api/logs/{id}/").route(web::get().to(get_log)));
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
#[utoipa::path(post, path = "/api/logs/", tag = "routes", request_body = LogEntryIn,
    responses((status = 201, body = LogEntryCreated), (status = 400, body = BadRequestBody),
        (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("hmac" = ["ingest"])))]
pub async fn create_log(
    SignedJson(value): SignedJson,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let entry = validation::entry(&value)?;
    let task_id = Uuid::new_v4();
    let created = LogEntryCreated {
        id: 0,
        timestamp: rfc3339::format(entry.timestamp),
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
    /// What a log shipper sent beside the line (OTLP resource and record attributes, Loki
    /// labels, the other fields of an Elasticsearch document); only on `GET
    /// /api/logs/{id}/`, and only for entries that have some.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    attributes: Option<serde_json::Value>,
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
        timestamp: rfc3339::format(e.logged_at),
        received_at: rfc3339::format(e.received_at),
        severity: e.severity,
        message: e.message,
        source: e.source,
        anomaly_score: e.anomaly_score,
        is_anomaly: e.is_anomaly,
        summary: e.summary,
        template_id: e.template_id,
        analysis_task_id: e.analysis_task_id.map(|t| t.to_string()),
        status: status.into(),
        attributes: None,
    }
}

/// One entry with its analysis.
#[utoipa::path(get, path = "/api/logs/{id}/", tag = "routes", params(("id" = i64, Path)),
    responses((status = 200, body = LogEntryOut), (status = 404, body = ErrorBody)))]
pub async fn get_log(
    _: ReadAccess,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::NotFound("No log entry with this id.".into());
    let id: i64 = path.parse().map_err(|_| not_found())?;
    let (entry, status, attributes) = state
        .read_db
        .run(move |c| {
            let Some((entry, status)) = db::entries::get_with_status(c, id)? else {
                return Ok(None);
            };
            Ok(Some((entry, status, db::entries::attributes(c, id)?)))
        })
        .await?
        .ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(LogEntryOut {
        attributes,
        ..entry_out(entry, status.as_deref())
    }))
}

/// Longest time range (`since` to `until`, or to now) of a text search (`q`).
pub const MAX_SEARCH_DAYS: i64 = 7;

/// The 400 of a text search without a bounded time range.
pub const SEARCH_RANGE_MESSAGE: &str = "A text search needs a time range of at most 7 days: give since (and until, default now) no more than 7 days apart with q.";

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
    /// Substring of the message. Only with `since`, at most 7 days before `until` (or now).
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
///
/// A page holds at most 4 MiB of message text: past that it ends early, and `next` goes on
/// from its last entry.
#[utoipa::path(get, path = "/api/logs/", tag = "routes", params(ListQuery),
    responses((status = 200, body = LogPage), (status = 400, body = BadRequestBody)))]
pub async fn list_logs(
    _: ReadAccess,
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let mut check = QueryCheck::new();
    let severity = check.choice("severity", query.severity, &validation::SEVERITIES);
    let is_anomaly = match query.is_anomaly.as_deref() {
        None | Some("") => None,
        Some("true") | Some("True") | Some("1") => Some(true),
        Some("false") | Some("False") | Some("0") => Some(false),
        Some(other) => {
            check.fail("is_anomaly", format!("\"{other}\" is not a valid boolean."));
            None
        }
    };
    let since = check.time("since", query.since.as_deref());
    let until = check.time("until", query.until.as_deref());
    let limit = check.limit(query.limit.as_deref());
    let before = check.cursor(query.cursor.as_deref(), pagination::decode_time_id);
    let contains = query.q.filter(|s| !s.is_empty());
    // The text search scans every message in its range (no index serves a substring), so
    // it needs a bounded one. An unreadable `since` already has its own message.
    let since_unreadable = since.is_none() && query.since.as_deref().is_some_and(|s| !s.is_empty());
    if contains.is_some() && !since_unreadable {
        let within = since.is_some_and(|since| {
            until.unwrap_or_else(chrono::Utc::now) - since
                <= chrono::Duration::days(MAX_SEARCH_DAYS)
        });
        if !within {
            check.fail("q", SEARCH_RANGE_MESSAGE);
        }
    }
    check.finish()?;
    let filter = db::entries::ListFilter {
        severity,
        is_anomaly,
        since,
        until,
        contains,
        before,
        limit,
    };
    let mut rows = state
        .read_db
        .run(move |c| db::entries::list(c, &filter))
        .await?;
    let full = rows.len() as i64 == limit;
    let fit = pagination::fitting(&rows, pagination::MAX_PAGE_BYTES, |e| e.message.len());
    let next = if full || fit < rows.len() {
        rows.truncate(fit);
        rows.last()
            .map(|e| pagination::encode_time_id(e.logged_at, e.id))
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(LogPage {
        results: rows.into_iter().map(|e| entry_out(e, None)).collect(),
        next,
    }))
}
