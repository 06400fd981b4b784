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
//! - lines the level alone did not flag (they were flagged on novelty or on what the words
//!   say): that evidence was true when they came. Unless the template is a **continuous
//!   stream**: first seen within the day and present in every presence window since (at
//!   least an hour of them, as learning needs). A new chatty message that then never stops
//!   ("Failed to renew lease ... Will retry shortly" every few seconds) has become the
//!   steady state, and its first hour is re-scored whatever its level;
//! - lines of a **burst window**: a time window of `presence_window_ms` that holds more
//!   than [`BURST_RATE_FACTOR`] times the template's mean lines per window over its whole
//!   life (its line count over the windows from its first line to its last), and more
//!   than [`BURST_MIN_LINES`]. A burst stays suspect even when the template is otherwise
//!   steady (the rule for learned normal), also when the burst is all the day
//!   holds of a template whose quiet lines came days before.
//!
//! The eval's replay ([`crate::replay`]) and the scoring workers' write (SQL over the
//! stored entries and the template's row, `db::templates::rescore_learned_normal`) apply
//! the same rule with these constants, so the figures of `make eval` are the product's.

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

/// Share of the presence windows from a template's first line to now that it must have
/// been seen in within the day to count as a continuous stream (every one of them).
pub const CONTINUOUS_COVERAGE: f64 = 1.0;

/// A template's whole life so far, in presence windows (`timestamp div presence_window_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// Its lines, ever.
    pub lines: u64,
    /// The windows of its first and of its last line.
    pub first_window: i64,
    pub last_window: i64,
}

impl Lifetime {
    fn windows_spanned(&self) -> i64 {
        (self.last_window - self.first_window + 1).max(1)
    }
}

/// What learning a template normal re-scores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rescore {
    /// The windows whose flagged lines are re-scored (not bursts).
    pub windows: HashSet<i64>,
    /// Every level's flagged lines are re-scored (a continuous stream), not only those of
    /// [`levels_flagged_alone`].
    pub any_level: bool,
}

/// The plan for a template learned as normal, from its lines per window within the day
/// (`window -> lines`, every line counted, the learning one included) and its lifetime.
pub fn plan(day: &HashMap<i64, u64>, lifetime: Lifetime) -> Rescore {
    let bound = burst_bound(lifetime);
    #[allow(clippy::cast_precision_loss)] // a day's windows
    let continuous = day.len() as f64 >= CONTINUOUS_COVERAGE * lifetime.windows_spanned() as f64;
    Rescore {
        windows: day
            .iter()
            .filter(|&(_, &n)| n <= bound)
            .map(|(&w, _)| w)
            .collect(),
        any_level: continuous,
    }
}

/// The most lines a window may hold and not be a burst: `max(BURST_MIN_LINES,
/// ceil(BURST_RATE_FACTOR x lifetime lines per window))`.
pub fn burst_bound(lifetime: Lifetime) -> u64 {
    #[allow(clippy::cast_precision_loss)] // line and window counts far below 2^52
    let rate = lifetime.lines as f64 / lifetime.windows_spanned() as f64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // small, positive
    let bound = (BURST_RATE_FACTOR * rate).ceil() as u64;
    bound.max(BURST_MIN_LINES)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn lifetime(day: &HashMap<i64, u64>) -> Lifetime {
        Lifetime {
            lines: day.values().sum(),
            first_window: *day.keys().min().unwrap(),
            last_window: *day.keys().max().unwrap(),
        }
    }

    #[test]
    fn only_critical_reaches_the_threshold_alone_by_default() {
        assert_eq!(
            levels_flagged_alone(&ScorerConfig::default()),
            vec![Severity::Critical]
        );
    }

    #[test]
    fn a_burst_window_is_not_re_scored() {
        // One line a window for 13 windows, then 29 lines in two windows.
        let mut w: HashMap<i64, u64> = (0..13).map(|k| (k, 1)).collect();
        w.insert(13, 14);
        w.insert(14, 15);
        let p = plan(&w, lifetime(&w));
        assert!(p.windows.contains(&0) && p.windows.contains(&12));
        assert!(
            !p.windows.contains(&13) && !p.windows.contains(&14),
            "{p:?}"
        );
    }

    #[test]
    fn a_burst_that_is_all_the_day_holds_is_still_a_burst() {
        // Quiet lines for two weeks before; today only the burst.
        let day: HashMap<i64, u64> = [(2000, 12), (2001, 11)].into_iter().collect();
        let life = Lifetime {
            lines: 33,
            first_window: 0,
            last_window: 2001,
        };
        let p = plan(&day, life);
        assert!(p.windows.is_empty(), "{p:?}");
        assert!(!p.any_level, "{p:?}");
    }

    #[test]
    fn a_stream_in_every_window_since_it_began_is_continuous() {
        let every: HashMap<i64, u64> = (0..7).map(|k| (k, 3)).collect();
        assert!(plan(&every, lifetime(&every)).any_level);
        let sparse: HashMap<i64, u64> = (0..7).map(|k| (2 * k, 3)).collect();
        let p = plan(&sparse, lifetime(&sparse));
        assert!(!p.any_level);
        assert_eq!(p.windows.len(), 7);
        // Every window today, but first seen a week ago: not a new stream.
        let old = Lifetime {
            lines: 40,
            first_window: -1000,
            last_window: 6,
        };
        assert!(!plan(&every, old).any_level);
    }

    #[test]
    fn two_lines_in_a_window_are_never_a_burst() {
        let w: HashMap<i64, u64> = [(0, 1), (100, 2)].into_iter().collect();
        assert_eq!(plan(&w, lifetime(&w)).windows.len(), 2);
    }
}
