//! From a mined line to its [`Score`], step by step: the stream's warm-up, the template's
//! counts, its prior, the neighbours' vote, the verdict, the words.

use super::summary::{explain, human_duration};
use super::{
    relearn, DecidedBy, Label, LogLine, Score, Scorer, ScorerConfig, Severity, TemplateState,
    TemplateStats, TextEmbedder,
};
use crate::drain::TemplateId;

/// A template's counts around one new line of it.
pub(super) struct Sighting {
    /// Lines of the template before this one.
    pub(super) seen_before: u64,
    /// The template's first line before this one was counted.
    pub(super) previous_first_seen: i64,
    pub(super) learned_normal: bool,
    /// The time windows alone show steady presence (else, if learned, its arrivals did).
    pub(super) learned_by_windows: bool,
    /// It was not learned as normal before this line, or it was learned from its
    /// arrivals and the time windows confirm it with this line.
    pub(super) newly_learned_normal: bool,
    /// Time windows it was seen in, this line's included.
    pub(super) windows: u32,
    /// Separate arrivals of its lines, this line's included.
    pub(super) episodes: u32,
    /// From its first to its last line (this one included), milliseconds.
    pub(super) span_ms: i64,
    /// The span the time windows' rule needs of it ([`ScorerConfig::windows_span_ms`]).
    pub(super) span_needed_ms: i64,
    /// How long the stream had been watched before its first line, when that is why
    /// it needs more than `normal_min_span_ms`.
    pub(super) late_by_ms: Option<i64>,
    pub(super) new_after_warmup: bool,
    /// Its novelty when first seen (0 if this is its first line).
    pub(super) birth_novelty: f32,
    /// How settled the stream was when it was first seen (what its newness counts for).
    pub(super) settled: f32,
    /// Steady presence was shown, but not by its lines at this line's level, which flags
    /// a line by itself (CRITICAL): learning does not cover this line.
    pub(super) learned_below_level: bool,
    /// Separate arrivals of its lines at the levels that flag alone, this line's included.
    pub(super) level_episodes: u32,
    /// This line's level.
    pub(super) level: Severity,
    /// This line's level flags a line by itself and its lines at that level have not
    /// arrived steadily (what learning and a narrow normal label need to cover it).
    pub(super) level_unproven: bool,
}

impl Sighting {
    /// Why a template without a label that covers this line is judged by its prior:
    /// `narrow` is the highest level a normal label was given at, when it does not cover
    /// this line's level; `cfg` has the windows steady presence takes (the span it needs
    /// is `span_needed_ms`).
    fn why_not_learned(&self, narrow: Option<Severity>, cfg: &ScorerConfig) -> String {
        let level = self.level.as_str();
        let times = |n: u32| if n == 1 { "time" } else { "times" };
        let level_arrivals = format!(
            "its {level} lines arrived {} separate {}",
            self.level_episodes,
            times(self.level_episodes)
        );
        if let Some(seen) = narrow {
            format!(
                "an operator marked this pattern normal when it had come at {} at most; \
                 {level_arrivals}: judged on their own",
                seen.as_str()
            )
        } else if self.learned_below_level {
            format!(
                "seen in {} time windows, but {level_arrivals}: not learned as normal at this \
                 level",
                self.windows
            )
        } else if self.seen_before == 0 {
            "not learned as normal yet".to_string()
        } else if self.windows == 1 {
            "not learned as normal: one burst so far".to_string()
        } else if self.windows >= cfg.normal_after_windows && self.span_ms < self.span_needed_ms {
            let late = self.late_by_ms.map_or(String::new(), |w| {
                format!(
                    " for a pattern first seen {} into the stream",
                    human_duration(w)
                )
            });
            format!(
                "not learned as normal: seen in {} time windows, but over {} (steady presence \
                 takes {}{late})",
                self.windows,
                human_duration(self.span_ms),
                human_duration(self.span_needed_ms)
            )
        } else {
            format!(
                "not learned as normal: seen in {} time windows, in bursts",
                self.windows
            )
        }
    }
}

/// The prior of an unknown template and what it was made of.
pub(super) struct Prior {
    pub(super) novelty: f32,
    /// What coming after the stream had settled added to its newness.
    pub(super) settled: f32,
    pub(super) rarity: f32,
    /// The level's weight.
    pub(super) level: f32,
    pub(super) failure_likeness: f32,
    /// The severity the words give, `meaning_severity_max x failure_likeness`
    /// (`levelled_meaning_max` for a source that marks trouble by level).
    pub(super) meaning: f32,
    /// The line's source marks its trouble by level.
    pub(super) levelled: bool,
    /// The larger of `level` and `meaning`.
    pub(super) severity: f32,
    pub(super) score: f32,
}

/// What decided a line's score, before the words.
struct Verdict {
    state: TemplateState,
    decided_by: DecidedBy,
    score: f32,
    is_anomaly: bool,
    /// The deciding rule, in words.
    note: String,
}

impl<E: TextEmbedder> Scorer<E> {
    /// Scores one line whose template is mined and embedded.
    pub(super) fn score_mined(
        &mut self,
        line: &LogLine,
        id: TemplateId,
        template: String,
    ) -> Score {
        let (first_line_ms, warming_up) = self.advance_stream(line);
        let sighting = self.record_sighting(&id, line, warming_up, first_line_ms);
        // Nearest known template that is not labelled anomalous, and the nearest labelled
        // ones (either label, above the similarity bar), both excluding this template.
        let (closest, labelled) = self.neighbours(&id);
        let nearest_sim = closest.map_or(0.0, |(_, s)| s);
        let prior = self.prior(line, &id, &sighting, warming_up, nearest_sim);
        let vote = self.neighbour_vote(&labelled, &sighting);
        let verdict = self.decide(&id, prior.score, vote, &sighting);
        let closest = closest.map(|(i, sim)| (self.template_text(&self.seen_order[i]), sim));
        let summary = explain(
            line,
            first_line_ms,
            &sighting,
            &prior,
            closest.as_ref(),
            verdict.note,
            warming_up,
        );
        self.remember(&id, &sighting, &prior);
        let lifetime = self.lifetime(&id);
        Score {
            score: verdict.score,
            is_anomaly: verdict.is_anomaly,
            template_id: id,
            template,
            summary,
            novelty: prior.novelty,
            rarity: prior.rarity,
            closest,
            warming_up,
            failure_likeness: prior.failure_likeness,
            state: verdict.state,
            decided_by: verdict.decided_by,
            severity: prior.severity,
            prior: prior.score,
            newly_learned_normal: sighting.newly_learned_normal
                && verdict.decided_by == DecidedBy::LearnedNormal,
            lifetime,
        }
    }

    /// The template's lines and presence windows so far (after its latest line).
    fn lifetime(&self, id: &TemplateId) -> relearn::Lifetime {
        let window_ms = self.config.presence_window_ms.max(1);
        self.stats
            .get(id)
            .map_or_else(relearn::Lifetime::default, |stats| relearn::Lifetime {
                lines: stats.tally.count,
                windows: stats.tally.windows,
                first_window: stats.first_seen_ms.div_euclid(window_ms),
                last_window: stats.tally.last_seen_ms.div_euclid(window_ms),
            })
    }

    /// Counts the line in the stream: the time of the stream's first line, and whether
    /// the warm-up (lines and time) is still on.
    fn advance_stream(&mut self, line: &LogLine) -> (i64, bool) {
        let cfg = &self.config;
        let first_line_ms = *self.first_line_ms.get_or_insert(line.timestamp_ms);
        self.lines_seen += 1;
        self.levels.record(line.source.as_deref(), line.severity);
        let warming_up = self.lines_seen <= cfg.warmup_lines
            || line.timestamp_ms.saturating_sub(first_line_ms) < cfg.warmup_ms;
        (first_line_ms, warming_up)
    }

    /// Counts the line in its template's stats and the time windows it was seen in.
    fn record_sighting(
        &mut self,
        id: &TemplateId,
        line: &LogLine,
        warming_up: bool,
        stream_start_ms: i64,
    ) -> Sighting {
        let cfg = &self.config;
        let window = line.timestamp_ms.div_euclid(cfg.presence_window_ms.max(1));
        let born = !self.stats.contains_key(id);
        let settled = if born {
            self.births.settled(cfg.settled_lines, cfg.settled_share)
        } else {
            0.0
        };
        self.births.record(born, cfg.settled_lines);
        let stats = self
            .stats
            .entry(id.clone())
            .or_insert_with(|| TemplateStats {
                settled,
                ..TemplateStats::unseen(line.timestamp_ms, line.timestamp_ms, window, !warming_up)
            });
        let seen_before = stats.tally.count;
        let flags_alone = cfg.flags_alone(line.severity);
        let steady_level = cfg.normal_after_windows.max(1);
        let was_learned_normal = stats.learned_normal(cfg, stream_start_ms)
            && !(flags_alone && stats.tally.level_episodes < steady_level);
        let was_learned_by_windows = stats.learned_by_windows(cfg, stream_start_ms);
        let previous_first_seen = stats.first_seen_ms;
        stats.count_line(line.timestamp_ms, window, flags_alone);
        // Steady presence covers a line that its level alone would flag only when the
        // template's lines at that level came steadily too: a CRITICAL burst of a pattern
        // that is otherwise INFO chatter is not what was learned.
        let level_unproven = flags_alone && stats.tally.level_episodes < steady_level;
        let steady = stats.learned_normal(cfg, stream_start_ms);
        let learned_normal = steady && !level_unproven;
        // Learned from its arrivals before the hour was up, and now the windows agree:
        // marked again, so that its earlier lines' bursts are judged against more windows.
        let learned_by_windows = stats.learned_by_windows(cfg, stream_start_ms);
        let steadiness = stats.steadiness(stream_start_ms);
        let windows_confirm = was_learned_normal && !was_learned_by_windows && learned_by_windows;
        Sighting {
            seen_before,
            previous_first_seen,
            learned_normal,
            learned_by_windows,
            newly_learned_normal: (learned_normal && !was_learned_normal) || windows_confirm,
            windows: stats.tally.windows,
            episodes: stats.tally.episodes,
            span_ms: stats.span_ms(),
            span_needed_ms: cfg.windows_span_ms(&steadiness),
            late_by_ms: (cfg.late_span_ms(&steadiness) > cfg.normal_min_span_ms)
                .then(|| steadiness.watched_before_ms()),
            new_after_warmup: stats.new_after_warmup,
            birth_novelty: stats.novelty,
            settled: stats.settled,
            learned_below_level: steady && level_unproven,
            level_episodes: stats.tally.level_episodes,
            level: line.severity,
            level_unproven,
        }
    }

    /// The unknown template's prior: severity (level or meaning), novelty against the
    /// nearest known template (`nearest_sim`), and newness since the warm-up.
    fn prior(
        &self,
        line: &LogLine,
        id: &TemplateId,
        sighting: &Sighting,
        warming_up: bool,
        nearest_sim: f32,
    ) -> Prior {
        let cfg = &self.config;
        let seen_before = sighting.seen_before;
        // Novelty is the template's at first sight (against what was known then); a
        // template of the warm-up has none: it is part of what normal looks like.
        let novelty = if seen_before > 0 {
            sighting.birth_novelty
        } else if warming_up {
            0.0
        } else {
            ((cfg.similar_at - nearest_sim) / cfg.novelty_span).clamp(0.0, 1.0)
        };
        // Diagnostics only (the verdict does not decay with repetition).
        #[allow(clippy::cast_precision_loss)]
        let rarity = 1.0 / (1.0 + (seen_before as f32 + 1.0).ln());
        let level = line.severity.weight();
        let failure_likeness = match (&self.failure_axis, self.embeddings.get(id)) {
            (Some(axis), Some(e)) => axis.failure_likeness(e),
            _ => 0.0,
        };
        // A source that marks trouble by level has told us which lines are trouble: its
        // words count for less there.
        let levelled = self.levels.uses_levels(line.source.as_deref(), cfg);
        let meaning_max = if levelled {
            cfg.levelled_meaning_max.min(cfg.meaning_severity_max)
        } else {
            cfg.meaning_severity_max
        };
        let meaning = meaning_max * failure_likeness;
        let severity = level.max(meaning);
        let new_since_warmup = sighting.new_after_warmup && !warming_up;
        // Newness counts for more when the template came after the stream had settled,
        // for its first few lines (see `ScorerConfig::settled_weight`).
        let settled = if new_since_warmup && seen_before < cfg.settled_first_lines {
            cfg.settled_weight * sighting.settled
        } else {
            0.0
        };
        let newness = if new_since_warmup {
            cfg.new_weight + settled
        } else {
            0.0
        };
        let floor = cfg.novelty_severity_floor.clamp(0.0, 1.0);
        let novelty_part = cfg.novelty_weight * novelty * (floor + (1.0 - floor) * severity);
        let score = (cfg.severity_weight * severity + novelty_part + newness).clamp(0.0, 1.0);
        Prior {
            novelty,
            settled,
            rarity,
            level,
            failure_likeness,
            meaning,
            levelled,
            severity,
            score,
        }
    }

    /// The labelled neighbours' vote, weighted by similarity: the winning label and its
    /// most similar template, if any neighbour is labelled. A neighbour's normal label votes
    /// on a line only at the levels it covers (see [`Scorer::set_label_up_to`]).
    fn neighbour_vote(
        &self,
        labelled: &[(usize, f32, Label)],
        sighting: &Sighting,
    ) -> Option<(TemplateId, f32, Label)> {
        let covers = |i: usize, label: Label| {
            label == Label::Anomaly
                || !sighting.level_unproven
                || self
                    .label_levels
                    .get(&self.seen_order[i])
                    .is_none_or(|&seen| sighting.level <= seen)
        };
        let labelled: Vec<(usize, f32, Label)> = labelled
            .iter()
            .copied()
            .filter(|&(i, _, label)| covers(i, label))
            .collect();
        let (mut anomaly, mut normal) = (0.0f32, 0.0f32);
        for &(_, sim, label) in &labelled {
            match label {
                Label::Anomaly => anomaly += sim,
                Label::Normal => normal += sim,
            }
        }
        let winner = if anomaly > normal {
            Label::Anomaly
        } else {
            Label::Normal
        };
        labelled
            .iter()
            .find(|(_, _, l)| *l == winner)
            .map(|&(i, sim, l)| (self.seen_order[i].clone(), sim, l))
    }

    /// The template's state and score: its own label first, then its neighbours' vote
    /// (an anomalous vote only for a template not learned as normal), then learned normal,
    /// else the prior.
    fn decide(
        &self,
        id: &TemplateId,
        prior: f32,
        vote: Option<(TemplateId, f32, Label)>,
        sighting: &Sighting,
    ) -> Verdict {
        let cfg = &self.config;
        let (learned_normal, windows) = (sighting.learned_normal, sighting.windows);
        // A normal label given when the template had come at lower levels only does not
        // cover a line at a level that flags alone until that level is steady.
        let narrow = self
            .label_levels
            .get(id)
            .filter(|&&seen| sighting.level_unproven && sighting.level > seen)
            .copied();
        let own_label = self.labels.get(id).copied().filter(|_| narrow.is_none());
        let high = (cfg.threshold + 1.0) / 2.0;
        let low = cfg.threshold * 0.5;
        let learned_note = || {
            if sighting.learned_by_windows {
                format!("learned as normal: seen steadily, in {windows} separate time windows")
            } else {
                format!(
                    "learned as normal: seen steadily, arrived {} separate times over {}",
                    sighting.episodes,
                    super::summary::human_duration(sighting.span_ms)
                )
            }
        };
        let (state, decided_by, score, note) = match (own_label, vote, learned_normal) {
            (Some(Label::Anomaly), _, _) => (
                TemplateState::LabelledAnomaly,
                DecidedBy::Label,
                prior.max(high),
                "an operator marked this pattern anomalous".to_string(),
            ),
            (Some(Label::Normal), _, _) => (
                TemplateState::LabelledNormal,
                DecidedBy::Label,
                prior.min(low),
                "an operator marked this pattern normal".to_string(),
            ),
            // A neighbour's anomaly label does not overrule the template's own steady
            // presence: "Found child in scoreboard slot", seen hundreds of times, stays
            // normal when "Can't find child in scoreboard" is marked anomalous.
            (None, Some((other, sim, Label::Anomaly)), true) => (
                TemplateState::LearnedNormal,
                DecidedBy::LearnedNormal,
                (prior * 0.5).min(low),
                format!(
                    "{}; close to '{}' which an operator marked anomalous, similarity {sim:.2}, but its own steady presence decides",
                    learned_note(),
                    self.template_text(&other)
                ),
            ),
            (None, Some((other, sim, label)), _) => {
                let text = self.template_text(&other);
                let (score, word) = match label {
                    Label::Anomaly => (prior.max(high), "anomalous"),
                    Label::Normal => (prior.min(low), "normal"),
                };
                (
                    if learned_normal {
                        TemplateState::LearnedNormal
                    } else {
                        TemplateState::Unknown
                    },
                    DecidedBy::NeighbourLabels,
                    score,
                    format!(
                        "close to '{text}' which an operator marked {word}, similarity {sim:.2}"
                    ),
                )
            }
            (None, None, true) => (
                TemplateState::LearnedNormal,
                DecidedBy::LearnedNormal,
                (prior * 0.5).min(low),
                learned_note(),
            ),
            (None, None, false) => (
                TemplateState::Unknown,
                DecidedBy::Prior,
                prior,
                sighting.why_not_learned(narrow, &self.config),
            ),
        };
        let score = score.clamp(0.0, 1.0);
        Verdict {
            state,
            decided_by,
            score,
            is_anomaly: score >= cfg.threshold,
            note,
        }
    }

    /// Keeps what later lines need: a new template becomes a neighbour candidate and its
    /// novelty at first sight is kept.
    fn remember(&mut self, id: &TemplateId, sighting: &Sighting, prior: &Prior) {
        if sighting.seen_before == 0 {
            self.seen_index.insert(id.clone(), self.seen_order.len());
            self.seen_order.push(id.clone());
            if let Some(stats) = self.stats.get_mut(id) {
                stats.novelty = prior.novelty;
            }
        }
    }
}
