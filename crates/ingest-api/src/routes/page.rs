//! The web dashboard at `/`: one HTML page, its script and stylesheet, embedded in the
//! binary (no CDN, works offline), plus the feedback endpoints only the page uses.
//!
//! - `GET /`, `GET /ui/app.js`, `GET /ui/app.css`: the page (open: it holds no data). It
//!   reads the JSON APIs (`/api/dashboard/`, `/api/logs/`, `/api/templates/`,
//!   `/api/review/`, `/api/patterns/`, `/api/alerts/`, `/api/stats/queues/`), sending the
//!   token the operator saved on every call, and polls them every few seconds.
//! - `POST /api/ui/feedback/templates/{id}/` and `POST /api/ui/feedback/logs/{id}/` with
//!   `{"label": "normal" | "anomaly"}`: the page's "mark normal / mark anomaly" buttons
//!   (and the review queue's "normal" / "anomaly"). They answer the template's fields and
//!   `rescored`, like the signed endpoint.
//!
//! The page never sees the HMAC secret. It is authorised by an operator token,
//! `LOGCANARY_DASHBOARD_TOKEN` (`read` + `operate`), which the operator types into the
//! page once (kept in the browser's `localStorage`) and which is sent as
//! `Authorization: Bearer <token>` on every call, compared in constant time; the read
//! token (`read` only) works for the panels but not the buttons. Without the dashboard
//! token these two endpoints answer `403` and the page stays read-only. The JSON content type and the
//! `Authorization` header make a cross-site form post impossible without a CORS
//! preflight, which this server never grants. The label is stored by the same code as
//! the signed `POST /api/logs/{id}/feedback/` ([`crate::feedback::apply_feedback`]).

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest, HttpResponse};
use futures::future::LocalBoxFuture;
use serde::Serialize;

use crate::{
    access::{app_state, bearer},
    auth::Scope,
    body::{read_body, require_json, SMALL_BODY_BYTES},
    config::DASHBOARD_TOKEN_ENV,
    errors::ApiError,
    fallback::resource,
    feedback::{apply_feedback, Feedback, FeedbackTarget},
    routes::templates::TemplateOut,
    state::AppState,
    validation,
};

const INDEX_HTML: &str = include_str!("../../assets/index.html");
const APP_JS: &str = include_str!("../../assets/app.js");
const APP_CSS: &str = include_str!("../../assets/app.css");

/// Registers the page, its assets and its feedback endpoints.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/").route(web::get().to(index)))
        .service(resource("/ui/app.js").route(web::get().to(app_js)))
        .service(resource("/ui/app.css").route(web::get().to(app_css)))
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

/// The page; or, to an Elasticsearch client or Beat (which ask `GET /` for the version
/// and product before they send), the Elasticsearch root document
/// ([`crate::routes::shippers::elastic_root`]). Browsers are never taken for one.
async fn index(req: HttpRequest) -> HttpResponse {
    if is_elastic_client(&req) {
        return crate::routes::shippers::elastic_root();
    }
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// An Elasticsearch client: the official clients' meta header or media type, or a Beats /
/// Logstash / Fluent user agent, and no request for HTML.
fn is_elastic_client(req: &HttpRequest) -> bool {
    let text = |name: header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    let accept = text(header::ACCEPT);
    if accept.contains("text/html") {
        return false;
    }
    let agent = text(header::USER_AGENT);
    req.headers().contains_key("x-elastic-client-meta")
        || accept.contains("elasticsearch")
        || ["elastic", "beat", "logstash", "fluent"]
            .iter()
            .any(|a| agent.contains(a))
}

async fn app_js() -> HttpResponse {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> HttpResponse {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// The label of one of the page's feedback posts. Checked in this order, before a byte
/// of the body is read: page feedback is on (a token with `operate` is set; 403
/// otherwise), the bearer token (401), its scope (403, the read token), the content type
/// (415); then the body, read within bounds like every other ([`read_body`]), and its
/// `label` (400).
struct PageLabel(&'static str);

impl FromRequest for PageLabel {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let (req, payload) = (req.clone(), payload.take());
        Box::pin(async move {
            let state = app_state(&req)?;
            if !state.tokens.grants(Scope::Operate) {
                return Err(ApiError::Forbidden(format!(
                    "Feedback from the dashboard is off; set {DASHBOARD_TOKEN_ENV} on ingest-api to turn it on."
                )));
            }
            let caller = bearer(&req)
                .and_then(|given| state.tokens.find(given))
                .ok_or_else(|| {
                    ApiError::Unauthorized("The dashboard token is missing or wrong.".into())
                })?;
            caller.require(&[Scope::Operate])?;
            require_json(&req)?;
            let body = read_body(&req, payload, SMALL_BODY_BYTES, |_| {}).await?;
            let label = validation::feedback_label(&validation::parse_json(&body)?)?;
            Ok(PageLabel(label))
        })
    }
}

/// The page's feedback answer: the labelled template's fields (as in
/// `GET /api/templates/`) and how many of its latest entries were re-scored.
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

/// Labels the template `target` names, once the label passed [`PageLabel`].
async fn page_feedback(
    state: &AppState,
    target: FeedbackTarget,
    PageLabel(label): PageLabel,
) -> Result<HttpResponse, ApiError> {
    let done = apply_feedback(state, target, label).await?;
    Ok(HttpResponse::Ok().json(PageFeedbackOut::from(done)))
}

fn parse_id(raw: &str, what: &str) -> Result<i64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(format!("No {what} with this id.")))
}

async fn template_feedback(
    label: PageLabel,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path, "template")?;
    page_feedback(&state, FeedbackTarget::Template(id), label).await
}

async fn entry_feedback(
    label: PageLabel,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path, "log entry")?;
    page_feedback(&state, FeedbackTarget::Entry(id), label).await
}
