//! Operator feedback and the mined templates it applies to.
//!
//! `POST /api/logs/{id}/feedback/` labels the template of an analysed entry `normal` or
//! `anomaly` (signed like every write), through [`crate::feedback::apply_feedback`]: the
//! template's latest 10 000 entries, whatever their age, are re-scored with the label
//! (`is_anomaly` follows it and their summary says so; a `normal` label only at the levels
//! it covers) and the answer reports how many changed (`rescored`).
//! `GET /api/templates/` lists the templates with their counts and labels.

use actix_web::{web, HttpResponse};
use db::templates::{TemplateOrder, TemplateRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    access::ReadAccess,
    auth::{Scope, WritePolicy},
    body::{SignedJson, SMALL_BODY_BYTES},
    errors::{ApiError, BadRequestBody, ErrorBody},
    fallback::resource,
    feedback::{apply_feedback, FeedbackTarget},
    pagination,
    query::QueryCheck,
    rfc3339,
    state::AppState,
    validation,
};

/// Registers the feedback and template routes. Feedback needs `operate` and a
/// request-bound signature; the list needs `read`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/api/logs/{id}/feedback/")
            .app_data(WritePolicy::bound(&[Scope::Operate], SMALL_BODY_BYTES))
            .route(web::post().to(feedback)),
    )
    .service(resource("/api/templates/").route(web::get().to(list_templates)));
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FeedbackLabel {
    Normal,
    Anomaly,
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // documents the contract; the body is validated field by field
pub struct FeedbackIn {
    /// The operator's judgement on the entry's message pattern.
    label: FeedbackLabel,
}

/// A mined message template.
#[derive(Serialize, ToSchema)]
pub struct TemplateOut {
    /// The `template_id` of log entries.
    id: i64,
    /// The detector's stable template id.
    template_key: String,
    /// Text with variable parts replaced by placeholders (`<*>`, `<NUM>`, `<IP>`, ...).
    template: String,
    /// Lines seen with this template.
    count: i64,
    first_seen: String,
    last_seen: String,
    /// `normal`, `anomaly` or null.
    label: Option<String>,
    labelled_at: Option<String>,
    /// For a `normal` label, the most severe level it covers (`DEBUG` .. `ERROR`): the
    /// levels the template's entries had come at when it was given. A later line above it,
    /// at a level that flags by itself (`CRITICAL`), is judged on its own until the
    /// template's lines at that level arrive steadily. Null: every level (an `anomaly`
    /// label, or a `normal` one given after `CRITICAL` lines).
    label_max_level: Option<String>,
}

impl From<TemplateRow> for TemplateOut {
    fn from(t: TemplateRow) -> Self {
        Self {
            id: t.id,
            template_key: t.template_key,
            template: t.template,
            count: t.count,
            first_seen: rfc3339::format(t.first_seen),
            last_seen: rfc3339::format(t.last_seen),
            label: t.label,
            labelled_at: t.labelled_at.map(rfc3339::format),
            label_max_level: t
                .label_max_level
                .filter(|level| level.as_str() != "CRITICAL"),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct FeedbackOut {
    log_entry_id: i64,
    /// The template now labelled.
    template: TemplateOut,
    /// Entries among the template's latest 10 000 whose verdict (`is_anomaly`) and summary
    /// were re-scored with the label (0 when they already agreed; a `normal` label leaves
    /// those above the levels it covers).
    rescored: u64,
}

/// Label the template of an analysed entry; later lines of that template (and of close
/// ones) are scored with it, and its latest 10 000 entries are re-scored with it.
#[utoipa::path(post, path = "/api/logs/{id}/feedback/", tag = "templates", params(("id" = i64, Path)), request_body = FeedbackIn,
    responses((status = 200, body = FeedbackOut), (status = 400, body = BadRequestBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The entry has not been analysed yet"),
        (status = 415, body = ErrorBody)),
    security(("hmac" = ["operate"])))]
pub async fn feedback(
    SignedJson(value): SignedJson,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id: i64 = path
        .parse()
        .map_err(|_| ApiError::NotFound("No log entry with this id.".into()))?;
    let label = validation::feedback_label(&value)?;
    let done = apply_feedback(&state, FeedbackTarget::Entry(id), label).await?;
    Ok(HttpResponse::Ok().json(FeedbackOut {
        log_entry_id: id,
        template: done.row.into(),
        rescored: done.rescored,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TemplatesQuery {
    /// `-count` (most frequent first, the default) or `-last_seen` (most recently seen first).
    ordering: Option<String>,
    /// Page size, 1 to 1 000 (default 100).
    limit: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TemplatePage {
    results: Vec<TemplateOut>,
}

/// Mined templates with their counts, first and last sighting and labels.
#[utoipa::path(get, path = "/api/templates/", tag = "templates", params(TemplatesQuery),
    responses((status = 200, body = TemplatePage), (status = 400, body = BadRequestBody)))]
pub async fn list_templates(
    _: ReadAccess,
    query: web::Query<TemplatesQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut check = QueryCheck::new();
    let order = match query.ordering.as_deref() {
        None | Some("") | Some("-count") => TemplateOrder::MostFrequent,
        Some("-last_seen") => TemplateOrder::Newest,
        Some(other) => {
            check.fail(
                "ordering",
                format!("\"{other}\" is not a valid choice; use -count or -last_seen."),
            );
            TemplateOrder::MostFrequent
        }
    };
    let limit = check.limit(query.limit.as_deref());
    check.finish()?;
    let mut rows = state
        .read_db
        .run(move |c| db::templates::list(c, order, limit))
        .await?;
    // No cursor here: an answer past the byte budget just holds fewer templates.
    let fit = pagination::fitting(&rows, pagination::MAX_PAGE_BYTES, |t| {
        t.template.len() + t.template_key.len()
    });
    rows.truncate(fit);
    Ok(HttpResponse::Ok().json(TemplatePage {
        results: rows.into_iter().map(Into::into).collect(),
    }))
}
