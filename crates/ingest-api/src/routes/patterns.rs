//! `GET /api/patterns/`: the patterns found by the periodic analysis
//! (`logs.tasks.detect_anomaly_patterns`) and the real-time worker, newest first.

use actix_web::{web, HttpResponse};
use db::patterns::{PatternDetection, PatternFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    access::ReadAccess,
    errors::{ApiError, BadRequestBody},
    fallback::resource,
    pagination,
    query::QueryCheck,
    rfc3339,
    state::AppState,
};

/// The kinds of pattern, as stored.
const KINDS: [&str; 4] = [
    "anomaly_cluster",
    "error_spike",
    "low_activity",
    "severity_shift",
];

/// Registers the pattern routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/patterns/").route(web::get().to(list_patterns)));
}

/// One detected pattern.
#[derive(Serialize, ToSchema)]
pub struct PatternOut {
    id: i64,
    /// `anomaly_cluster`, `error_spike`, `low_activity` or `severity_shift`.
    kind: String,
    /// The source the pattern concerns; empty for every source (clusters) or entries
    /// without one.
    source: String,
    /// `WARNING` or `CRITICAL`.
    severity: String,
    window_start: String,
    window_end: String,
    /// The numbers that justify the detection, with a `summary` in words.
    #[schema(value_type = Object)]
    details: serde_json::Value,
    /// Entries involved (capped).
    log_entry_ids: Vec<i64>,
    /// The analysis task that found it; null for the real-time worker's.
    task_id: Option<String>,
    detected_at: String,
}

impl From<PatternDetection> for PatternOut {
    fn from(p: PatternDetection) -> Self {
        Self {
            id: p.id,
            kind: p.kind,
            source: p.source,
            severity: p.severity,
            window_start: rfc3339::format(p.window_start),
            window_end: rfc3339::format(p.window_end),
            details: p.details,
            log_entry_ids: p.log_entry_ids,
            task_id: p.task_id.map(|t| t.to_string()),
            detected_at: rfc3339::format(p.detected_at),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PatternsQuery {
    /// `anomaly_cluster`, `error_spike`, `low_activity` or `severity_shift`.
    kind: Option<String>,
    /// Exact source.
    source: Option<String>,
    /// `WARNING` or `CRITICAL`.
    severity: Option<String>,
    /// RFC 3339; detections made at or after.
    since: Option<String>,
    /// Page size, 1 to 1 000 (default 100).
    limit: Option<String>,
    /// The `next` value of the previous page.
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PatternPage {
    results: Vec<PatternOut>,
    /// Cursor of the next page, or null on the last one.
    next: Option<String>,
}

/// Detected patterns, newest first, with filters and keyset pagination.
#[utoipa::path(get, path = "/api/patterns/", tag = "patterns", params(PatternsQuery),
    responses((status = 200, body = PatternPage), (status = 400, body = BadRequestBody)))]
pub async fn list_patterns(
    _: ReadAccess,
    query: web::Query<PatternsQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let mut check = QueryCheck::new();
    let kind = check.choice("kind", query.kind, &KINDS);
    let severity = check.choice("severity", query.severity, &["WARNING", "CRITICAL"]);
    let since = check.time("since", query.since.as_deref());
    let limit = check.limit(query.limit.as_deref());
    let before_id = check.cursor(query.cursor.as_deref(), pagination::decode_id);
    check.finish()?;
    let filter = PatternFilter {
        kind,
        source: query.source,
        severity,
        since,
        before_id,
        limit,
    };
    let mut rows = state
        .read_db
        .run(move |c| db::patterns::list(c, &filter))
        .await?;
    let full = rows.len() as i64 == limit;
    // An id is at most 20 digits and a comma in the answer.
    let fit = pagination::fitting(&rows, pagination::MAX_PAGE_BYTES, |p| {
        p.details.to_string().len() + 21 * p.log_entry_ids.len()
    });
    let next = if full || fit < rows.len() {
        rows.truncate(fit);
        rows.last().map(|p| p.id.to_string())
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(PatternPage {
        results: rows.into_iter().map(Into::into).collect(),
        next,
    }))
}
