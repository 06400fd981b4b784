//! Operator feedback: a label (`normal` or `anomaly`) on a mined template, the one path
//! behind the signed `POST /api/logs/{id}/feedback/` and the dashboard's buttons.
//!
//! The label is stored on the `templates` row; the analysis workers pull it within their
//! refresh interval and later lines of that template, and of templates semantically close
//! to it, are scored with it. In the same transaction the template's latest
//! [`db::templates::RESCORE_MAX_ENTRIES`] entries, whatever their age, are re-scored with
//! the label (a `normal` one only at the levels it covers, those of the template's entries
//! of the last 24 hours, or of its latest entries when none came that day:
//! [`db::templates::recent_max_level`]).

use db::templates::TemplateRow;

use crate::{errors::ApiError, state::AppState};

/// What a label changed: the template row and how many recent entries were re-scored.
pub struct Feedback {
    pub row: TemplateRow,
    pub rescored: u64,
}

/// Which template an operator labels.
#[derive(Clone, Copy)]
pub enum FeedbackTarget {
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
    Done(Box<TemplateRow>, usize),
}

/// Stores `label` on the target's template and re-scores the template's recent entries
/// with it, in one transaction: the one feedback path behind both the signed API and the
/// dashboard. Errors: 404 for an unknown entry or template, 409 for an entry not analysed
/// yet.
pub async fn apply_feedback(
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
                    Some((row, rescored)) => Labelled::Done(Box::new(row), rescored),
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
                row: *row,
                rescored: rescored as u64,
            })
        }
    }
}
