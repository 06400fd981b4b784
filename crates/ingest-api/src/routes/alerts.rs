//! `GET /api/alerts/`: the alerts the notifier recorded, newest first, with their delivery
//! state per channel (pending, sent, failed, suppressed by the cooldown), attempts and
//! last error.

use actix_web::{web, HttpResponse};
use db::alerts::{Alert, ListFilter};
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

/// Kinds of alert the notifier records.
const KINDS: [&str; 2] = ["critical_anomaly", "pattern"];

/// Registers the alerts route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/alerts/").route(web::get().to(list_alerts)));
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// `pending`, `sent`, `failed` or `suppressed`.
    status: Option<String>,
    /// `critical_anomaly` or `pattern`.
    kind: Option<String>,
    /// `email`, a webhook channel as listed (`webhook:<host>#<id>`), or `webhook:` for all
    /// webhooks.
    channel: Option<String>,
    /// RFC 3339; alerts recorded at or after.
    since: Option<String>,
    /// Page size, 1 to 1 000 (default 100).
    limit: Option<String>,
    /// The `next` value of the previous page.
    cursor: Option<String>,
}

/// One alert on one channel.
#[derive(Serialize, ToSchema)]
pub struct AlertOut {
    id: i64,
    /// `critical_anomaly` or `pattern`.
    kind: String,
    /// `email`, `webhook:<host>#<id>` or `none` (no channel configured).
    channel: String,
    /// `pending`, `sent`, `failed` or `suppressed`.
    status: String,
    /// Delivery attempts made.
    attempts: i32,
    /// Error of the last failed attempt, or why it was not sent.
    last_error: Option<String>,
    /// Alerts with the same key on the same channel inside the cooldown are suppressed.
    dedup_key: String,
    title: Option<String>,
    severity: Option<String>,
    summary: Option<String>,
    /// The alert sent earlier that suppressed this one.
    suppressed_by: Option<i64>,
    log_entry_id: Option<i64>,
    pattern_detection_id: Option<i64>,
    /// The notification task (see `/api/task-status/{task_id}/`).
    task_id: Option<String>,
    created_at: String,
    sent_at: Option<String>,
    /// Everything the message said about this alert.
    #[schema(value_type = Object)]
    payload: serde_json::Value,
}

impl From<Alert> for AlertOut {
    fn from(a: Alert) -> Self {
        let text = |k: &str| a.payload.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        Self {
            title: text("title"),
            severity: text("severity"),
            summary: text("summary"),
            suppressed_by: a.payload.get("suppressed_by").and_then(|v| v.as_i64()),
            id: a.id,
            kind: a.kind,
            channel: a.channel,
            status: a.status,
            attempts: a.attempts,
            last_error: a.last_error,
            dedup_key: a.dedup_key,
            log_entry_id: a.log_entry_id,
            pattern_detection_id: a.pattern_detection_id,
            task_id: a.task_id.map(|t| t.to_string()),
            created_at: rfc3339::format(a.created_at),
            sent_at: a.sent_at.map(rfc3339::format),
            payload: a.payload,
        }
    }
}

/// The bytes of an alert's large fields, for the page budget.
fn alert_bytes(a: &Alert) -> usize {
    a.payload.to_string().len() + a.last_error.as_ref().map_or(0, String::len) + a.dedup_key.len()
}

#[derive(Serialize, ToSchema)]
pub struct AlertPage {
    results: Vec<AlertOut>,
    /// Cursor of the next page, or null on the last one.
    next: Option<String>,
}

/// Recent alerts and their delivery state, newest first, with filters and keyset
/// pagination.
#[utoipa::path(get, path = "/api/alerts/", tag = "crate::alerts", params(AlertsQuery),
    responses((status = 200, body = AlertPage), (status = 400, body = BadRequestBody)))]
pub async fn list_alerts(
    _: ReadAccess,
    query: web::Query<AlertsQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let mut check = QueryCheck::new();
    let status = check.choice("status", query.status, &db::alerts::status::ALL);
    let kind = check.choice("kind", query.kind, &KINDS);
    let channel = query.channel.filter(|s| !s.is_empty());
    let since = check.time("since", query.since.as_deref());
    let limit = check.limit(query.limit.as_deref());
    let before_id = check.cursor(query.cursor.as_deref(), pagination::decode_id);
    check.finish()?;
    let filter = ListFilter {
        status,
        kind,
        channel,
        since,
        before_id,
        limit: limit + 1,
    };
    let mut rows = state
        .read_db
        .run(move |c| db::alerts::list(c, &filter))
        .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let fit = pagination::fitting(&rows, pagination::MAX_PAGE_BYTES, alert_bytes);
    let next = if more || fit < rows.len() {
        rows.truncate(fit);
        rows.last().map(|a| a.id.to_string())
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(AlertPage {
        results: rows.into_iter().map(Into::into).collect(),
        next,
    }))
}
