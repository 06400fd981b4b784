//! The scoring knobs and the "learned normal" rule.

use serde::{Deserialize, Serialize};

use super::{Presence, Severity};
use crate::drain::MinerConfig;

/// Scoring knobs. The defaults are what a fresh install runs with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScorerConfig {
    /// `score >= threshold` means anomalous.
    pub threshold: f32,
    /// Lines to see before flagging anything.
    pub warmup_lines: u64,
    /// Time (from the first line's timestamp) to observe before flagging anything.
    pub warmup_ms: i64,
    /// Weights of the unknown template's prior: severity (level or meaning), semantic
    /// novelty, and being new since the warm-up. A CRITICAL line alone reaches the default
    /// threshold; an ERROR one with some novelty.
    pub severity_weight: f32,
    pub novelty_weight: f32,
    #[serde(default = "default_new_weight")]
    pub new_weight: f32,
    /// More weight for being new when the stream had settled: up to this much more than
    /// `new_weight`, for a template first seen when none of the stream's latest
    /// `settled_lines` lines had started a template, falling linearly to nothing at
    /// `settled_share` of them. A system that keeps meeting new messages (a chatty
    /// desktop, a deploy) makes none of them surprising; one that had settled into its
    /// routine and says something it never said is the classic sign of a change. 0 turns
    /// it off.
    #[serde(default = "default_settled_weight")]
    pub settled_weight: f32,
    /// How many of the stream's latest lines the share of new templates is counted over
    /// (none counts until that many were seen).
    #[serde(default = "default_settled_lines")]
    pub settled_lines: usize,
    /// The share of those lines starting a template at which the stream no longer counts
    /// as settled.
    #[serde(default = "default_settled_share")]
    pub settled_share: f32,
    /// The extra newness holds for a template's first this many lines: a rare new
    /// message is what is surprising; one that goes on to flood the stream is a change in its make-up, judged
    /// by its level and words like any new message (a flood that reads like a failure is
    /// not flagged line after line for having come when the stream was quiet).
    #[serde(default = "default_settled_first_lines")]
    pub settled_first_lines: u64,
    /// Novelty counts in proportion to severity, from this share at severity 0 to all of
    /// it at severity 1: a new kind of routine message is not alarming by itself.
    #[serde(default = "default_novelty_severity_floor")]
    pub novelty_severity_floor: f32,
    /// Cosine at or above which a template counts as "the same kind of message" (novelty
    /// 0); novelty rises linearly to 1 at `similar_at - novelty_span`.
    pub similar_at: f32,
    pub novelty_span: f32,
    /// Cosine at or above which labelled templates vote on an unlabelled one (0.85: the
    /// same message with other words or fields; unrelated messages of one system are
    /// mostly below 0.7 with this model).
    #[serde(default = "default_label_similarity")]
    pub label_similarity: f32,
    /// How many of the nearest labelled templates (above `label_similarity`) vote.
    #[serde(default = "default_label_neighbours")]
    pub label_neighbours: usize,
    /// Learned normal means steady presence: the template was seen in at least
    /// `normal_after_windows` separate time windows of `presence_window_ms` ...
    #[serde(default = "default_presence_window_ms")]
    pub presence_window_ms: i64,
    #[serde(default = "default_normal_after_windows")]
    pub normal_after_windows: u32,
    /// ... spread over at least this long from its first to its last line ...
    #[serde(default = "default_normal_min_span_ms")]
    pub normal_min_span_ms: i64,
    /// ... with no window holding more than this share of its lines (a burst that came
    /// back once or twice is not steady).
    #[serde(default = "default_max_window_share")]
    pub max_window_share: f32,
    /// A template first seen after the stream had been watched for a while needs more:
    /// its lines spread over at least this share of the time watched before its first
    /// line (and at least `normal_min_span_ms` or `normal_episode_span_ms`, as the rule
    /// used) ... The longer a source ran without a message, the more its arrival is a
    /// change, and the more it takes to be the new normal. 0 turns it off.
    #[serde(default = "default_late_span_share")]
    pub late_span_share: f32,
    /// ... up to this long ...
    #[serde(default = "default_late_span_max_ms")]
    pub late_span_max_ms: i64,
    /// ... unless it was seen in at least this share of the presence windows from its
    /// first line to its last: a message that came and then kept coming is the new steady
    /// state (a chatty message a change brought in), and learns in the usual time.
    #[serde(default = "default_late_steady_coverage")]
    pub late_steady_coverage: f32,
    /// A dense stream shows steady presence sooner: a template is also learned as normal
    /// once its lines came in at least this many separate episodes (arrivals more than
    /// [`EPISODE_GAP_MS`](super::relearn::EPISODE_GAP_MS) after the template's previous
    /// line), spread over at least `normal_episode_span_ms`, with no window holding more
    /// than `max_window_share` of them. However many lines a burst has, it is one episode; a
    /// routine message of a busy system arrives again and again. 0 turns it off.
    #[serde(default = "default_normal_after_episodes")]
    pub normal_after_episodes: u32,
    /// The shortest time from first to last line over which those arrivals count: longer
    /// than an anomalous burst lasts (one that comes in clumps, a minute or two apart, is
    /// many arrivals, but within minutes).
    #[serde(default = "default_normal_episode_span_ms")]
    pub normal_episode_span_ms: i64,
    /// How severe a line can count for what its words say, whatever its level: a template
    /// that reads like a failure ("authentication failure", "connection refused") at INFO
    /// counts up to this severity weight (ERROR is 0.8). Measured by where its embedding
    /// falls between [`FAILURE_PROTOTYPES`](super::FAILURE_PROTOTYPES) and
    /// [`ROUTINE_PROTOTYPES`](super::ROUTINE_PROTOTYPES). 0 turns it off.
    #[serde(default = "default_meaning_severity_max")]
    pub meaning_severity_max: f32,
    /// The same bound for lines of a source that marks its trouble by level (see
    /// the scorer's `levels` module): there an INFO line that only reads like a failure is mostly
    /// routine chatter. 0.6 keeps such a line below the threshold unless it is also new
    /// and unlike anything known.
    #[serde(default = "default_levelled_meaning_max")]
    pub levelled_meaning_max: f32,
    /// Share of a source's lines at WARNING or above (at least three of them) from which
    /// it counts as marking its trouble by level.
    #[serde(default = "default_levelled_min_share")]
    pub levelled_min_share: f32,
    /// Most templates the scorer keeps (miner, embeddings, counts). Past it, the least
    /// recently seen templates are forgotten first, operator-labelled ones only when
    /// nothing else is left; a forgotten template seen again starts afresh, unless the
    /// caller brings it back from where it keeps templates (the scoring workers restore
    /// it from Postgres). Client input decides how many templates there are, so this
    /// bounds the scorer's memory.
    #[serde(default = "default_max_templates")]
    pub max_templates: usize,
    pub miner: MinerConfig,
}

fn default_settled_weight() -> f32 {
    ScorerConfig::default().settled_weight
}

fn default_settled_lines() -> usize {
    ScorerConfig::default().settled_lines
}

fn default_settled_first_lines() -> u64 {
    ScorerConfig::default().settled_first_lines
}

fn default_settled_share() -> f32 {
    ScorerConfig::default().settled_share
}

fn default_new_weight() -> f32 {
    ScorerConfig::default().new_weight
}

fn default_novelty_severity_floor() -> f32 {
    ScorerConfig::default().novelty_severity_floor
}

fn default_label_similarity() -> f32 {
    ScorerConfig::default().label_similarity
}

fn default_label_neighbours() -> usize {
    ScorerConfig::default().label_neighbours
}

fn default_presence_window_ms() -> i64 {
    ScorerConfig::default().presence_window_ms
}

fn default_normal_after_windows() -> u32 {
    ScorerConfig::default().normal_after_windows
}

fn default_normal_min_span_ms() -> i64 {
    ScorerConfig::default().normal_min_span_ms
}

fn default_max_window_share() -> f32 {
    ScorerConfig::default().max_window_share
}

fn default_late_span_share() -> f32 {
    ScorerConfig::default().late_span_share
}

fn default_late_span_max_ms() -> i64 {
    ScorerConfig::default().late_span_max_ms
}

fn default_late_steady_coverage() -> f32 {
    ScorerConfig::default().late_steady_coverage
}

fn default_normal_after_episodes() -> u32 {
    ScorerConfig::default().normal_after_episodes
}

fn default_normal_episode_span_ms() -> i64 {
    ScorerConfig::default().normal_episode_span_ms
}

fn default_levelled_meaning_max() -> f32 {
    ScorerConfig::default().levelled_meaning_max
}

fn default_levelled_min_share() -> f32 {
    ScorerConfig::default().levelled_min_share
}

fn default_max_templates() -> usize {
    ScorerConfig::default().max_templates
}

fn default_meaning_severity_max() -> f32 {
    ScorerConfig::default().meaning_severity_max
}

/// What the "learned normal" rule reads of a template: how present it was, its line
/// count, its first and last line, and when the stream it belongs to started (the first
/// line the scorer saw). Times are milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steadiness {
    pub presence: Presence,
    pub count: u64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub stream_start_ms: i64,
}

impl Steadiness {
    /// From its first to its last line.
    pub fn span_ms(&self) -> i64 {
        self.last_seen_ms.saturating_sub(self.first_seen_ms)
    }

    /// How long the stream had been watched when the template's first line came.
    pub fn watched_before_ms(&self) -> i64 {
        self.first_seen_ms
            .saturating_sub(self.stream_start_ms)
            .max(0)
    }
}

impl ScorerConfig {
    /// The "learned normal" rule: steady presence, by time windows or by arrivals, over
    /// long enough ([`Self::late_span_ms`]). Also what readers of the stored presence (the
    /// review queue) judge by.
    pub fn is_learned_normal(&self, s: &Steadiness) -> bool {
        let steady_episodes = self.normal_after_episodes > 0
            && s.presence.episodes >= self.normal_after_episodes
            && s.span_ms() >= self.normal_episode_span_ms.max(self.late_span_ms(s));
        self.is_learned_by_windows(s)
            || (steady_episodes && self.no_window_dominates(s.presence, s.count))
    }

    /// The time windows' half of the rule alone: enough windows over enough time.
    pub fn is_learned_by_windows(&self, s: &Steadiness) -> bool {
        s.presence.windows >= self.normal_after_windows
            && s.span_ms() >= self.windows_span_ms(s)
            && self.no_window_dominates(s.presence, s.count)
    }

    /// The time from first to last line the time windows' rule needs of this template.
    pub fn windows_span_ms(&self, s: &Steadiness) -> i64 {
        self.normal_min_span_ms.max(self.late_span_ms(s))
    }

    /// The span a template first seen late needs whichever rule learns it:
    /// `late_span_share` of the time watched before its first line, at most
    /// `late_span_max_ms`; 0 when it came from the start or was seen in at least
    /// `late_steady_coverage` of the presence windows since its first line.
    pub fn late_span_ms(&self, s: &Steadiness) -> i64 {
        let window = self.presence_window_ms.max(1);
        let spanned = s.last_seen_ms.div_euclid(window) - s.first_seen_ms.div_euclid(window) + 1;
        #[allow(clippy::cast_precision_loss)] // window counts far below 2^24 decide this
        let coverage = f64::from(s.presence.windows) / spanned.max(1) as f64;
        if coverage >= f64::from(self.late_steady_coverage) {
            return 0;
        }
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)] // ms spans
        let owed = (f64::from(self.late_span_share) * s.watched_before_ms() as f64) as i64;
        owed.clamp(0, self.late_span_max_ms.max(0))
    }

    /// Whether a line's level alone brings it to the threshold (`severity_weight x weight
    /// >= threshold`: CRITICAL with the defaults). Learning, and a normal label given at
    /// lower levels, cover such a line only once the template's lines at that level have
    /// arrived steadily ([`Presence::level_episodes`]).
    pub fn flags_alone(&self, severity: Severity) -> bool {
        self.severity_weight * severity.weight() >= self.threshold
    }

    fn no_window_dominates(&self, presence: Presence, count: u64) -> bool {
        #[allow(clippy::cast_precision_loss)] // counts far below 2^24 decide this
        let share = presence.max_window_lines as f32 / count.max(1) as f32;
        share <= self.max_window_share
    }
}

impl Default for ScorerConfig {
    fn default() -> Self {
        Self {
            threshold: 0.6,
            warmup_lines: 200,
            warmup_ms: 0,
            severity_weight: 0.6,
            novelty_weight: 0.4,
            new_weight: 0.1,
            settled_weight: 0.15,
            settled_lines: 300,
            settled_share: 0.05,
            settled_first_lines: 10,
            novelty_severity_floor: 0.5,
            similar_at: 0.85,
            novelty_span: 0.6,
            label_similarity: 0.85,
            label_neighbours: 3,
            presence_window_ms: 10 * 60 * 1000,
            normal_after_windows: 3,
            normal_min_span_ms: 60 * 60 * 1000,
            max_window_share: 0.5,
            late_span_share: 0.5,
            late_span_max_ms: 4 * 60 * 60 * 1000,
            late_steady_coverage: 0.75,
            normal_after_episodes: 10,
            normal_episode_span_ms: 20 * 60 * 1000,
            meaning_severity_max: 0.8,
            levelled_meaning_max: 0.6,
            levelled_min_share: 0.01,
            max_templates: 50_000,
            miner: MinerConfig::default(),
        }
    }
}
