//! What the scorer learned per template, and its persisted form.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::levels::LevelUse;
use super::relearn::EPISODE_GAP_MS;
use super::{Label, Presence, ScorerConfig, Steadiness};
use crate::drain::{MinerState, TemplateId};

/// One template's line counts, presence over time and last verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct TemplateStats {
    /// Its lines, their time windows and arrivals (the same keys as before it was a
    /// struct of its own, so older saved states still read).
    #[serde(flatten)]
    pub(super) tally: PresenceTally,
    pub(super) first_seen_ms: i64,
    /// Timestamp of the template's last alert while its incident is open (no longer
    /// used; kept so older saved states still read).
    #[serde(default, skip_serializing)]
    pub(super) alerting_since_ms: Option<i64>,
    /// First seen after the warm-up was over.
    #[serde(default)]
    pub(super) new_after_warmup: bool,
    /// How unlike every template known before it the template was when first seen (0 for
    /// templates of the warm-up: they are what normal looks like).
    #[serde(default)]
    pub(super) novelty: f32,
    /// How settled the stream was when it was first seen (see `settled`): what its
    /// newness counts for.
    #[serde(default)]
    pub(super) settled: f32,
}

impl TemplateStats {
    /// A template with no line counted yet, first and last seen at the times given, its
    /// latest time window `window`.
    pub(super) fn unseen(
        first_seen_ms: i64,
        last_seen_ms: i64,
        window: i64,
        new_after_warmup: bool,
    ) -> Self {
        Self {
            tally: PresenceTally {
                last_seen_ms,
                window,
                ..PresenceTally::default()
            },
            first_seen_ms,
            alerting_since_ms: None,
            new_after_warmup,
            novelty: 0.0,
            settled: 0.0,
        }
    }

    /// Counts one line at `timestamp_ms`, in time window `window`: a new window or a new
    /// arrival when it is one, and an arrival at a level that flags alone when
    /// `flags_alone` (see [`PresenceTally::count_line`]).
    pub(super) fn count_line(&mut self, timestamp_ms: i64, window: i64, flags_alone: bool) {
        let before = self.tally.last_seen_ms;
        self.tally.count_line(timestamp_ms, window, flags_alone);
        self.tally.last_seen_ms = self.tally.last_seen_ms.max(before);
        self.first_seen_ms = self.first_seen_ms.min(timestamp_ms);
    }

    /// What the "learned normal" rule reads of it, in a stream that started at
    /// `stream_start_ms`.
    pub(super) fn steadiness(&self, stream_start_ms: i64) -> Steadiness {
        Steadiness {
            presence: self.presence(),
            count: self.tally.count,
            first_seen_ms: self.first_seen_ms,
            last_seen_ms: self.tally.last_seen_ms,
            stream_start_ms,
        }
    }

    /// Steady presence: enough windows or arrivals over long enough, no window holding
    /// too much of the template's lines.
    pub(super) fn learned_normal(&self, cfg: &ScorerConfig, stream_start_ms: i64) -> bool {
        cfg.is_learned_normal(&self.steadiness(stream_start_ms))
    }

    /// Steady presence by the time windows alone.
    pub(super) fn learned_by_windows(&self, cfg: &ScorerConfig, stream_start_ms: i64) -> bool {
        cfg.is_learned_by_windows(&self.steadiness(stream_start_ms))
    }

    pub(super) fn presence(&self) -> Presence {
        self.tally.presence()
    }

    /// From its first to its last line.
    pub(super) fn span_ms(&self) -> i64 {
        self.tally.last_seen_ms.saturating_sub(self.first_seen_ms)
    }
}

/// A template's presence counted line by line: its lines, the time windows and separate
/// arrivals they came in (all, and at the levels that flag a line by themselves). The
/// scorer keeps one per template; the `templates` table keeps one per template for every
/// replica, each worker adding its written lines to it under the row's lock, so that the
/// stored presence is the one a single scorer would have counted from every replica's
/// lines (not the largest of the replicas' separate views).
///
/// Lines need not come in time order: replicas commit their batches in whatever order
/// they finish, and clients send late lines. A line up to [`RECENT_WINDOWS`] windows
/// before the latest still counts its window ([`PresenceTally::window_bits`]), and one
/// among the latest [`RECENT_ARRIVALS`] arrivals (or in the gap between two of them)
/// joins, starts or bridges arrivals as it would have in order. Older lines count as lines
/// only. In time order every line is counted as before this was kept.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PresenceTally {
    /// Lines counted; with none, the other fields say nothing.
    pub count: u64,
    /// The latest line's time (milliseconds since the Unix epoch).
    pub last_seen_ms: i64,
    /// Time windows the lines came in ([`ScorerConfig::presence_window_ms`]).
    #[serde(default)]
    pub windows: u32,
    /// The latest window, its lines, and the most lines of any one window.
    #[serde(default)]
    pub window: i64,
    #[serde(default)]
    pub window_lines: u64,
    #[serde(default)]
    pub max_window_lines: u64,
    /// The latest [`RECENT_WINDOWS`] windows the lines came in: bit `i` is window
    /// `window - i` (0 in states and rows kept before it was: the latest window only).
    #[serde(default)]
    pub window_bits: u64,
    /// Separate arrivals (runs of lines at most [`EPISODE_GAP_MS`] apart), all and at
    /// the levels that flag alone.
    #[serde(default)]
    pub episodes: u32,
    #[serde(default)]
    pub level_episodes: u32,
    /// The latest line at a level that flags alone.
    #[serde(default)]
    pub level_last_ms: i64,
    /// The latest [`RECENT_ARRIVALS`] arrivals, all and at those levels, as (first line,
    /// last line), oldest first (empty in states and rows kept before they were: the
    /// latest line is then the only one known).
    #[serde(default)]
    pub arrivals: Vec<(i64, i64)>,
    #[serde(default)]
    pub level_arrivals: Vec<(i64, i64)>,
}

/// Windows before the latest in which a late line still counts its window.
pub const RECENT_WINDOWS: u32 = 64;
/// Latest arrivals kept per template, all and at the levels that flag alone: where a late
/// line is placed.
pub const RECENT_ARRIVALS: usize = 8;

impl PresenceTally {
    /// Counts one line at `timestamp_ms`, in time window `window` (its time divided by
    /// the window's length): a new window when none of its lines came in it yet, a new
    /// arrival when it came more than the episode gap from the lines around it, and an
    /// arrival at a level that flags alone when `flags_alone` (see the type's docs for
    /// lines out of time order).
    pub fn count_line(&mut self, timestamp_ms: i64, window: i64, flags_alone: bool) {
        let first = self.count == 0;
        self.count_window(first, window);
        let last_seen = (!first).then_some(self.last_seen_ms);
        self.episodes = place(&mut self.arrivals, self.episodes, last_seen, timestamp_ms);
        if flags_alone {
            let previous = (self.level_episodes > 0).then_some(self.level_last_ms);
            self.level_episodes = place(
                &mut self.level_arrivals,
                self.level_episodes,
                previous,
                timestamp_ms,
            );
            self.level_last_ms = previous.map_or(timestamp_ms, |p| p.max(timestamp_ms));
        }
        self.last_seen_ms = last_seen.map_or(timestamp_ms, |p| p.max(timestamp_ms));
        self.count += 1;
    }

    fn count_window(&mut self, first: bool, window: i64) {
        if first || window > self.window {
            let shift = if first { 64 } else { window - self.window };
            let bits = if self.window_bits == 0 {
                1
            } else {
                self.window_bits
            };
            self.window_bits = if shift >= 64 { 1 } else { (bits << shift) | 1 };
            self.windows += 1;
            self.window = window;
            self.window_lines = 1;
        } else if window == self.window {
            self.window_lines += 1;
        } else {
            let back = self.window - window;
            let bits = if self.window_bits == 0 {
                1
            } else {
                self.window_bits
            };
            if back < i64::from(RECENT_WINDOWS) && bits & (1 << back) == 0 {
                self.window_bits = bits | (1 << back);
                self.windows += 1;
            }
        }
        self.max_window_lines = self.max_window_lines.max(self.window_lines);
    }

    /// Its presence, as the "learned normal" rule reads it.
    pub fn presence(&self) -> Presence {
        Presence {
            windows: self.windows,
            max_window_lines: self.max_window_lines,
            episodes: self.episodes,
            level_episodes: self.level_episodes,
        }
    }
}

/// Places a line at `t` among the latest `arrivals` (runs of lines at most
/// [`EPISODE_GAP_MS`] apart) of a template with `episodes` arrivals so far and its latest
/// line at `latest` (none: this is the first); returns the arrivals now. A line within the
/// gap of an arrival joins it, one that closes the gap between two joins them into one,
/// any other starts an arrival, unless it came before every arrival kept and older ones
/// were let go (it may belong to one of those: it counts as a line only).
fn place(arrivals: &mut Vec<(i64, i64)>, episodes: u32, latest: Option<i64>, t: i64) -> u32 {
    let Some(latest) = latest else {
        arrivals.clear();
        arrivals.push((t, t));
        return episodes + 1;
    };
    if arrivals.is_empty() {
        // Kept before arrivals were: the latest line is all that is known of them.
        arrivals.push((latest, latest));
    }
    let whole = episodes as usize <= arrivals.len();
    let i = arrivals.partition_point(|&(start, _)| start <= t);
    let joins_before = i > 0 && t <= arrivals[i - 1].1.saturating_add(EPISODE_GAP_MS);
    let joins_after = i < arrivals.len() && arrivals[i].0.saturating_sub(t) <= EPISODE_GAP_MS;
    match (joins_before, joins_after) {
        (true, true) => {
            arrivals[i - 1].1 = arrivals[i - 1].1.max(arrivals[i].1);
            arrivals.remove(i);
            episodes.saturating_sub(1).max(1)
        }
        (true, false) => {
            arrivals[i - 1].1 = arrivals[i - 1].1.max(t);
            episodes
        }
        (false, true) => {
            arrivals[i].0 = t;
            episodes
        }
        (false, false) if i == 0 && !whole => episodes,
        (false, false) => {
            arrivals.insert(i, (t, t));
            if arrivals.len() > RECENT_ARRIVALS {
                arrivals.remove(0);
            }
            episodes + 1
        }
    }
}

/// Everything the scorer learned, for persistence (serde). Embeddings are included so a
/// restarted worker does not re-run the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScorerState {
    pub miner: MinerState,
    pub embeddings: HashMap<TemplateId, Vec<f32>>,
    pub labels: HashMap<TemplateId, Label>,
    /// Normal labels that cover only up to a level (see `Scorer::set_label_up_to`).
    #[serde(default)]
    pub(super) label_levels: HashMap<TemplateId, super::Severity>,
    pub(super) stats: HashMap<TemplateId, TemplateStats>,
    pub(super) lines_seen: u64,
    pub(super) first_line_ms: Option<i64>,
    /// Which sources mark their trouble by level (each replica counts its own lines; a
    /// state without it starts afresh, as with no levels seen).
    #[serde(default)]
    pub(super) levels: LevelUse,
    /// When each template was last scored, in the scorer's own order of lines (not the
    /// lines' timestamps, which clients choose): what eviction past
    /// [`ScorerConfig::max_templates`] goes by. Templates without one are the oldest.
    #[serde(default)]
    pub(super) recency: HashMap<TemplateId, u64>,
    /// Which of the latest lines started a template (how settled the stream is), so a
    /// scorer rebuilt from its state (a replica merging templates other replicas stored)
    /// does not start counting afresh.
    #[serde(default)]
    pub(super) births: super::settled::Births,
}

/// A template's counts as known outside this scorer (the `templates` table, where every
/// replica adds its lines), for [`ScorerState::restore_template`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TemplateCounts {
    /// The template's line count as the caller settled it (typically the larger of its
    /// own and the other's): replaces the scorer's.
    pub count: u64,
    /// Its first line, milliseconds since the Unix epoch.
    pub first_seen_ms: i64,
    /// Its presence as counted elsewhere (`tally.count`: the lines counted there).
    pub tally: PresenceTally,
    /// Whether `tally` knows its latest window (a row stored before it did: the window of
    /// its last line is taken, with none of its lines known).
    pub window_known: bool,
    /// When it was first seen (by whichever replica): after the warm-up, and how unlike
    /// every template known then. Used for a template new to this scorer.
    pub new_after_warmup: bool,
    pub novelty: f32,
    /// How settled the stream was when it was first seen.
    pub settled: f32,
}

impl ScorerState {
    /// Brings a template's counts up to what is known elsewhere, before the state is
    /// loaded with [`super::Scorer::from_state`]. The line count is set to
    /// `counts.count`, and the first sighting widens to cover `counts`. Presence is
    /// taken from `counts.tally` when it counted at least the lines counted here (the
    /// table counts every replica's written lines: this replica's are among them);
    /// otherwise (lines scored here and not yet written) each number takes the larger of
    /// the two. A template without counts here starts from `counts`, with its first
    /// sighting's newness and novelty. Returns its presence after the merge.
    pub fn restore_template(
        &mut self,
        id: &TemplateId,
        counts: TemplateCounts,
        config: &ScorerConfig,
    ) -> Presence {
        let created = !self.stats.contains_key(id);
        let stats = self.stats.entry(id.clone()).or_insert_with(|| {
            let mut stats = TemplateStats::unseen(
                counts.first_seen_ms,
                counts.tally.last_seen_ms,
                0,
                counts.new_after_warmup,
            );
            stats.novelty = counts.novelty;
            stats.settled = counts.settled;
            stats
        });
        let mut other = counts.tally;
        if !counts.window_known {
            other.window = other
                .last_seen_ms
                .div_euclid(config.presence_window_ms.max(1));
            other.window_lines = 0;
            other.window_bits = 0;
        }
        let mine = &mut stats.tally;
        if created || other.count >= mine.count {
            other.last_seen_ms = other.last_seen_ms.max(mine.last_seen_ms);
            *mine = other;
        } else {
            if other.window > mine.window {
                mine.window = other.window;
                mine.window_lines = other.window_lines;
                mine.window_bits = other.window_bits;
            } else if other.window == mine.window {
                mine.window_lines = mine.window_lines.max(other.window_lines);
                mine.window_bits |= other.window_bits;
            }
            mine.windows = mine.windows.max(other.windows);
            mine.max_window_lines = mine.max_window_lines.max(other.max_window_lines);
            mine.episodes = mine.episodes.max(other.episodes);
            mine.level_episodes = mine.level_episodes.max(other.level_episodes);
            mine.level_last_ms = mine.level_last_ms.max(other.level_last_ms);
            mine.last_seen_ms = mine.last_seen_ms.max(other.last_seen_ms);
        }
        mine.count = counts.count;
        stats.first_seen_ms = stats.first_seen_ms.min(counts.first_seen_ms);
        stats.presence()
    }

    /// Counts lines seen elsewhere towards the warm-up: at least `lines_seen` lines, and
    /// the stream started at the earlier of the two first lines.
    pub fn merge_warmup(&mut self, lines_seen: u64, first_line_ms: Option<i64>) {
        self.lines_seen = self.lines_seen.max(lines_seen);
        self.first_line_ms = match (self.first_line_ms, first_line_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;
    const WINDOW: i64 = 10 * MINUTE;

    fn count(stats: &mut TemplateStats, at_ms: i64, flags_alone: bool) {
        stats.count_line(at_ms, at_ms.div_euclid(WINDOW), flags_alone);
    }

    #[test]
    fn a_burst_is_one_arrival_and_lines_a_minute_apart_are_separate_ones() {
        let mut stats = TemplateStats::unseen(0, 0, 0, true);
        // A burst of 20 INFO lines, 2 s apart, in the first window.
        for i in 0..20 {
            count(&mut stats, i * 2_000, false);
        }
        assert_eq!(
            (stats.tally.count, stats.tally.windows, stats.tally.episodes),
            (20, 1, 1)
        );
        assert_eq!(stats.tally.max_window_lines, 20);
        // Two more lines, each more than a minute after the previous one, both in one later
        // window: two arrivals, one window.
        count(&mut stats, 25 * MINUTE, false);
        count(&mut stats, 27 * MINUTE, false);
        assert_eq!(
            (stats.tally.count, stats.tally.windows, stats.tally.episodes),
            (22, 2, 3)
        );
        assert_eq!(stats.span_ms(), 27 * MINUTE);
        // None of them was at a level that flags alone.
        assert_eq!(stats.tally.level_episodes, 0);
    }

    #[test]
    fn arrivals_at_a_level_that_flags_alone_are_counted_apart_from_the_others() {
        let mut stats = TemplateStats::unseen(0, 0, 0, true);
        count(&mut stats, 0, false);
        // A CRITICAL clump (three lines seconds apart), an INFO line, a second clump.
        for t in [5 * MINUTE, 5 * MINUTE + 3_000, 5 * MINUTE + 6_000] {
            count(&mut stats, t, true);
        }
        count(&mut stats, 8 * MINUTE, false);
        count(&mut stats, 8 * MINUTE + 30_000, true);
        assert_eq!(stats.tally.episodes, 3);
        // The second CRITICAL line came 3.5 minutes after the clump: a separate arrival at
        // that level, though only 30 s after the INFO line.
        assert_eq!(stats.tally.level_episodes, 2);
        assert_eq!(stats.presence().level_episodes, 2);
    }

    /// Counts `lines` (minutes, flags alone) into a fresh tally, in the order given.
    fn tally_of(lines: &[(i64, bool)]) -> PresenceTally {
        let mut t = PresenceTally::default();
        for &(m, flags) in lines {
            t.count_line(m * MINUTE, (m * MINUTE).div_euclid(WINDOW), flags);
        }
        t
    }

    #[test]
    fn batches_counted_out_of_order_give_the_windows_and_arrivals_of_time_order() {
        // A routine pattern: clumps of CRITICAL lines and single INFO lines over five
        // hours, sent as batches of four lines, which two workers commit in any order.
        let lines: Vec<(i64, bool)> = [
            0, 1, 25, 26, 27, 48, 70, 71, 95, 120, 121, 122, 150, 151, 180, 200, 230, 231, 260, 290,
        ]
        .into_iter()
        .enumerate()
        .map(|(i, m)| (m, i % 3 != 0))
        .collect();
        let in_order = tally_of(&lines);
        assert_eq!(
            (in_order.windows, in_order.episodes, in_order.level_episodes),
            (12, 12, 11),
            "{in_order:?}"
        );
        let batches: Vec<&[(i64, bool)]> = lines.chunks(4).collect();
        for order in [[1, 0, 3, 2, 4], [0, 2, 1, 4, 3], [2, 1, 0, 3, 4]] {
            let shuffled: Vec<(i64, bool)> = order
                .iter()
                .flat_map(|&b| batches[b].iter().copied())
                .collect();
            let t = tally_of(&shuffled);
            assert_eq!(
                (
                    t.count,
                    t.windows,
                    t.episodes,
                    t.level_episodes,
                    t.last_seen_ms
                ),
                (
                    in_order.count,
                    in_order.windows,
                    in_order.episodes,
                    in_order.level_episodes,
                    in_order.last_seen_ms
                ),
                "batches in order {order:?}"
            );
        }
        // Every batch in reverse: the windows are all within the latest 64, but arrivals
        // before the latest ones kept count as lines only (never as more arrivals).
        let reversed: Vec<(i64, bool)> = batches
            .iter()
            .rev()
            .flat_map(|b| b.iter().copied())
            .collect();
        let t = tally_of(&reversed);
        assert_eq!((t.count, t.windows), (in_order.count, in_order.windows));
        assert!(
            t.episodes <= in_order.episodes && t.episodes >= RECENT_ARRIVALS as u32,
            "{t:?}"
        );
    }

    #[test]
    fn a_late_line_joins_bridges_or_starts_an_arrival() {
        let mut t = tally_of(&[(0, false), (10, false)]);
        assert_eq!((t.windows, t.episodes), (2, 2));
        // Half a minute after the first line: it joins that arrival (same window too).
        t.count_line(30_000, 0, false);
        assert_eq!((t.count, t.windows, t.episodes), (3, 2, 2));
        // Five minutes in: its own arrival, in the first window.
        t.count_line(5 * MINUTE, 0, false);
        assert_eq!((t.windows, t.episodes), (2, 3));
        // Lines that close the gaps: 5 to 10 minutes, a minute apart, join the two.
        for m in 6..10 {
            t.count_line(m * MINUTE, 0, false);
        }
        assert_eq!(t.episodes, 2, "{t:?}");
        assert_eq!(t.last_seen_ms, 10 * MINUTE);
        // A line in an earlier window (the pattern's third) counts it once.
        let mut t = tally_of(&[(0, false), (30, false)]);
        t.count_line(15 * MINUTE, 1, false);
        t.count_line(16 * MINUTE, 1, false);
        assert_eq!((t.windows, t.episodes), (3, 3));
    }

    #[test]
    fn a_line_older_than_the_arrivals_kept_counts_as_a_line_only() {
        // Twelve arrivals an hour apart: the first four are no longer kept.
        let mut t = tally_of(&(0..12).map(|h| (h * 60, false)).collect::<Vec<_>>());
        assert_eq!((t.episodes, t.arrivals.len()), (12, RECENT_ARRIVALS));
        // Twenty minutes after the first: it may belong to an arrival let go.
        t.count_line(20 * MINUTE, 2, false);
        assert_eq!((t.count, t.episodes), (13, 12));
        // Between the 10th and 11th arrival: a new one.
        t.count_line(
            (9 * 60 + 30) * MINUTE,
            (9 * 60 + 30) * MINUTE / WINDOW,
            false,
        );
        assert_eq!(t.episodes, 13);
    }
}
