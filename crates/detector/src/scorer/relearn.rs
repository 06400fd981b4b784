//! What a template's earlier lines become once it is learned as normal.
//!
//! Before a template has shown steady presence it is judged by its prior, and a line
//! whose level alone reaches the threshold (CRITICAL under the defaults) is flagged
//! whatever it says: a source that logs a routine event at its highest level gets its
//! first few lines of it flagged. When the template is then learned as normal (the first
//! line [`Score::newly_learned_normal`](super::Score::newly_learned_normal) marks), those
//! earlier verdicts were the level's, not the template's: its lines of the last
//! [`RELEARN_WINDOW_MS`] that the level alone flagged are re-scored as normal, as an
//! operator's answer re-scores a template's recent lines. Two kinds stay as scored:
//!
//! - lines flagged for more than their level (novelty, what the words say, a neighbour's
//!   label): the evidence they were flagged on was true when they came;
//! - lines of a **burst window**: a time window of `presence_window_ms` that holds more
//!   than [`BURST_RATE_FACTOR`] times the template's mean lines per window over the span
//!   of its re-scored lines (and more than [`BURST_MIN_LINES`]). A burst stays suspect
//!   even when the template is otherwise steady (the rule for learned normal).
//!
//! The eval's replay ([`crate::replay`]) and the scoring workers' write (SQL over the
//! stored entries, `db::templates::rescore_learned_normal`) apply the same rule with these
//! constants, so the figures of `make eval` are the product's.

use std::collections::{HashMap, HashSet};

use super::{ScorerConfig, Severity};

/// How far back a template's lines are re-scored when it is learned as normal: the day
/// an operator's answer re-scores too.
pub const RELEARN_WINDOW_MS: i64 = 24 * 3_600_000;

/// A window holding more than this many times the template's mean lines per window is a
/// burst, and its lines keep their verdict.
pub const BURST_RATE_FACTOR: f64 = 3.0;

/// A window with at most this many lines is never a burst.
pub const BURST_MIN_LINES: u64 = 2;

/// The levels whose weight alone brings a line to the threshold (`severity_weight x
/// weight >= threshold`): CRITICAL with the defaults.
pub fn levels_flagged_alone(cfg: &ScorerConfig) -> Vec<Severity> {
    [
        Severity::Debug,
        Severity::Info,
        Severity::Warning,
        Severity::Error,
        Severity::Critical,
    ]
    .into_iter()
    .filter(|s| cfg.severity_weight * s.weight() >= cfg.threshold)
    .collect()
}

/// The most lines a window of a template may hold and not be a burst, given its lines per
/// window (`window -> lines`, every line of the re-score span counted).
pub fn burst_bound(lines_per_window: &HashMap<i64, u64>) -> u64 {
    let (Some(first), Some(last)) = (lines_per_window.keys().min(), lines_per_window.keys().max())
    else {
        return BURST_MIN_LINES;
    };
    let lines: u64 = lines_per_window.values().sum();
    #[allow(clippy::cast_precision_loss)] // a day's windows and lines
    let rate = lines as f64 / (last - first + 1) as f64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // small, positive
    let bound = (BURST_RATE_FACTOR * rate).ceil() as u64;
    bound.max(BURST_MIN_LINES)
}

/// The windows of `lines_per_window` that are not bursts.
pub fn steady_windows(lines_per_window: &HashMap<i64, u64>) -> HashSet<i64> {
    let bound = burst_bound(lines_per_window);
    lines_per_window
        .iter()
        .filter(|&(_, &n)| n <= bound)
        .map(|(&w, _)| w)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_critical_reaches_the_threshold_alone_by_default() {
        assert_eq!(
            levels_flagged_alone(&ScorerConfig::default()),
            vec![Severity::Critical]
        );
    }

    #[test]
    fn a_burst_window_is_not_steady() {
        // One line every window or so for 15 windows, then 29 lines in two windows.
        let mut w: HashMap<i64, u64> = (0..13).map(|k| (k, 1)).collect();
        w.insert(13, 14);
        w.insert(14, 15);
        let steady = steady_windows(&w);
        assert!(steady.contains(&0) && steady.contains(&12));
        assert!(!steady.contains(&13) && !steady.contains(&14), "{steady:?}");
    }

    #[test]
    fn an_even_rate_is_all_steady() {
        let w: HashMap<i64, u64> = (0..6).map(|k| (k * 3, 4)).collect();
        assert_eq!(steady_windows(&w).len(), 6);
        // Two lines in a window are never a burst, however quiet the rest.
        let w: HashMap<i64, u64> = [(0, 1), (100, 2)].into_iter().collect();
        assert_eq!(steady_windows(&w).len(), 2);
    }
}
