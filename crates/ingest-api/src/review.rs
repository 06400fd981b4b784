//! The review queue (`GET /api/review/`, served by [`crate::routes::review`]): the
//! unlabelled templates an operator should answer first, ranked and cached here.
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

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use db::templates::ReviewCandidate;
use detector::{
    review::{priority, ReviewInput},
    scorer::{Presence, ScorerConfig, Steadiness},
};
use serde::Serialize;
use utoipa::ToSchema;

/// Templates ranked per request, the most frequent in the window: a bound on the rows
/// read and sorted, whatever the number of templates. A template below it has fewer
/// lines than each of these, so it could only outrank them by being far more uncertain.
pub const MAX_CANDIDATES: i64 = 2000;

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
    pub(crate) fn get(&self, key: (i32, i32)) -> Option<Vec<ReviewItemOut>> {
        let answers = self.answers.lock().ok()?;
        let (at, items) = answers.get(&key)?;
        (at.elapsed() < REVIEW_TTL).then(|| items.clone())
    }

    pub(crate) fn put(&self, key: (i32, i32), items: Vec<ReviewItemOut>) {
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

impl ReviewItemOut {
    /// The bytes of its text, for the answer's byte budget.
    pub(crate) fn text_bytes(&self) -> usize {
        self.template.len()
    }
}

/// Ranks candidates by review priority for a detector flagging at `threshold`, highest
/// first (ties: more recent lines, then the older template), and keeps `limit`.
pub(crate) fn rank(
    candidates: Vec<ReviewCandidate>,
    threshold: f32,
    limit: usize,
) -> Vec<ReviewItemOut> {
    let detector = ScorerConfig::default();
    let mut items: Vec<ReviewItemOut> = candidates
        .into_iter()
        .map(|c| {
            let presence = Presence {
                windows: u32::try_from(c.windows).unwrap_or(0),
                max_window_lines: u64::try_from(c.max_window_lines).unwrap_or(0),
                episodes: u32::try_from(c.episodes).unwrap_or(0),
                // Whether learning covers a line at CRITICAL is the workers' per-line
                // question; the template's learned state does not read it.
                level_episodes: 0,
            };
            let steadiness = Steadiness {
                presence,
                count: u64::try_from(c.count).unwrap_or(0),
                first_seen_ms: c.first_seen.timestamp_millis(),
                last_seen_ms: c.last_seen.timestamp_millis(),
                stream_start_ms: c.stream_start.timestamp_millis(),
            };
            let input = ReviewInput {
                score: c.mean_score as f32,
                prior: c.mean_prior as f32,
                lines: u64::try_from(c.lines).unwrap_or(0),
                severity: c.severity_weight(),
                learned_normal: detector.is_learned_normal(&steadiness),
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
            mean_prior: mean_score,
            max_severity: level.into(),
            sample_log_entry_id: id * 100,
            windows: 1,
            max_window_lines: lines,
            episodes: 1,
            first_seen: chrono::Utc::now(),
            last_seen: chrono::Utc::now(),
            stream_start: chrono::Utc::now(),
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
    fn a_template_the_workers_learned_normal_ranks_below_an_unknown_one() {
        let now = chrono::Utc::now();
        let unknown = candidate(1, 40, 0.62, "CRITICAL");
        // Seen in 6 windows over 2 hours, no window holding more than a quarter of it.
        let mut learned = candidate(2, 40, 0.62, "CRITICAL");
        learned.windows = 6;
        learned.max_window_lines = 10;
        learned.first_seen = now - chrono::Duration::hours(2);
        learned.last_seen = now;
        learned.stream_start = learned.first_seen;
        let ranked = rank(vec![learned, unknown], 0.6, 10);
        assert_eq!(ranked[0].template_id, 1);
        assert!(ranked[0].priority > ranked[1].priority);
    }

    #[test]
    fn the_same_presence_is_not_learned_for_a_template_that_came_late() {
        let now = chrono::Utc::now();
        // The presence above, but the stream had run for a day before its first line:
        // two hours of sightings are short of the four that takes, and it ranks as unknown.
        let mut late = candidate(2, 40, 0.62, "CRITICAL");
        late.windows = 6;
        late.max_window_lines = 10;
        late.first_seen = now - chrono::Duration::hours(2);
        late.last_seen = now;
        late.stream_start = now - chrono::Duration::hours(26);
        let ranked = rank(vec![late, candidate(1, 40, 0.62, "CRITICAL")], 0.6, 10);
        assert!((ranked[0].priority - ranked[1].priority).abs() < 1e-9);
    }
}
