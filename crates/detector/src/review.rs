//! The review queue: which templates an operator should answer first.
//!
//! An answer labels a template, and every later line of it (and of close templates)
//! follows the label. So the answer worth most is the one that would change the most
//! verdicts: on a template whose verdict is **uncertain** (it rests on the level-and-meaning
//! prior alone, with a score near the threshold), that is **frequent** (many lines would
//! follow the answer) and **severe** (a wrong verdict there costs the most: a missed
//! failure, or a page for a routine one).
//!
//! `priority = uncertainty x ln(1 + lines) x (0.2 + severity)`, where
//!
//! - `uncertainty` is 1 at the threshold; below it, it falls with the square of the score's
//!   ratio to the threshold, to 0.05 (a line well below the threshold is rarely wrong);
//!   above it, only to 0.5 at a score of 1, because a flag that rests on the prior alone
//!   is weak evidence (on real logs most lines at the highest level are routine); it is
//!   halved for a template the detector has learned as normal (steady presence is evidence
//!   of its own) and, since its score is already lowered by that rule, its uncertainty
//!   is taken from its **prior** score (what its lines would score without the rule): a
//!   template that reads like a failure and was learned as normal from a few sparse
//!   sightings is worth asking about, a routine one is not;
//! - `lines` are the template's lines in the window the caller looks at (its recent lines);
//! - `severity` is the weight of the most severe level among those lines (INFO 0.1,
//!   WARNING 0.4, ERROR 0.8, CRITICAL 1).
//!
//! Labelled templates are not candidates. The same function, on the same inputs, ranks
//! the queue of `GET /api/review/` (aggregated from the stored lines of the window) and
//! the simulated operator of `make eval FEEDBACK=n` (from the lines replayed so far).

use serde::Serialize;

/// What the ranking needs to know about one template.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReviewInput {
    /// The mean score of its lines in the window under review (as scored when they
    /// arrived), in [0, 1].
    pub score: f32,
    /// Its lines in the window under review.
    pub lines: u64,
    /// The weight of the most severe level among those lines, in [0, 1].
    pub severity: f32,
    /// The mean prior score of those lines (see the detector's `Score::prior`), in
    /// [0, 1]; it stands for `score` when the template is learned as normal.
    pub prior: f32,
    /// The detector has learned it as normal from steady presence.
    pub learned_normal: bool,
}

/// Lowest uncertainty: every template keeps some priority, so a long-running routine one
/// can still be asked about once the uncertain ones are answered.
pub const MIN_UNCERTAINTY: f32 = 0.05;

/// Uncertainty of a flag at a score of 1.
pub const FLAGGED_MIN_UNCERTAINTY: f32 = 0.5;

/// How uncertain a verdict at `score` is, for a detector flagging at `threshold`: 1 at the
/// threshold, [`MIN_UNCERTAINTY`] at 0 and [`FLAGGED_MIN_UNCERTAINTY`] at 1.
pub fn uncertainty(score: f32, threshold: f32) -> f32 {
    let threshold = threshold.clamp(0.01, 0.99);
    if score >= threshold {
        let distance = ((score - threshold) / (1.0 - threshold)).clamp(0.0, 1.0);
        1.0 - (1.0 - FLAGGED_MIN_UNCERTAINTY) * distance
    } else {
        (score / threshold).powi(2).clamp(MIN_UNCERTAINTY, 1.0)
    }
}

/// The review priority of one template (higher first).
pub fn priority(input: &ReviewInput, threshold: f32) -> f32 {
    let u = if input.learned_normal {
        0.5 * uncertainty(input.prior, threshold)
    } else {
        uncertainty(input.score, threshold)
    };
    #[allow(clippy::cast_precision_loss)] // line counts far below 2^24 matter here
    let frequency = (1.0 + input.lines as f32).ln();
    u * frequency * (0.2 + input.severity.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(score: f32, lines: u64, severity: f32) -> ReviewInput {
        ReviewInput {
            score,
            lines,
            severity,
            prior: score,
            learned_normal: false,
        }
    }

    #[test]
    fn uncertainty_peaks_at_the_threshold() {
        assert!((uncertainty(0.6, 0.6) - 1.0).abs() < 1e-6);
        assert!((uncertainty(0.0, 0.6) - MIN_UNCERTAINTY).abs() < 1e-6);
        assert!((uncertainty(1.0, 0.6) - FLAGGED_MIN_UNCERTAINTY).abs() < 1e-6);
        assert!(uncertainty(0.7, 0.6) > uncertainty(0.9, 0.6));
        assert!(uncertainty(0.5, 0.6) > uncertainty(0.2, 0.6));
    }

    #[test]
    fn uncertain_frequent_severe_comes_first() {
        let t = 0.6;
        let uncertain_frequent_critical = priority(&input(0.62, 40, 1.0), t);
        let certain_frequent_critical = priority(&input(0.98, 40, 1.0), t);
        let uncertain_rare_critical = priority(&input(0.62, 1, 1.0), t);
        let uncertain_frequent_info = priority(&input(0.55, 40, 0.1), t);
        assert!(uncertain_frequent_critical > certain_frequent_critical);
        assert!(uncertain_frequent_critical > uncertain_rare_critical);
        assert!(uncertain_frequent_critical > uncertain_frequent_info);
        let mut learned = input(0.62, 40, 1.0);
        learned.learned_normal = true;
        assert!(priority(&learned, t) < uncertain_frequent_critical);
    }

    #[test]
    fn a_learned_normal_template_is_ranked_by_its_prior_halved() {
        let t = 0.6;
        // Lowered to 0.23 by the learned-normal rule; its prior read 0.48.
        let learned = ReviewInput {
            score: 0.23,
            lines: 3,
            severity: 0.1,
            prior: 0.48,
            learned_normal: true,
        };
        let unknown_at_its_prior = input(0.48, 3, 0.1);
        let p = priority(&learned, t);
        assert!((p - 0.5 * priority(&unknown_at_its_prior, t)).abs() < 1e-6);
        let routine = ReviewInput {
            prior: 0.12,
            ..learned
        };
        assert!(p > priority(&routine, t));
    }
}
