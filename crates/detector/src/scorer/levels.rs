//! Whether a source marks its trouble by level.
//!
//! What a line's words say ([`super::meaning`]) is the only sign of trouble in a log
//! without levels (every line INFO: syslog-style files, Thunderbird, OpenSSH). A source
//! that does use levels (some of its lines at WARNING or above) has already told us
//! which of its lines are trouble; there, an INFO line that only reads like a failure
//! ("Linkerror event interval expired", "Failed to renew lease ... will retry") is
//! mostly routine chatter, and its words count for less
//! ([`ScorerConfig::levelled_meaning_max`] instead of
//! [`ScorerConfig::meaning_severity_max`]).
//!
//! Counted per source (the line's `source`), so that lines of a level-less program mixed
//! into a levelled stream keep their words' full weight. A source with fewer than
//! [`SOURCE_MIN_LINES`] lines (a new one, or one of many hosts sending a few lines
//! each), or a line without a source, is judged by all sources together.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{ScorerConfig, Severity};

/// Lines a source must have sent to be judged on its own.
pub const SOURCE_MIN_LINES: u64 = 50;
/// Lines at WARNING or above needed before levels count as used (with the share of
/// [`ScorerConfig::levelled_min_share`]): one stray WARNING is not a habit.
pub const MIN_TROUBLE_LINES: u64 = 3;
/// Most sources counted one by one; lines of further sources count only towards the
/// whole stream. Clients choose the sources, so this bounds the memory.
pub const MAX_SOURCES: usize = 10_000;

/// Lines seen and those of them at WARNING or above.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct LevelCounts {
    pub(super) lines: u64,
    pub(super) trouble: u64,
}

/// Whether a line at `severity` counts as a source marking its trouble by level
/// (WARNING or above).
pub fn marks_trouble(severity: Severity) -> bool {
    severity >= Severity::Warning
}

impl LevelCounts {
    fn add(&mut self, severity: Severity) {
        self.lines += 1;
        if marks_trouble(severity) {
            self.trouble += 1;
        }
    }

    fn uses_levels(self, cfg: &ScorerConfig) -> bool {
        #[allow(clippy::cast_precision_loss)] // a share: precision past 2^24 lines is moot
        let share = self.trouble as f32 / self.lines.max(1) as f32;
        self.trouble >= MIN_TROUBLE_LINES && share >= cfg.levelled_min_share
    }
}

/// Level use of the whole stream and of each source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct LevelUse {
    all: LevelCounts,
    by_source: HashMap<String, LevelCounts>,
}

impl LevelUse {
    /// Counts one line.
    pub(super) fn record(&mut self, source: Option<&str>, severity: Severity) {
        self.all.add(severity);
        if let Some(source) = source {
            if let Some(counts) = self.by_source.get_mut(source) {
                counts.add(severity);
            } else if self.by_source.len() < MAX_SOURCES {
                let mut counts = LevelCounts::default();
                counts.add(severity);
                self.by_source.insert(source.to_owned(), counts);
            }
        }
    }

    /// Counts kept elsewhere instead of these: the whole stream's `(lines, trouble)` and
    /// each source's (at most [`MAX_SOURCES`] of them).
    pub(super) fn replace(
        &mut self,
        stream: (u64, u64),
        sources: impl IntoIterator<Item = (String, u64, u64)>,
    ) {
        self.all = LevelCounts {
            lines: stream.0,
            trouble: stream.1,
        };
        self.by_source = sources
            .into_iter()
            .take(MAX_SOURCES)
            .map(|(source, lines, trouble)| (source, LevelCounts { lines, trouble }))
            .collect();
    }

    /// Whether lines of `source` come from a log that marks trouble by level.
    pub(super) fn uses_levels(&self, source: Option<&str>, cfg: &ScorerConfig) -> bool {
        let own = source
            .and_then(|s| self.by_source.get(s))
            .filter(|c| c.lines >= SOURCE_MIN_LINES);
        own.copied().unwrap_or(self.all).uses_levels(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(levels: &mut LevelUse, source: Option<&str>, n: u64, every: u64, sev: Severity) {
        for i in 0..n {
            let s = if i % every == 0 { sev } else { Severity::Info };
            levels.record(source, s);
        }
    }

    #[test]
    fn a_stream_with_warnings_uses_levels_and_one_without_does_not() {
        let cfg = ScorerConfig::default();
        let mut levelled = LevelUse::default();
        feed(&mut levelled, None, 500, 20, Severity::Warning);
        assert!(levelled.uses_levels(None, &cfg));
        let mut flat = LevelUse::default();
        feed(&mut flat, None, 500, 1, Severity::Info);
        assert!(!flat.uses_levels(None, &cfg));
        // Two stray warnings in a long flat log are not a habit.
        flat.record(None, Severity::Warning);
        flat.record(None, Severity::Error);
        assert!(!flat.uses_levels(None, &cfg));
    }

    #[test]
    fn a_level_less_source_in_a_levelled_stream_is_judged_on_its_own_once_known() {
        let cfg = ScorerConfig::default();
        let mut levels = LevelUse::default();
        feed(&mut levels, Some("app"), 1_000, 10, Severity::Error);
        // A new source is judged by the whole stream until it has sent enough lines.
        feed(
            &mut levels,
            Some("syslog"),
            SOURCE_MIN_LINES - 1,
            1,
            Severity::Info,
        );
        assert!(levels.uses_levels(Some("syslog"), &cfg));
        levels.record(Some("syslog"), Severity::Info);
        assert!(!levels.uses_levels(Some("syslog"), &cfg));
        assert!(levels.uses_levels(Some("app"), &cfg));
        // Unknown sources and lines without one: the whole stream.
        assert!(levels.uses_levels(Some("never-seen"), &cfg));
        assert!(levels.uses_levels(None, &cfg));
    }

    #[test]
    fn sources_past_the_cap_count_only_towards_the_stream() {
        let mut levels = LevelUse::default();
        for i in 0..MAX_SOURCES + 10 {
            levels.record(Some(&format!("host-{i}")), Severity::Info);
        }
        assert_eq!(levels.by_source.len(), MAX_SOURCES);
        assert_eq!(levels.all.lines, (MAX_SOURCES + 10) as u64);
    }

    #[test]
    fn counts_kept_elsewhere_replace_the_own() {
        let cfg = ScorerConfig::default();
        let mut levels = LevelUse::default();
        feed(&mut levels, Some("app"), 100, 1, Severity::Info);
        assert!(!levels.uses_levels(Some("app"), &cfg));
        levels.replace((400, 40), [("app".to_owned(), 200, 20)]);
        assert!(levels.uses_levels(Some("app"), &cfg));
        assert!(levels.uses_levels(None, &cfg));
        assert_eq!(levels.by_source.len(), 1);
    }
}
