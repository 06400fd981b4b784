//! What the scorer learned per template, and its persisted form.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::levels::LevelUse;
use super::relearn::starts_episode;
use super::{Label, Presence, ScorerConfig, Steadiness};
use crate::drain::{MinerState, TemplateId};

/// One template's line counts, presence over time and last verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct TemplateStats {
    pub(super) count: u64,
    pub(super) first_seen_ms: i64,
    pub(super) last_seen_ms: i64,
    /// Timestamp of the template's last alert while its incident is open (no longer
    /// used; kept so older saved states still read).
    #[serde(default, skip_serializing)]
    pub(super) alerting_since_ms: Option<i64>,
    /// Time windows (see [`ScorerConfig::presence_window_ms`]) the template was seen in.
    #[serde(default)]
    pub(super) windows: u32,
    /// The latest window it was seen in, its lines there, and the most lines of any one.
    #[serde(default)]
    pub(super) window: i64,
    #[serde(default)]
    pub(super) window_lines: u64,
    #[serde(default)]
    pub(super) max_window_lines: u64,
    /// Separate arrivals (see [`Presence::episodes`]).
    #[serde(default)]
    pub(super) episodes: u32,
    /// Separate arrivals of its lines at the levels that flag a line by themselves
    /// ([`Presence::level_episodes`]), and the last such line.
    #[serde(default)]
    pub(super) level_episodes: u32,
    #[serde(default)]
    pub(super) level_last_ms: i64,
    /// First seen after the warm-up was over.
    #[serde(default)]
    pub(super) new_after_warmup: bool,
    /// How unlike every template known before it the template was when first seen (0 for
    /// templates of the warm-up: they are what normal looks like).
    #[serde(default)]
    pub(super) novelty: f32,
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
            count: 0,
            first_seen_ms,
            last_seen_ms,
            alerting_since_ms: None,
            windows: 0,
            window,
            window_lines: 0,
            max_window_lines: 0,
            episodes: 0,
            level_episodes: 0,
            level_last_ms: 0,
            new_after_warmup,
            novelty: 0.0,
        }
    }

    /// Counts one line at `timestamp_ms`, in time window `window`: a new window or a new
    /// arrival when it is one, and an arrival at a level that flags alone when
    /// `flags_alone` (see [`PresenceTally::count_line`]).
    pub(super) fn count_line(&mut self, timestamp_ms: i64, window: i64, flags_alone: bool) {
        let mut tally = self.tally();
        tally.count_line(timestamp_ms, window, flags_alone);
        self.count = tally.lines;
        self.last_seen_ms = self.last_seen_ms.max(tally.last_seen_ms);
        self.windows = tally.windows;
        self.window = tally.window;
        self.window_lines = tally.window_lines;
        self.max_window_lines = tally.max_window_lines;
        self.episodes = tally.episodes;
        self.level_episodes = tally.level_episodes;
        self.level_last_ms = tally.level_last_ms;
        self.first_seen_ms = self.first_seen_ms.min(timestamp_ms);
    }

    /// Its presence as counted line by line.
    pub(super) fn tally(&self) -> PresenceTally {
        PresenceTally {
            lines: self.count,
            last_seen_ms: self.last_seen_ms,
            windows: self.windows,
            window: self.window,
            window_lines: self.window_lines,
            max_window_lines: self.max_window_lines,
            episodes: self.episodes,
            level_episodes: self.level_episodes,
            level_last_ms: self.level_last_ms,
        }
    }

    /// What the "learned normal" rule reads of it, in a stream that started at
    /// `stream_start_ms`.
    pub(super) fn steadiness(&self, stream_start_ms: i64) -> Steadiness {
        Steadiness {
            presence: self.presence(),
            count: self.count,
            first_seen_ms: self.first_seen_ms,
            last_seen_ms: self.last_seen_ms,
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
        Presence {
            windows: self.windows,
            max_window_lines: self.max_window_lines,
            episodes: self.episodes,
            level_episodes: self.level_episodes,
        }
    }

    /// From its first to its last line.
    pub(super) fn span_ms(&self) -> i64 {
        self.last_seen_ms.saturating_sub(self.first_seen_ms)
    }
}

/// A template's presence counted line by line: its lines, the time windows and separate
/// arrivals they came in (all, and at the levels that flag a line by themselves). The
/// scorer keeps one per template; the `templates` table keeps one per template for every
/// replica, each worker adding its written lines to it under the row's lock, so that the
/// stored presence is the one a single scorer would have counted from every replica's
/// lines (not the largest of the replicas' separate views).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PresenceTally {
    /// Lines counted; with none, the other fields say nothing.
    pub lines: u64,
    /// The latest line's time (milliseconds since the Unix epoch).
    pub last_seen_ms: i64,
    /// Time windows the lines came in ([`ScorerConfig::presence_window_ms`]).
    pub windows: u32,
    /// The latest window, its lines, and the most lines of any one window.
    pub window: i64,
    pub window_lines: u64,
    pub max_window_lines: u64,
    /// Separate arrivals (lines more than [`super::relearn::EPISODE_GAP_MS`] after the
    /// previous one), all and at the levels that flag alone, and the latest line at such a
    /// level.
    pub episodes: u32,
    pub level_episodes: u32,
    pub level_last_ms: i64,
}

impl PresenceTally {
    /// Counts one line at `timestamp_ms`, in time window `window` (its time divided by
    /// the window's length): a new window when it is later than the latest, a new arrival
    /// when it came more than the episode gap after the latest line, and an arrival at a
    /// level that flags alone when `flags_alone`. Lines are meant to come in time order; an
    /// earlier line than the latest counts as a line only.
    pub fn count_line(&mut self, timestamp_ms: i64, window: i64, flags_alone: bool) {
        let first = self.lines == 0;
        if first || window > self.window {
            self.windows += 1;
            self.window = window;
            self.window_lines = 0;
        }
        if starts_episode((!first).then_some(self.last_seen_ms), timestamp_ms) {
            self.episodes += 1;
        }
        if flags_alone {
            let previous = (self.level_episodes > 0).then_some(self.level_last_ms);
            if starts_episode(previous, timestamp_ms) {
                self.level_episodes += 1;
            }
            self.level_last_ms = self.level_last_ms.max(timestamp_ms);
        }
        self.last_seen_ms = if first {
            timestamp_ms
        } else {
            self.last_seen_ms.max(timestamp_ms)
        };
        self.lines += 1;
        self.window_lines += 1;
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
}

/// A template's counts as known outside this scorer (the `templates` table, where every
/// replica adds its lines), for [`ScorerState::restore_template`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TemplateCounts {
    /// The template's line count as the caller settled it (typically the larger of its
    /// own and the other's): replaces the scorer's.
    pub count: u64,
    /// Its first and last line, milliseconds since the Unix epoch.
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// The time windows it was seen in and the most lines of any one.
    pub presence: Presence,
    /// The latest time window it was seen in and its lines there; `None` when not known
    /// (a row stored before it was), and then taken to be the last line's window.
    pub current_window: Option<(i64, u64)>,
    /// Its latest line at a level that flags alone (0: none known).
    pub level_last_ms: i64,
    /// When it was first seen (by whichever replica): after the warm-up, and how unlike
    /// every template known then. Used for a template new to this scorer.
    pub new_after_warmup: bool,
    pub novelty: f32,
}

impl ScorerState {
    /// Brings a template's counts up to what is known elsewhere, before the state is
    /// loaded with [`super::Scorer::from_state`]. The line count is set to
    /// `counts.count`; the first and last sightings widen to cover `counts`; presence
    /// takes the larger view, field by field, and the later of the two current windows
    /// (with its lines: the more of the two when both are the same window), so a later
    /// line in it is not counted as a new window. A template without counts here starts
    /// from `counts`, with its first sighting's newness and novelty. Returns its presence
    /// after the merge.
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
                counts.last_seen_ms,
                0,
                counts.new_after_warmup,
            );
            stats.novelty = counts.novelty;
            stats
        });
        let last_seen_ms = stats.last_seen_ms.max(counts.last_seen_ms);
        stats.count = counts.count;
        stats.first_seen_ms = stats.first_seen_ms.min(counts.first_seen_ms);
        stats.last_seen_ms = last_seen_ms;
        let grew = counts.presence.windows > stats.windows;
        stats.windows = stats.windows.max(counts.presence.windows);
        match counts.current_window {
            Some((window, lines)) => {
                if created || window > stats.window {
                    stats.window = window;
                    stats.window_lines = lines;
                } else if window == stats.window {
                    stats.window_lines = stats.window_lines.max(lines);
                }
            }
            None if grew => {
                let window = last_seen_ms.div_euclid(config.presence_window_ms.max(1));
                if window > stats.window {
                    stats.window = window;
                    stats.window_lines = 0;
                }
            }
            None => {}
        }
        stats.max_window_lines = stats.max_window_lines.max(counts.presence.max_window_lines);
        stats.episodes = stats.episodes.max(counts.presence.episodes);
        stats.level_episodes = stats.level_episodes.max(counts.presence.level_episodes);
        stats.level_last_ms = stats.level_last_ms.max(counts.level_last_ms);
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
        assert_eq!((stats.count, stats.windows, stats.episodes), (20, 1, 1));
        assert_eq!(stats.max_window_lines, 20);
        // Two more lines, each more than a minute after the previous one, both in one later
        // window: two arrivals, one window.
        count(&mut stats, 25 * MINUTE, false);
        count(&mut stats, 27 * MINUTE, false);
        assert_eq!((stats.count, stats.windows, stats.episodes), (22, 2, 3));
        assert_eq!(stats.span_ms(), 27 * MINUTE);
        // None of them was at a level that flags alone.
        assert_eq!(stats.level_episodes, 0);
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
        assert_eq!(stats.episodes, 3);
        // The second CRITICAL line came 3.5 minutes after the clump: a separate arrival at
        // that level, though only 30 s after the INFO line.
        assert_eq!(stats.level_episodes, 2);
        assert_eq!(stats.presence().level_episodes, 2);
    }
}
