//! `GET /api/task-status/{task_id}/`: the state of a queued task, Celery-style.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    access::ReadAccess,
    errors::{ApiError, ErrorBody},
    fallback::resource,
    rfc3339,
    state::AppState,
};

/// Registers the task status route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/task-status/{task_id}/").route(web::get().to(task_status)));
}

#[derive(Serialize, ToSchema)]
pub struct TaskStatusOut {
    task_id: String,
    /// PENDING, STARTED, RETRY, SUCCESS or FAILURE.
    status: String,
    task_name: String,
    /// The task's result once it succeeded, else null.
    #[schema(value_type = Option<Object>)]
    result: Option<serde_json::Value>,
    error: Option<String>,
    attempts: i32,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
}

/// State of a task, Celery-style.
#[utoipa::path(get, path = "/api/task-status/{task_id}/", tag = "routes",
    params(("task_id" = String, Path, description = "Task id returned when the task was queued")),
    responses((status = 200, body = TaskStatusOut), (status = 404, body = ErrorBody)))]
pub async fn task_status(
    _: ReadAccess,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::NotFound("No task with this id.".into());
    let id = Uuid::parse_str(&path).map_err(|_| not_found())?;
    let task = state
        .read_db
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
        created_at: rfc3339::format(task.created_at),
        started_at: task.started_at.map(rfc3339::format),
        finished_at: task.finished_at.map(rfc3339::format),
    }))
}
