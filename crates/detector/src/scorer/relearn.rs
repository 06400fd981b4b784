//! What a template's earlier lines become once it is learned as normal.
//!
//! Before a template has shown steady presence it is judged by its prior, and a line
//! whose level alone reaches the threshold (CRITICAL under the defaults) is flagged
//! whatever it says: a source that logs a routine event at its highest level gets its
//! first few lines of it flagged. When the template is then learned as normal (the first
//! line [`Score::newly_learned_normal`](super::Score::newly_learned_normal) marks), those
//! earlier verdicts were the level's, not the template's: of its latest
//! [`RESCORE_MAX_LINES`] lines, whatever their age, those the level alone flagged are
//! re-scored as normal, as an operator's answer re-scores a template's latest lines, when
//! its lines at those levels have shown steady presence themselves: they came in at least
//! `normal_after_windows` separate episodes among those lines, runs of lines at most
//! [`EPISODE_GAP_MS`] apart
//! ([`level_is_steady`]). A CRITICAL burst of a pattern that is otherwise quiet INFO
//! chatter was never routine at CRITICAL, and an anomalous burst that comes back once is
//! two episodes however many windows it fills. Two kinds stay as scored:
//!
//! - lines the level alone did not flag (they were flagged on novelty or on what the words
//!   say): that evidence was true when they came. Unless the template is a **continuous
//!   stream**: present in every presence window since its first line (at least an hour
//!   of them, as learning needs; its first line among the latest lines). A new chatty message that then never stops
//!   ("Failed to renew lease ... Will retry shortly" every few seconds) has become the
//!   steady state, and its first hour is re-scored whatever its level;
//! - lines of a **burst window**: a time window of `presence_window_ms` that holds more
//!   than [`BURST_RATE_FACTOR`] times the template's mean lines per window in the other
//!   windows it was ever seen in (its other lines over its other presence windows), and
//!   more than [`BURST_MIN_LINES`]. A burst stays suspect even when the template is
//!   otherwise steady (the rule for learned normal). A routine event that
//!   always comes as a clump of a few lines (a program-load failure and the register
//!   dumps after it) is not a burst: its clumps are what its windows hold.
//!
//! The eval's replay ([`crate::replay`]) and the scoring workers' write (SQL over the
//! stored entries, `db::templates::rescore_learned_normal`) apply the same rule with these
//! constants, each on the line the template was learned on and with the template's
//! [`Lifetime`] as of that line (later lines of the same batch do not count), so the
//! figures of `make eval` are the product's however a client batches its lines
//! (`make eval-stack` replays a labelled file through the running product to show it).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{ScorerConfig, Severity};

/// How many of a template's latest lines are re-scored when it is learned as normal (and
/// when an operator answers, `db::templates::RESCORE_MAX_ENTRIES`): a count, whatever
/// their age, because on a quiet source a template's first lines came days before it could
/// show steady presence; a count bounds what one re-score rewrites.
pub const RESCORE_MAX_LINES: usize = 10_000;

/// A window holding more than this many times the template's mean lines per window is a
/// burst, and its lines keep their verdict.
pub const BURST_RATE_FACTOR: f64 = 3.0;

/// A window with at most this many lines is never a burst.
pub const BURST_MIN_LINES: u64 = 2;

/// Share of the presence windows from a template's first line to now that it must have
/// been seen in among its latest lines to count as a continuous stream (every one of them).
pub const CONTINUOUS_COVERAGE: f64 = 1.0;

/// A template's whole life so far, in presence windows (`timestamp div presence_window_ms`).
/// Each [`Score`](super::Score) carries its template's, as of that line
/// ([`Score::lifetime`](super::Score::lifetime)): on the line it is learned as normal on,
/// that is what the re-score judges bursts by, whatever lines came after it in the same
/// batch, so that the verdicts do not depend on how a client batched its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Lifetime {
    /// Its lines, ever.
    pub lines: u64,
    /// The presence windows it was seen in, ever.
    pub windows: u32,
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

/// The plan for a template learned as normal, from its latest lines per window
/// (`window -> lines`, every line counted, the learning one included; at most
/// [`RESCORE_MAX_LINES`]) and its lifetime.
pub fn plan(latest: &HashMap<i64, u64>, lifetime: Lifetime) -> Rescore {
    #[allow(clippy::cast_precision_loss)] // windows of at most RESCORE_MAX_LINES lines
    let continuous = latest.len() as f64 >= CONTINUOUS_COVERAGE * lifetime.windows_spanned() as f64;
    Rescore {
        windows: latest
            .iter()
            .filter(|&(_, &n)| n <= burst_bound(lifetime, n))
            .map(|(&w, _)| w)
            .collect(),
        any_level: continuous,
    }
}

/// The most lines a window holding `in_window` of them may hold and not be a burst:
/// `max(BURST_MIN_LINES, ceil(BURST_RATE_FACTOR x` the lifetime's other lines per other
/// window it was seen in`))`.
pub fn burst_bound(lifetime: Lifetime, in_window: u64) -> u64 {
    let others = u64::from(lifetime.windows.saturating_sub(1).max(1));
    #[allow(clippy::cast_precision_loss)] // line and window counts far below 2^52
    let rate = lifetime.lines.saturating_sub(in_window) as f64 / others as f64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // small, positive
    let bound = (BURST_RATE_FACTOR * rate).ceil() as u64;
    bound.max(BURST_MIN_LINES)
}

/// Lines of a template more than this far apart are separate arrivals; closer ones are
/// one burst or clump (a failure and the register dumps after it come seconds apart).
pub const EPISODE_GAP_MS: i64 = 60_000;

/// Whether a line at `now_ms` starts a new arrival after the previous line at
/// `previous_ms` (none: it is the first).
pub fn starts_episode(previous_ms: Option<i64>, now_ms: i64) -> bool {
    previous_ms.is_none_or(|p| now_ms.saturating_sub(p) > EPISODE_GAP_MS)
}

/// Whether a template's latest lines at the [`levels_flagged_alone`] (their times, in
/// order) count as steady at that level: they came in at least
/// `normal_after_windows` separate episodes (runs of lines at most [`EPISODE_GAP_MS`]
/// apart), as many as learning needs windows. A burst, or a burst that comes back once,
/// is one or two episodes however many lines and windows it fills.
pub fn level_is_steady(times: &[i64], cfg: &ScorerConfig) -> bool {
    episodes(times) >= u64::from(cfg.normal_after_windows)
}

/// Episodes among `times` (in order): runs of lines at most [`EPISODE_GAP_MS`] apart.
pub fn episodes(times: &[i64]) -> u64 {
    let mut n = 0;
    let mut last: Option<i64> = None;
    for &t in times {
        if starts_episode(last, t) {
            n += 1;
        }
        last = Some(t);
    }
    n
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
    .filter(|&s| cfg.flags_alone(s))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifetime(day: &HashMap<i64, u64>) -> Lifetime {
        Lifetime {
            lines: day.values().sum(),
            windows: u32::try_from(day.len()).unwrap(),
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
            windows: 12,
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
            windows: 20,
            first_window: -1000,
            last_window: 6,
        };
        assert!(!plan(&every, old).any_level);
    }

    #[test]
    fn clumps_of_a_sparse_pattern_are_not_bursts() {
        // Five lines once an hour: each window it is seen in holds five.
        let w: HashMap<i64, u64> = [(0, 5), (6, 5), (12, 5)].into_iter().collect();
        assert_eq!(plan(&w, lifetime(&w)).windows.len(), 3);
        // But twenty in one of them is.
        let w: HashMap<i64, u64> = [(0, 5), (6, 20), (12, 5)].into_iter().collect();
        let p = plan(&w, lifetime(&w));
        assert!(!p.windows.contains(&6), "{p:?}");
    }

    #[test]
    fn a_level_is_steady_in_as_many_episodes_as_learning_needs_windows() {
        let cfg = ScorerConfig::default();
        let minute = 60_000;
        // Clumps of five lines 10 s apart, once an hour: an episode each.
        let clumps: Vec<i64> = (0..15)
            .map(|k| (k / 5) * 60 * minute + (k % 5) * 10_000)
            .collect();
        assert_eq!(episodes(&clumps), 3);
        assert!(level_is_steady(&clumps, &cfg));
        assert!(!level_is_steady(&clumps[..10], &cfg));
        // A line every two minutes: every line is an arrival of its own.
        let steady: Vec<i64> = (0..5).map(|k| k * 2 * minute).collect();
        assert!(level_is_steady(&steady, &cfg));
        // A 60-line burst, a line every 2 s, that comes back five hours later: two
        // episodes, however many windows they fill.
        let bursts: Vec<i64> = (0..120)
            .map(|k| (k / 60) * 300 * minute + (k % 60) * 2_000)
            .collect();
        assert_eq!(episodes(&bursts), 2);
        assert!(!level_is_steady(&bursts, &cfg));
    }

    #[test]
    fn two_lines_in_a_window_are_never_a_burst() {
        let w: HashMap<i64, u64> = [(0, 1), (100, 2)].into_iter().collect();
        assert_eq!(plan(&w, lifetime(&w)).windows.len(), 2);
    }
}
