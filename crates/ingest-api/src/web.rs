//! The web dashboard at `/`: one HTML page, its script and stylesheet, embedded in the
//! binary (no CDN, works offline), plus the two small endpoints only the page uses.
//!
//! - `GET /`, `GET /ui/app.js`, `GET /ui/app.css`: the page. It reads the open JSON APIs
//!   (`/api/dashboard/`, `/api/logs/`, `/api/templates/`, `/api/review/`,
//!   `/api/patterns/`, `/api/alerts/`, `/api/stats/queues/`) and polls them every few
//!   seconds.
//! - `GET /api/stats/queues/`: task rows counted by queue, task name and state (what
//!   Flower showed), read access like every other read.
//! - `POST /api/ui/feedback/templates/{id}/` and `POST /api/ui/feedback/logs/{id}/` with
//!   `{"label": "normal" | "anomaly"}`: the page's "mark normal / mark anomaly" buttons
//!   (and the review queue's "normal" / "anomaly"). They answer the template's fields and
//!   `rescored`, like the signed endpoint.
//!
//! The page never sees the HMAC secret. Feedback from the page is authorised by an
//! operator token, `LOGCANARY_DASHBOARD_TOKEN`, which the operator types into the page
//! once (kept in the browser's `localStorage`) and which is sent as
//! `Authorization: Bearer <token>`, compared in constant time. Without the variable these
//! two endpoints answer `403` and the page stays read-only. The JSON content type and the
//! `Authorization` header make a cross-site form post impossible without a CORS
//! preflight, which this server never grants. The label is stored by the same code as
//! the signed `POST /api/logs/{id}/feedback/` ([`crate::templates::apply_feedback`]).

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    body::{check_read_access, subtle_eq::ct_eq},
    errors::ApiError,
    routes::{resource, ErrorBody},
    startup::AppState,
    templates::{apply_feedback, Feedback, FeedbackTarget, TemplateOut},
    validation,
};

/// The environment variable holding the operator token for the page's feedback buttons.
pub const DASHBOARD_TOKEN_ENV: &str = "LOGCANARY_DASHBOARD_TOKEN";

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

/// The operator token, read from [`DASHBOARD_TOKEN_ENV`] when the routes are registered;
/// `None` (unset or empty) turns page feedback off.
struct DashboardToken(Option<String>);

/// Registers the page, its assets and its endpoints.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let token = std::env::var(DASHBOARD_TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty());
    cfg.app_data(web::Data::new(DashboardToken(token)))
        .service(resource("/").route(web::get().to(index)))
        .service(resource("/ui/app.js").route(web::get().to(app_js)))
        .service(resource("/ui/app.css").route(web::get().to(app_css)))
        .service(resource("/api/stats/queues/").route(web::get().to(queue_stats)))
        .service(
            resource("/api/ui/feedback/templates/{id}/").route(web::post().to(template_feedback)),
        )
        .service(resource("/api/ui/feedback/logs/{id}/").route(web::post().to(entry_feedback)));
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        // The page only loads its own files and talks to its own origin.
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

async fn index() -> HttpResponse {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> HttpResponse {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> HttpResponse {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// Task rows of one queue, task name and state.
#[derive(Serialize, ToSchema)]
pub struct TaskCountOut {
    queue: String,
    task_name: String,
    status: String,
    count: i64,
}

/// What one broker queue holds right now.
#[derive(Serialize, ToSchema)]
pub struct QueueDepthOut {
    /// The logical queue: `analysis`, `batch_processing`, `real_time`, `notifications` or
    /// `maintenance`.
    queue: String,
    /// Messages waiting for a worker (delivered-but-unacked ones are not counted).
    ready: u32,
    /// Consumers attached: 0 means no worker is serving this queue.
    consumers: u32,
    /// Messages waiting out a retry delay.
    retrying: u32,
    /// Messages in the dead-letter queue, waiting for an operator.
    dead_lettered: u32,
}

/// Task states from Postgres and queue depths from RabbitMQ: what Flower showed.
#[derive(Serialize, ToSchema)]
pub struct QueueStatsOut {
    /// Task rows by queue, name and state, sorted.
    tasks: Vec<TaskCountOut>,
    /// Every broker queue's depth, or null with `broker_error` set when the broker cannot
    /// be asked (the task states above still answer). Read at most every 2 s.
    queues: Option<Vec<QueueDepthOut>>,
    broker_error: Option<String>,
}

/// Task rows counted by queue, task name and state, and the broker's queue depths.
#[utoipa::path(get, path = "/api/stats/queues/",
    responses((status = 200, body = QueueStatsOut), (status = 401, body = ErrorBody)))]
pub async fn queue_stats(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    check_read_access(&req, &state)?;
    let (rows, depths) = futures::join!(
        state.db.run(db::stats::task_counts),
        state.queue_depths.read()
    );
    let (queues, broker_error) = match depths {
        Ok(depths) => (
            Some(
                depths
                    .into_iter()
                    .map(|d| QueueDepthOut {
                        queue: d.queue.to_owned(),
                        ready: d.ready,
                        consumers: d.consumers,
                        retrying: d.retrying,
                        dead_lettered: d.dead_lettered,
                    })
                    .collect(),
            ),
            None,
        ),
        Err(error) => (None, Some(error)),
    };
    Ok(HttpResponse::Ok().json(QueueStatsOut {
        tasks: rows?
            .into_iter()
            .map(|r| TaskCountOut {
                queue: r.queue,
                task_name: r.task_name,
                status: r.status,
                count: r.count,
            })
            .collect(),
        queues,
        broker_error,
    }))
}

/// The answer while page feedback is off (no token configured).
fn feedback_off() -> HttpResponse {
    HttpResponse::Forbidden().json(serde_json::json!({"detail": format!(
        "Feedback from the dashboard is off; set {DASHBOARD_TOKEN_ENV} on ingest-api to turn it on."
    )}))
}

/// Checks the operator token (401 when missing or wrong).
fn check_token(req: &HttpRequest, expected: &str) -> Result<(), ApiError> {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if ct_eq(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "The dashboard token is missing or wrong.".into(),
        ))
    }
}

/// Token first, then content type, then the body's `label`.
fn feedback_label(req: &HttpRequest, token: &str, body: &[u8]) -> Result<&'static str, ApiError> {
    check_token(req, token)?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Unsupported media type \"{content_type}\" in request; use application/json."
        )));
    }
    validation::feedback_label(&validation::parse_json(body)?)
}

/// The page's feedback answer: the labelled template's fields (as in
/// `GET /api/templates/`) and how many of its entries of the last hour were re-scored.
#[derive(Serialize)]
struct PageFeedbackOut {
    #[serde(flatten)]
    template: TemplateOut,
    rescored: u64,
}

impl From<Feedback> for PageFeedbackOut {
    fn from(done: Feedback) -> Self {
        Self {
            template: done.row.into(),
            rescored: done.rescored,
        }
    }
}

fn parse_id(raw: &str, what: &str) -> Result<i64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(format!("No {what} with this id.")))
}

async fn template_feedback(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    token: web::Data<DashboardToken>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Some(token) = &token.0 else {
        return Ok(feedback_off());
    };
    let label = feedback_label(&req, token, &body)?;
    let id = parse_id(&path, "template")?;
    let done = apply_feedback(&state, FeedbackTarget::Template(id), label).await?;
    Ok(HttpResponse::Ok().json(PageFeedbackOut::from(done)))
}

async fn entry_feedback(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    token: web::Data<DashboardToken>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Some(token) = &token.0 else {
        return Ok(feedback_off());
    };
    let label = feedback_label(&req, token, &body)?;
    let id = parse_id(&path, "log entry")?;
    let done = apply_feedback(&state, FeedbackTarget::Entry(id), label).await?;
    Ok(HttpResponse::Ok().json(PageFeedbackOut::from(done)))
}
