//! Analyses queued on request: `POST /api/batch-analysis/` (stores up to 10 000 signed
//! entries, one batch task over them), `POST /api/pattern-analysis/` (a pattern analysis
//! over a time window) and `POST /api/real-time-analysis/` (low-latency analysis of
//! stored entries).

use actix_web::{web, HttpResponse};
use contracts::{tasks, v1};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    auth::{Scope, WritePolicy},
    body::{SignedJson, IDS_BODY_BYTES, SMALL_BODY_BYTES},
    errors::{ApiError, BadRequestBody, ErrorBody},
    fallback::resource,
    ingest::{new_task, MessagesFor, Submission},
    routes::entries::LogEntryIn,
    state::AppState,
    validation,
};

/// Registers the analysis routes, all three the old API's: a batch needs `ingest` (and
/// may be as large as `LOGCANARY_MAX_BODY_BYTES`); triggering an analysis of what is
/// stored needs `ingest` (the old clients' keys) or `operate`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    const TRIGGER: &[Scope] = &[Scope::Ingest, Scope::Operate];
    cfg.service(
        resource("/api/batch-analysis/")
            .app_data(WritePolicy::old_api(&[Scope::Ingest], None))
            .route(web::post().to(batch_analysis)),
    )
    .service(
        resource("/api/pattern-analysis/")
            .app_data(WritePolicy::old_api(TRIGGER, Some(SMALL_BODY_BYTES)))
            .route(web::post().to(pattern_analysis)),
    )
    .service(
        resource("/api/real-time-analysis/")
            .app_data(WritePolicy::old_api(TRIGGER, Some(IDS_BODY_BYTES)))
            .route(web::post().to(real_time_analysis)),
    );
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
#[utoipa::path(post, path = "/api/batch-analysis/", tag = "routes", request_body = BatchIn,
    responses((status = 202, body = BatchAccepted), (status = 400, body = BadRequestBody),
        (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("hmac" = ["ingest"])))]
pub async fn batch_analysis(
    SignedJson(value): SignedJson,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
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
#[utoipa::path(post, path = "/api/pattern-analysis/", tag = "routes", request_body = PatternAnalysisIn,
    responses((status = 202, body = PatternAnalysisAccepted), (status = 400, body = BadRequestBody), (status = 401, body = ErrorBody)),
    security(("hmac" = ["ingest", "operate"])))]
pub async fn pattern_analysis(
    SignedJson(value): SignedJson,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let hours = validation::time_window_hours(&value)?;
    let task_id = Uuid::new_v4();
    state
        .ingestor
        .submit(Submission::one_task(
            new_task(task_id, tasks::DETECT_ANOMALY_PATTERNS, json!([hours])),
            vec![],
            MessagesFor::Ready(vec![contracts::Task::DetectAnomalyPatterns(
                v1::DetectAnomalyPatterns {
                    task_id: task_id.to_string(),
                    time_window_hours: hours,
                },
            )]),
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
#[utoipa::path(post, path = "/api/real-time-analysis/", tag = "routes", request_body = RealTimeIn,
    responses((status = 202, body = RealTimeAccepted), (status = 400, body = BadRequestBody), (status = 401, body = ErrorBody)),
    security(("hmac" = ["ingest", "operate"])))]
pub async fn real_time_analysis(
    SignedJson(value): SignedJson,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
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
            MessagesFor::Ready(vec![contracts::Task::AnalyzeRealTimeStream(
                v1::AnalyzeRealTimeStream {
                    task_id: task_id.to_string(),
                    log_entry_ids: ids.clone(),
                },
            )]),
        ))
        .await?;
    Ok(HttpResponse::Accepted().json(RealTimeAccepted {
        message: format!("Real-time analysis started for {} log entries", ids.len()),
        task_id: task_id.to_string(),
        log_entry_ids: ids,
    }))
}
