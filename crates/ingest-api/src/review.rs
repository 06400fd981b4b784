//! `GET /api/review/`: the review queue, the unlabelled templates an operator should
//! answer first.
//!
//! An answer (`POST /api/logs/{id}/feedback/`, or the dashboard's buttons) labels a
//! template, and every later line of it follows the label. The queue ranks templates by
//! how many verdicts an answer would change, with the detector's
//! [`detector::review::priority`]: uncertain (mean score near `LOGCANARY_ANOMALY_THRESHOLD`),
//! frequent (many recent lines) and severe (its most severe level) first.
//!
//! The inputs are aggregated in SQL from the scored entries received in the last `hours`
//! ([`db::templates::review_candidates`]): at most [`MAX_CANDIDATES`] templates, those with
//! the most lines, are ranked here. A template the workers have learned as normal (its
//! stored presence passes the detector's rule, [`ScorerConfig::is_learned_normal`]) counts
//! as less uncertain. That aggregation reads a day of entries, so an answer is cached for
//! [`REVIEW_TTL`] per query (however many dashboards poll) and dropped at once when an
//! operator labels a template.

use actix_web::{web, HttpRequest, HttpResponse};
use db::templates::ReviewCandidate;
use detector::{
    review::{priority, ReviewInput},
    scorer::{Presence, ScorerConfig},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};
use utoipa::{IntoParams, ToSchema};

use crate::{
    body::check_read_access,
    errors::ApiError,
    routes::{resource, ErrorBody},
    startup::AppState,
};

/// Templates ranked per request, the most frequent in the window: a bound on the rows
/// read and sorted, whatever the number of templates. A template below it has fewer
/// lines than each of these, so it could only outrank them by being far more uncertain.
pub const MAX_CANDIDATES: i64 = 2000;

/// Registers the review queue.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/review/").route(web::get().to(review_queue)));
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReviewQuery {
    /// Window of recent lines, in hours: 1 to 720 (default 24).
    hours: Option<String>,
    /// Templates returned, 1 to 200 (default 20).
    limit: Option<String>,
}

/// How long one answer of the review queue is served again.
pub const REVIEW_TTL: Duration = Duration::from_secs(10);

/// One cached answer: when it was computed, and its items.
type CachedAnswer = (Instant, Vec<ReviewItemOut>);

/// Recent answers of the review queue per (hours, limit); see the module docs.
#[derive(Default)]
pub struct ReviewCache {
    answers: Mutex<HashMap<(i32, i32), CachedAnswer>>,
}

impl ReviewCache {
    fn get(&self, key: (i32, i32)) -> Option<Vec<ReviewItemOut>> {
        let answers = self.answers.lock().ok()?;
        let (at, items) = answers.get(&key)?;
        (at.elapsed() < REVIEW_TTL).then(|| items.clone())
    }

    fn put(&self, key: (i32, i32), items: Vec<ReviewItemOut>) {
        if let Ok(mut answers) = self.answers.lock() {
            answers.retain(|_, (at, _)| at.elapsed() < REVIEW_TTL);
            answers.insert(key, (Instant::now(), items));
        }
    }

    /// Forget every answer (a template was labelled: it leaves the queue).
    pub fn invalidate(&self) {
        if let Ok(mut answers) = self.answers.lock() {
            answers.clear();
        }
    }
}

/// One template waiting for an operator's answer.
#[derive(Clone, Serialize, ToSchema)]
pub struct ReviewItemOut {
    /// The template's id (`templates`), as in `GET /api/templates/` and the entries'
    /// `template_id`.
    template_id: i64,
    /// Text with variable parts replaced by placeholders.
    template: String,
    /// Lines seen with this template, ever.
    count: i64,
    /// Its scored lines received in the window.
    recent_lines: i64,
    /// Of those, the ones flagged anomalous.
    flagged: i64,
    /// Their mean anomaly score (0-1).
    mean_score: f64,
    /// The most severe level among them.
    #[schema(example = "CRITICAL")]
    severity: String,
    /// How much an answer is worth (higher first): uncertainty x ln(1 + recent lines) x
    /// (0.2 + severity weight).
    priority: f32,
    /// The newest of its recent lines, to look at before answering.
    sample_log_entry_id: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ReviewPage {
    /// Highest priority first.
    results: Vec<ReviewItemOut>,
    /// The window the lines were counted in.
    hours: i32,
}

/// Ranks candidates by review priority for a detector flagging at `threshold`, highest
/// first (ties: more recent lines, then the older template), and keeps `limit`.
fn rank(candidates: Vec<ReviewCandidate>, threshold: f32, limit: usize) -> Vec<ReviewItemOut> {
    let detector = ScorerConfig::default();
    let mut items: Vec<ReviewItemOut> = candidates
        .into_iter()
        .map(|c| {
            let presence = Presence {
                windows: u32::try_from(c.windows).unwrap_or(0),
                max_window_lines: u64::try_from(c.max_window_lines).unwrap_or(0),
            };
            let span_ms = (c.last_seen - c.first_seen).num_milliseconds();
            let count = u64::try_from(c.count).unwrap_or(0);
            let input = ReviewInput {
                score: c.mean_score as f32,
                lines: u64::try_from(c.lines).unwrap_or(0),
                severity: c.severity_weight(),
                learned_normal: detector.is_learned_normal(presence, count, span_ms),
            };
            ReviewItemOut {
                priority: priority(&input, threshold),
                template_id: c.template_id,
                template: c.template,
                count: c.count,
                recent_lines: c.lines,
                flagged: c.flagged,
                mean_score: c.mean_score,
                severity: c.max_severity,
                sample_log_entry_id: c.sample_log_entry_id,
            }
        })
        .collect();
    items.sort_by(|a, b| {
        b.priority
            .total_cmp(&a.priority)
            .then(b.recent_lines.cmp(&a.recent_lines))
            .then(a.template_id.cmp(&b.template_id))
    });
    items.truncate(limit);
    items
}

/// `raw` as an integer in `range`, `default` when absent; otherwise a field error.
fn int_param(
    errors: &mut crate::errors::FieldErrors,
    field: &str,
    raw: Option<&str>,
    range: std::ops::RangeInclusive<i32>,
    default: i32,
) -> i32 {
    match raw {
        None | Some("") => default,
        Some(raw) => match raw.parse::<i32>() {
            Ok(n) if range.contains(&n) => n,
            _ => {
                errors.insert(
                    field.into(),
                    json!([format!(
                        "Ensure this value is an integer from {} to {}.",
                        range.start(),
                        range.end()
                    )]),
                );
                default
            }
        },
    }
}

/// The review queue: unlabelled templates ranked by how many verdicts an operator's
/// answer would change (uncertain, frequent and severe first).
#[utoipa::path(get, path = "/api/review/", params(ReviewQuery),
    responses((status = 200, body = ReviewPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn review_queue(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    check_read_access(&req, &state)?;
    let query = web::Query::<ReviewQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(format!("Invalid query string: {e}")))?
        .into_inner();
    let mut errors = crate::errors::FieldErrors::new();
    let hours = int_param(&mut errors, "hours", query.hours.as_deref(), 1..=720, 24);
    let limit = int_param(&mut errors, "limit", query.limit.as_deref(), 1..=200, 20);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    if let Some(results) = state.review_cache.get((hours, limit)) {
        return Ok(HttpResponse::Ok().json(ReviewPage { results, hours }));
    }
    let candidates = state
        .db
        .run(move |c| db::templates::review_candidates(c, hours, MAX_CANDIDATES))
        .await?;
    let results = rank(
        candidates,
        state.anomaly_threshold,
        usize::try_from(limit).unwrap_or(20),
    );
    state.review_cache.put((hours, limit), results.clone());
    Ok(HttpResponse::Ok().json(ReviewPage { results, hours }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(id: i64, lines: i64, mean_score: f64, level: &str) -> ReviewCandidate {
        ReviewCandidate {
            template_id: id,
            template: format!("template {id}"),
            count: lines,
            lines,
            flagged: 0,
            mean_score,
            max_severity: level.into(),
            sample_log_entry_id: id * 100,
            windows: 1,
            max_window_lines: lines,
            first_seen: chrono::Utc::now(),
            last_seen: chrono::Utc::now(),
        }
    }

    #[test]
    fn uncertain_frequent_critical_first_and_limited() {
        let ranked = rank(
            vec![
                candidate(1, 40, 0.98, "CRITICAL"),
                candidate(2, 1, 0.62, "CRITICAL"),
                candidate(3, 40, 0.55, "INFO"),
                candidate(4, 40, 0.62, "CRITICAL"),
            ],
            0.6,
            3,
        );
        let ids: Vec<i64> = ranked.iter().map(|r| r.template_id).collect();
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[0], 4);
        assert!(ranked.windows(2).all(|w| w[0].priority >= w[1].priority));
        assert_eq!(ranked[0].severity, "CRITICAL");
        assert_eq!(ranked[0].sample_log_entry_id, 400);
    }

    #[test]
    fn params_default_and_refuse_out_of_range() {
        let mut errors = crate::errors::FieldErrors::new();
        assert_eq!(int_param(&mut errors, "limit", None, 1..=200, 20), 20);
        assert_eq!(
            int_param(&mut errors, "limit", Some("200"), 1..=200, 20),
            200
        );
        assert!(errors.is_empty());
        for bad in ["0", "201", "x", "-1", "1.5"] {
            let mut errors = crate::errors::FieldErrors::new();
            int_param(&mut errors, "limit", Some(bad), 1..=200, 20);
            assert_eq!(
                errors["limit"],
                json!(["Ensure this value is an integer from 1 to 200."]),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_template_the_workers_learned_normal_ranks_below_an_unknown_one() {
        let now = chrono::Utc::now();
        let unknown = candidate(1, 40, 0.62, "CRITICAL");
        // Seen in 6 windows over 2 hours, no window holding more than a quarter of it.
        let mut learned = candidate(2, 40, 0.62, "CRITICAL");
        learned.windows = 6;
        learned.max_window_lines = 10;
        learned.first_seen = now - chrono::Duration::hours(2);
        learned.last_seen = now;
        let ranked = rank(vec![learned, unknown], 0.6, 10);
        assert_eq!(ranked[0].template_id, 1);
        assert!(ranked[0].priority > ranked[1].priority);
    }
}
