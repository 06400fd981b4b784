//! Operator feedback and the mined templates it applies to.
//!
//! `POST /api/logs/{id}/feedback/` labels the template of an analysed entry `normal` or
//! `anomaly` (signed like every write). The label is stored on the `templates` row; the
//! analysis workers pull it within their refresh interval and later lines of that template,
//! and of templates semantically close to it, are scored with it. In the same transaction
//! the template's entries received within [`db::templates::RESCORE_WINDOW`] (1 h) are
//! re-scored with the label: `is_anomaly` follows it and their summary says so; the answer
//! reports how many changed (`rescored`). `GET /api/templates/` lists the templates with
//! their counts and labels.

use actix_web::{web, HttpRequest, HttpResponse};
use db::templates::{TemplateOrder, TemplateRow};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::{
    body::{check_read_access, signed_json},
    errors::ApiError,
    routes::{resource, rfc3339, ErrorBody},
    startup::AppState,
    validation,
};

/// Registers the feedback and template routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/logs/{id}/feedback/").route(web::post().to(feedback)))
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
}

impl From<TemplateRow> for TemplateOut {
    fn from(t: TemplateRow) -> Self {
        Self {
            id: t.id,
            template_key: t.template_key,
            template: t.template,
            count: t.count,
            first_seen: rfc3339(t.first_seen),
            last_seen: rfc3339(t.last_seen),
            label: t.label,
            labelled_at: t.labelled_at.map(rfc3339),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct FeedbackOut {
    log_entry_id: i64,
    /// The template now labelled.
    template: TemplateOut,
    /// Entries of the template received in the last hour whose verdict (`is_anomaly`) and
    /// summary were re-scored with the label (0 when they already agreed).
    rescored: u64,
}

/// What a label changed: the template row and how many recent entries were re-scored.
pub(crate) struct Feedback {
    pub row: TemplateRow,
    pub rescored: u64,
}

/// Which template an operator labels.
#[derive(Clone, Copy)]
pub(crate) enum FeedbackTarget {
    /// The template of an analysed entry (`POST /api/logs/{id}/feedback/`).
    Entry(i64),
    /// A template by its id (the dashboard's buttons, `POST /api/ui/feedback/...`).
    Template(i64),
}

/// What the feedback lookup found.
enum Labelled {
    NoEntry,
    NotAnalysed,
    NoTemplate,
    Done(TemplateRow, usize),
}

/// Stores `label` on the target's template and re-scores the template's recent entries
/// with it, in one transaction: the one feedback path behind both the signed API and the
/// dashboard. Errors: 404 for an unknown entry or template, 409 for an entry not analysed
/// yet.
pub(crate) async fn apply_feedback(
    state: &AppState,
    target: FeedbackTarget,
    label: &'static str,
) -> Result<Feedback, ApiError> {
    let entry_id = match target {
        FeedbackTarget::Entry(id) => Some(id),
        FeedbackTarget::Template(_) => None,
    };
    let outcome = state
        .db
        .run(move |c| {
            let template_id = match target {
                FeedbackTarget::Template(t) => t,
                FeedbackTarget::Entry(id) => {
                    let Some((entry, _)) = db::entries::get_with_status(c, id)? else {
                        return Ok(Labelled::NoEntry);
                    };
                    let Some(t) = entry.template_id else {
                        return Ok(Labelled::NotAnalysed);
                    };
                    t
                }
            };
            Ok(
                match db::templates::set_label_and_rescore(c, template_id, label)? {
                    Some((row, rescored)) => Labelled::Done(row, rescored),
                    None if entry_id.is_some() => Labelled::NotAnalysed,
                    None => Labelled::NoTemplate,
                },
            )
        })
        .await?;
    match outcome {
        Labelled::NoEntry => Err(ApiError::NotFound("No log entry with this id.".into())),
        Labelled::NoTemplate => Err(ApiError::NotFound("No template with this id.".into())),
        Labelled::NotAnalysed => Err(ApiError::Conflict(format!(
            "Log entry {} has not been analysed yet, so it has no message pattern to label; retry once its analysis has finished.",
            entry_id.unwrap_or_default()
        ))),
        Labelled::Done(row, rescored) => {
            tracing::info!(log_entry_id = entry_id, template_id = row.id, label, rescored, "Template labelled by an operator.");
            metrics::counter!("logcanary_feedback_total", "label" => label).increment(1);
            state.review_cache.invalidate();
            Ok(Feedback {
                row,
                rescored: rescored as u64,
            })
        }
    }
}

/// Label the template of an analysed entry; later lines of that template (and of close
/// ones) are scored with it, and its entries of the last hour are re-scored with it.
#[utoipa::path(post, path = "/api/logs/{id}/feedback/", params(("id" = i64, Path)), request_body = FeedbackIn,
    responses((status = 200, body = FeedbackOut), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The entry has not been analysed yet"),
        (status = 415, body = ErrorBody)),
    security(("hmac" = [])))]
pub async fn feedback(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let value = signed_json(&req, payload, &state).await?;
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
#[utoipa::path(get, path = "/api/templates/", params(TemplatesQuery),
    responses((status = 200, body = TemplatePage), (status = 400, body = ErrorBody)))]
pub async fn list_templates(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    check_read_access(&req, &state)?;
    let query = web::Query::<TemplatesQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(format!("Invalid query string: {e}")))?
        .into_inner();
    let mut errors = crate::errors::FieldErrors::new();
    let order = match query.ordering.as_deref() {
        None | Some("") | Some("-count") => TemplateOrder::MostFrequent,
        Some("-last_seen") => TemplateOrder::Newest,
        Some(other) => {
            errors.insert(
                "ordering".into(),
                json!([format!(
                    "\"{other}\" is not a valid choice; use -count or -last_seen."
                )]),
            );
            TemplateOrder::MostFrequent
        }
    };
    let limit = match query.limit.as_deref() {
        None | Some("") => 100,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                errors.insert(
                    "limit".into(),
                    json!(["Ensure this value is an integer from 1 to 1000."]),
                );
                100
            }
        },
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let rows = state
        .db
        .run(move |c| db::templates::list(c, order, limit))
        .await?;
    Ok(HttpResponse::Ok().json(TemplatePage {
        results: rows.into_iter().map(Into::into).collect(),
    }))
}
