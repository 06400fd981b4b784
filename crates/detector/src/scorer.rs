//! Scoring: is this line anomalous, and why.
//!
//! Each line is mined to a template ([`crate::drain`]); each distinct template is embedded
//! once (cached by template id). **The verdict belongs to the template**: every line of a
//! template gets the verdict of its template's current state, so repetition inside a
//! burst never turns an anomalous template normal (quieting repeated alerts is the alert
//! and incident layer's job: grouping, cooldown, incident merge). A template is in one of
//! four states ([`TemplateState`]):
//!
//! - **unknown**: judged by its prior, `severity_weight x severity + novelty_weight x
//!   novelty (+ new_weight when it first appeared after the warm-up)`, where severity is the
//!   larger of the level's weight and what the words say (the embedding's position between
//!   [`FAILURE_PROTOTYPES`] and [`ROUTINE_PROTOTYPES`]), and novelty is how far the
//!   template's embedding is from every other known template;
//! - **learned normal**: it has shown steady presence, seen in at least
//!   `normal_after_episodes` separate episodes (occurrences apart by at least
//!   `episode_gap_ms` and `episode_gap_lines` of the stream start a new one) with no
//!   episode holding more than `max_episode_share` of its lines. A template that only ever
//!   comes in bursts stays unknown, and so suspect;
//! - **labelled normal / labelled anomaly**: an operator answered; the label decides.
//!
//! An unlabelled template close to labelled ones (cosine at or above `label_similarity`)
//! follows the similarity-weighted vote of its `label_neighbours` nearest labelled
//! templates, ahead of its own learned state and prior.
//!
//! Until the warm-up is over (a number of lines and a span of time, both configurable)
//! novelty does not count (there is no "normal" to be novel against yet): only lines
//! severe by level or meaning are flagged. Every summary says which of these decided.
//!
//! The scorer blocks while the model runs (through [`TextEmbedder`]); async callers run it
//! in `spawn_blocking` or on a thread of their own. It does no I/O of its own.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::drain::{MinerConfig, MinerState, TemplateId, TemplateMiner};
use crate::embedder::{cosine, EmbedError, Embedder};

/// Something that turns texts into unit-length vectors. Implemented by [`Embedder`];
/// tests or other backends can provide their own.
pub trait TextEmbedder {
    /// One vector per text, in order. May block.
    fn embed_texts(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError>;
}

impl TextEmbedder for Embedder {
    fn embed_texts(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_blocking(texts)
    }
}

/// Log levels, ordered by gravity. Unknown level names parse as `Info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    /// Case-insensitive; accepts the usual spellings (WARN, ERR, FATAL, CRIT, ...).
    pub fn parse(text: &str) -> Self {
        match text.trim().to_ascii_uppercase().as_str() {
            "TRACE" | "DEBUG" => Self::Debug,
            "WARN" | "WARNING" => Self::Warning,
            "ERR" | "ERROR" | "SEVERE" => Self::Error,
            "CRIT" | "CRITICAL" | "FATAL" | "ALERT" | "EMERG" | "EMERGENCY" | "PANIC" => {
                Self::Critical
            }
            _ => Self::Info,
        }
    }

    /// Contribution to the score, in [0, 1].
    fn weight(self) -> f32 {
        match self {
            Self::Debug => 0.0,
            Self::Info => 0.1,
            Self::Warning => 0.4,
            Self::Error => 0.8,
            Self::Critical => 1.0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "DEBUG",
            Self::Info => "INFO",
            Self::Warning => "WARNING",
            Self::Error => "ERROR",
            Self::Critical => "CRITICAL",
        }
    }
}

/// An operator's judgement on a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    Normal,
    Anomaly,
}

/// One line to score.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub severity: Severity,
    pub message: String,
    /// Where the line came from, if known. Not used in scoring yet.
    pub source: Option<String>,
}

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
    /// How severe a line can count for what its words say, whatever its level: a template
    /// that reads like a failure ("authentication failure", "connection refused") at INFO
    /// counts up to this severity weight (ERROR is 0.8). Measured by where its embedding
    /// falls between [`FAILURE_PROTOTYPES`] and [`ROUTINE_PROTOTYPES`]. 0 turns it off.
    #[serde(default = "default_meaning_severity_max")]
    pub meaning_severity_max: f32,
    pub miner: MinerConfig,
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

fn default_meaning_severity_max() -> f32 {
    ScorerConfig::default().meaning_severity_max
}

/// Messages any operator reads as something going wrong, whatever the system. Their mean
/// embedding, against that of [`ROUTINE_PROTOTYPES`], gives the "failure" direction.
pub const FAILURE_PROTOTYPES: &[&str] = &[
    "authentication failure for user",
    "connection refused",
    "failed to open file: permission denied",
    "error while processing the request",
    "exception thrown: null pointer",
    "timed out waiting for a response",
    "no space left on device",
    "out of memory, process killed",
    "could not connect to the server",
    "fatal error, shutting down",
    "invalid password for user",
    "service unavailable",
    "segmentation fault",
    "corrupted block detected",
    "lost connection to node",
    "disk read error",
];

/// Everyday messages of healthy systems, the other end of the "failure" direction.
pub const ROUTINE_PROTOTYPES: &[&str] = &[
    "request completed successfully",
    "user logged in",
    "connection established",
    "starting service",
    "received block of size",
    "task finished",
    "heartbeat ok",
    "session opened for user",
    "configuration loaded",
    "listening on port",
    "cache hit",
    "sending response",
    "job scheduled",
    "file written",
    "node joined the cluster",
    "disk read completed",
];

/// The "failure" direction in embedding space and where the two prototype sets fall on it.
#[derive(Debug, Clone)]
struct FailureAxis {
    axis: Vec<f32>,
    routine: f32,
    failure: f32,
}

impl FailureAxis {
    fn from_embeddings(failure: &[Vec<f32>], routine: &[Vec<f32>]) -> Option<Self> {
        let mean = |vs: &[Vec<f32>]| -> Option<Vec<f32>> {
            let dim = vs.first()?.len();
            let mut m = vec![0.0; dim];
            for v in vs {
                for (a, b) in m.iter_mut().zip(v) {
                    *a += b / vs.len() as f32;
                }
            }
            Some(m)
        };
        let (f, r) = (mean(failure)?, mean(routine)?);
        let axis: Vec<f32> = f.iter().zip(&r).map(|(a, b)| a - b).collect();
        let project =
            |vs: &[Vec<f32>]| vs.iter().map(|v| plain_dot(v, &axis)).sum::<f32>() / vs.len() as f32;
        let (failure, routine) = (project(failure), project(routine));
        (failure > routine).then_some(Self {
            axis,
            routine,
            failure,
        })
    }

    /// 0 at or below the routine prototypes' mean, 1 at or beyond the failures'.
    fn failure_likeness(&self, embedding: &[f32]) -> f32 {
        ((plain_dot(embedding, &self.axis) - self.routine) / (self.failure - self.routine))
            .clamp(0.0, 1.0)
    }
}

impl ScorerConfig {
    /// The "learned normal" rule: steady presence, from a template's presence, its line
    /// count and the time from its first to its last line. Also what readers of the stored
    /// presence (the review queue) judge by.
    pub fn is_learned_normal(&self, presence: Presence, count: u64, span_ms: i64) -> bool {
        #[allow(clippy::cast_precision_loss)] // counts far below 2^24 decide this
        let share = presence.max_window_lines as f32 / count.max(1) as f32;
        presence.windows >= self.normal_after_windows
            && span_ms >= self.normal_min_span_ms
            && share <= self.max_window_share
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
            novelty_severity_floor: 0.5,
            similar_at: 0.85,
            novelty_span: 0.6,
            label_similarity: 0.85,
            label_neighbours: 3,
            presence_window_ms: 10 * 60 * 1000,
            normal_after_windows: 3,
            normal_min_span_ms: 60 * 60 * 1000,
            max_window_share: 0.5,
            meaning_severity_max: 0.8,
            miner: MinerConfig::default(),
        }
    }
}

/// The verdict on one line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// In [0, 1].
    pub score: f32,
    pub is_anomaly: bool,
    pub template_id: TemplateId,
    pub template: String,
    /// Plain-words explanation for operators.
    pub summary: String,
    /// How unlike every earlier template this one was when it first appeared (0 for
    /// templates of the warm-up).
    pub novelty: f32,
    /// `1 / (1 + ln(lines seen))`: for diagnostics only; repetition does not lower the
    /// verdict.
    pub rarity: f32,
    /// Most similar other known template and its cosine similarity, if any.
    pub closest: Option<(String, f32)>,
    pub warming_up: bool,
    /// How much the template reads like a failure, whatever the line's level: 0 routine,
    /// 1 as much as the failure prototypes (0 when `meaning_severity_max` is 0).
    #[serde(default)]
    pub failure_likeness: f32,
    /// The template's state when this line was scored.
    #[serde(default)]
    pub state: TemplateState,
    /// What decided the verdict.
    #[serde(default)]
    pub decided_by: DecidedBy,
    /// The prior severity in [0, 1]: the larger of the level's weight and the meaning's.
    #[serde(default)]
    pub severity: f32,
}

/// A template's presence over time (see [`ScorerConfig::presence_window_ms`]); the
/// serde form of [`ScorerState`] carries the same numbers as `stats.<id>.windows` and
/// `stats.<id>.max_window_lines`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Presence {
    /// Separate time windows the template was seen in.
    pub windows: u32,
    /// The most lines it had in any one window.
    pub max_window_lines: u64,
}

/// What the scorer knows about a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateState {
    /// No label and no evidence of steady presence: judged by its prior.
    #[default]
    Unknown,
    /// Seen in enough separate episodes at a steady rate.
    LearnedNormal,
    LabelledNormal,
    LabelledAnomaly,
}

impl TemplateState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::LearnedNormal => "learned_normal",
            Self::LabelledNormal => "labelled_normal",
            Self::LabelledAnomaly => "labelled_anomaly",
        }
    }
}

/// Which rule gave a line its verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    /// Level, meaning, novelty (the template is unknown).
    #[default]
    Prior,
    /// Steady presence learned over time.
    LearnedNormal,
    /// An operator's label on this template.
    Label,
    /// The labels of semantically close templates.
    NeighbourLabels,
}

/// Errors from scoring.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error("embedder returned {got} vectors for {want} texts")]
    EmbedCount { got: usize, want: usize },
    #[error("template state: {0}")]
    State(#[from] crate::drain::ImportError),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TemplateStats {
    count: u64,
    first_seen_ms: i64,
    last_seen_ms: i64,
    /// Timestamp of the template's last alert while its incident is open (no longer
    /// used; kept so older saved states still read).
    #[serde(default, skip_serializing)]
    alerting_since_ms: Option<i64>,
    /// Time windows (see [`ScorerConfig::presence_window_ms`]) the template was seen in.
    #[serde(default)]
    windows: u32,
    /// The latest window it was seen in, its lines there, and the most lines of any one.
    #[serde(default)]
    window: i64,
    #[serde(default)]
    window_lines: u64,
    #[serde(default)]
    max_window_lines: u64,
    /// First seen after the warm-up was over.
    #[serde(default)]
    new_after_warmup: bool,
    /// How unlike every template known before it the template was when first seen (0 for
    /// templates of the warm-up: they are what normal looks like).
    #[serde(default)]
    novelty: f32,
    /// The last line's score and prior severity, for the review queue.
    #[serde(default)]
    last_score: f32,
    #[serde(default)]
    last_severity: f32,
}

impl TemplateStats {
    /// Steady presence: enough episodes, none holding too much of the template's lines.
    fn learned_normal(&self, cfg: &ScorerConfig) -> bool {
        cfg.is_learned_normal(
            Presence {
                windows: self.windows,
                max_window_lines: self.max_window_lines,
            },
            self.count,
            self.last_seen_ms.saturating_sub(self.first_seen_ms),
        )
    }
}

/// Per-template cache of the nearest neighbours, so a repeated template costs no vector
/// work: `scanned` templates of `seen_order` have been compared so far.
#[derive(Debug, Clone, Default)]
struct Neighbours {
    scanned: usize,
    epoch: u64,
    /// Nearest template (index into `seen_order`) not labelled anomalous.
    closest: Option<(usize, f32)>,
    labels_epoch: u64,
    labelled_seen: usize,
    /// The nearest labelled templates at or above `label_similarity`, most similar first.
    labelled: Vec<(usize, f32, Label)>,
}

/// Everything the scorer learned, for persistence (serde). Embeddings are included so a
/// restarted worker does not re-run the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScorerState {
    pub miner: MinerState,
    pub embeddings: HashMap<TemplateId, Vec<f32>>,
    pub labels: HashMap<TemplateId, Label>,
    stats: HashMap<TemplateId, TemplateStats>,
    lines_seen: u64,
    first_line_ms: Option<i64>,
}

/// Online scorer; owns the template miner, the embedding cache and the feedback.
pub struct Scorer<E> {
    config: ScorerConfig,
    embedder: E,
    miner: TemplateMiner,
    embeddings: HashMap<TemplateId, Vec<f32>>,
    labels: HashMap<TemplateId, Label>,
    stats: HashMap<TemplateId, TemplateStats>,
    lines_seen: u64,
    first_line_ms: Option<i64>,
    model_calls: u64,
    texts_embedded: u64,
    lines_needing_model: u64,
    /// Templates that have been scored at least once, in order of first score: the
    /// candidates for "nearest known template".
    seen_order: Vec<TemplateId>,
    seen_index: HashMap<TemplateId, usize>,
    neighbours: HashMap<TemplateId, Neighbours>,
    /// Bumped when a template becomes a candidate again (its anomaly label removed):
    /// every neighbour cache must rescan.
    closest_epoch: u64,
    /// Bumped on every label change: nearest-labelled caches must recompute.
    labels_epoch: u64,
    /// Embedded on the first batch (when `meaning_severity_max` > 0).
    failure_axis: Option<FailureAxis>,
}

impl<E: TextEmbedder> Scorer<E> {
    pub fn new(config: ScorerConfig, embedder: E) -> Self {
        let miner = TemplateMiner::new(config.miner.clone());
        Self {
            config,
            embedder,
            miner,
            embeddings: HashMap::new(),
            labels: HashMap::new(),
            stats: HashMap::new(),
            lines_seen: 0,
            first_line_ms: None,
            model_calls: 0,
            texts_embedded: 0,
            lines_needing_model: 0,
            seen_order: Vec::new(),
            seen_index: HashMap::new(),
            neighbours: HashMap::new(),
            closest_epoch: 0,
            labels_epoch: 0,
            failure_axis: None,
        }
    }

    /// Resume from a saved state.
    pub fn from_state(
        config: ScorerConfig,
        embedder: E,
        state: ScorerState,
    ) -> Result<Self, ScoreError> {
        let miner = TemplateMiner::import(state.miner)?;
        let mut seen_order: Vec<TemplateId> = state
            .stats
            .iter()
            .filter(|(_, s)| s.count > 0)
            .map(|(id, _)| id.clone())
            .collect();
        seen_order.sort();
        let seen_index = seen_order
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();
        Ok(Self {
            config,
            embedder,
            miner,
            embeddings: state.embeddings,
            labels: state.labels,
            stats: state.stats,
            lines_seen: state.lines_seen,
            first_line_ms: state.first_line_ms,
            model_calls: 0,
            texts_embedded: 0,
            lines_needing_model: 0,
            seen_order,
            seen_index,
            neighbours: HashMap::new(),
            closest_epoch: 0,
            labels_epoch: 0,
            failure_axis: None,
        })
    }

    pub fn export(&self) -> ScorerState {
        ScorerState {
            miner: self.miner.export(),
            embeddings: self.embeddings.clone(),
            labels: self.labels.clone(),
            stats: self.stats.clone(),
            lines_seen: self.lines_seen,
            first_line_ms: self.first_line_ms,
        }
    }

    /// Record an operator's label on a template; later scores use it.
    pub fn set_label(&mut self, template: &TemplateId, label: Label) {
        let old = self.labels.insert(template.clone(), label);
        self.label_changed(old, Some(label));
    }

    pub fn clear_label(&mut self, template: &TemplateId) {
        let old = self.labels.remove(template);
        self.label_changed(old, None);
    }

    fn label_changed(&mut self, old: Option<Label>, new: Option<Label>) {
        if old != new {
            self.labels_epoch += 1;
        }
        if old == Some(Label::Anomaly) && new != Some(Label::Anomaly) {
            self.closest_epoch += 1;
        }
    }

    /// How many times the model was asked for embeddings (one call per batch of new
    /// templates): the cache's effect, visible.
    pub fn model_calls(&self) -> u64 {
        self.model_calls
    }

    /// Give back the embedder (the scorer's learned state is dropped; export it first).
    pub fn into_embedder(self) -> E {
        self.embedder
    }

    /// Template texts sent to the model since this scorer was built.
    pub fn texts_embedded(&self) -> u64 {
        self.texts_embedded
    }

    /// Lines whose template had no cached embedding when their batch arrived (they waited
    /// for the model) since this scorer was built.
    pub fn lines_needing_model(&self) -> u64 {
        self.lines_needing_model
    }

    pub fn templates(&self) -> usize {
        self.miner.len()
    }

    /// Score one line. Blocks while a new template is embedded.
    pub fn score(&mut self, line: &LogLine) -> Result<Score, ScoreError> {
        let mut scores = self.score_batch(std::slice::from_ref(line))?;
        scores
            .pop()
            .ok_or(ScoreError::EmbedCount { got: 0, want: 1 })
    }

    /// Score lines in order. All templates new to this batch are embedded in one model
    /// request before any line is scored.
    pub fn score_batch(&mut self, lines: &[LogLine]) -> Result<Vec<Score>, ScoreError> {
        if self.failure_axis.is_none() && self.config.meaning_severity_max > 0.0 {
            let texts: Vec<String> = FAILURE_PROTOTYPES
                .iter()
                .chain(ROUTINE_PROTOTYPES)
                .map(|t| t.to_string())
                .collect();
            let vectors = self.embedder.embed_texts(texts)?;
            let (failure, routine) = vectors.split_at(FAILURE_PROTOTYPES.len().min(vectors.len()));
            self.failure_axis = FailureAxis::from_embeddings(failure, routine);
        }
        let mined: Vec<_> = lines.iter().map(|l| self.miner.mine(&l.message)).collect();
        let mut missing: Vec<(TemplateId, String)> = Vec::new();
        for m in &mined {
            if !self.embeddings.contains_key(&m.template_id)
                && !missing.iter().any(|(id, _)| *id == m.template_id)
            {
                // The template text at first sight is what gets embedded; later
                // generalisation only replaces variable parts with <*>, which does not
                // change what the message is about.
                missing.push((m.template_id.clone(), m.template.clone()));
            }
        }
        if !missing.is_empty() {
            let texts: Vec<String> = missing.iter().map(|(_, t)| embedding_text(t)).collect();
            let want = texts.len();
            let vectors = self.embedder.embed_texts(texts)?;
            self.model_calls += 1;
            self.texts_embedded += want as u64;
            self.lines_needing_model += mined
                .iter()
                .filter(|m| missing.iter().any(|(id, _)| *id == m.template_id))
                .count() as u64;
            if vectors.len() != want {
                return Err(ScoreError::EmbedCount {
                    got: vectors.len(),
                    want,
                });
            }
            for ((id, _), v) in missing.into_iter().zip(vectors) {
                self.embeddings.insert(id, v);
            }
        }
        Ok(lines
            .iter()
            .zip(mined)
            .map(|(line, m)| self.score_mined(line, m.template_id, m.template))
            .collect())
    }

    fn score_mined(&mut self, line: &LogLine, id: TemplateId, template: String) -> Score {
        let cfg = &self.config;
        let first_line_ms = *self.first_line_ms.get_or_insert(line.timestamp_ms);
        self.lines_seen += 1;
        let warming_up = self.lines_seen <= cfg.warmup_lines
            || line.timestamp_ms.saturating_sub(first_line_ms) < cfg.warmup_ms;

        // The template's counts and the time windows it was seen in.
        let window = line.timestamp_ms.div_euclid(cfg.presence_window_ms.max(1));
        let stats = self.stats.entry(id.clone()).or_insert(TemplateStats {
            count: 0,
            first_seen_ms: line.timestamp_ms,
            last_seen_ms: line.timestamp_ms,
            alerting_since_ms: None,
            windows: 0,
            window,
            window_lines: 0,
            max_window_lines: 0,
            new_after_warmup: !warming_up,
            novelty: 0.0,
            last_score: 0.0,
            last_severity: 0.0,
        });
        let seen_before = stats.count;
        let previous_first_seen = stats.first_seen_ms;
        if seen_before == 0 || window > stats.window {
            stats.windows += 1;
            stats.window = window;
            stats.window_lines = 0;
        }
        stats.count += 1;
        stats.window_lines += 1;
        stats.max_window_lines = stats.max_window_lines.max(stats.window_lines);
        stats.first_seen_ms = stats.first_seen_ms.min(line.timestamp_ms);
        stats.last_seen_ms = stats.last_seen_ms.max(line.timestamp_ms);
        let learned_normal = stats.learned_normal(cfg);
        let (windows, new_after_warmup) = (stats.windows, stats.new_after_warmup);
        let birth_novelty = stats.novelty;

        // Nearest known template that is not labelled anomalous, and the nearest labelled
        // ones (either label, above the similarity bar), both excluding this template.
        let (closest, labelled) = self.neighbours(&id);
        let closest = closest.map(|(i, sim)| (&self.seen_order[i], sim));
        let cfg = &self.config;
        let nearest_sim = closest.map_or(0.0, |(_, s)| s);
        // Novelty is the template's at first sight (against what was known then); a
        // template of the warm-up has none: it is part of what normal looks like.
        let novelty = if seen_before > 0 {
            birth_novelty
        } else if warming_up {
            0.0
        } else {
            ((cfg.similar_at - nearest_sim) / cfg.novelty_span).clamp(0.0, 1.0)
        };
        // Diagnostics only (the verdict does not decay with repetition).
        #[allow(clippy::cast_precision_loss)]
        let rarity = 1.0 / (1.0 + (seen_before as f32 + 1.0).ln());
        let level = line.severity.weight();
        let failure_likeness = match (&self.failure_axis, self.embeddings.get(&id)) {
            (Some(axis), Some(e)) => axis.failure_likeness(e),
            _ => 0.0,
        };
        let meaning = cfg.meaning_severity_max * failure_likeness;
        let severity = level.max(meaning);
        let newness = if new_after_warmup && !warming_up {
            cfg.new_weight
        } else {
            0.0
        };
        let floor = cfg.novelty_severity_floor.clamp(0.0, 1.0);
        let novelty_part = cfg.novelty_weight * novelty * (floor + (1.0 - floor) * severity);
        let prior = (cfg.severity_weight * severity + novelty_part + newness).clamp(0.0, 1.0);

        // The neighbours' vote, weighted by similarity.
        let vote = {
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
        };

        let own_label = self.labels.get(&id).copied();
        let high = (cfg.threshold + 1.0) / 2.0;
        let low = cfg.threshold * 0.5;
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
                format!("learned as normal: seen steadily, in {windows} separate time windows"),
            ),
            (None, None, false) => {
                let why = if seen_before == 0 {
                    "not learned as normal yet".to_string()
                } else if windows == 1 {
                    "not learned as normal: one burst so far".to_string()
                } else {
                    format!("not learned as normal: seen in {windows} time windows, in bursts")
                };
                (TemplateState::Unknown, DecidedBy::Prior, prior, why)
            }
        };
        let score = score.clamp(0.0, 1.0);
        let is_anomaly = score >= cfg.threshold;

        // Words.
        let mut parts = Vec::new();
        if seen_before == 0 {
            let span = human_duration(line.timestamp_ms.saturating_sub(first_line_ms));
            if closest.is_none() {
                parts.push("First message pattern seen".to_string());
            } else if novelty >= 0.5 {
                parts.push(format!(
                    "New message pattern, unlike anything seen in {span}"
                ));
            } else {
                parts.push("New message pattern, close to known ones".to_string());
            }
        } else {
            let since = human_duration(line.timestamp_ms.saturating_sub(previous_first_seen));
            parts.push(format!(
                "Known message pattern, seen {} time{} in {since}",
                seen_before,
                if seen_before == 1 { "" } else { "s" }
            ));
        }
        let closest_out = closest.map(|(other, sim)| (self.template_text(other), sim));
        if let Some((text, sim)) = &closest_out {
            if seen_before == 0 {
                parts.push(format!("closest known: '{text}' (similarity {sim:.2})"));
            }
        }
        parts.push(format!("severity {}", line.severity.as_str()));
        if meaning > level && meaning >= 0.4 {
            parts.push("reads like a failure".to_string());
        }
        parts.push(note);
        if warming_up {
            parts.push(
                "still learning what normal looks like (warm-up): only the level and meaning count"
                    .into(),
            );
        }
        let summary = parts.join("; ");

        if seen_before == 0 {
            self.seen_index.insert(id.clone(), self.seen_order.len());
            self.seen_order.push(id.clone());
        }
        if let Some(stats) = self.stats.get_mut(&id) {
            stats.last_score = score;
            stats.last_severity = severity;
            if seen_before == 0 {
                stats.novelty = novelty;
            }
        }

        Score {
            score,
            is_anomaly,
            template_id: id,
            template,
            summary,
            novelty,
            rarity,
            closest: closest_out,
            warming_up,
            failure_likeness,
            state,
            decided_by,
            severity,
        }
    }

    /// The review queue's inputs for every unlabelled template scored so far: its last
    /// score, prior severity, whether it is learned normal, and its line count (callers
    /// that know recent counts pass those to [`crate::review::priority`] instead).
    pub fn review_inputs(&self) -> Vec<(TemplateId, crate::review::ReviewInput)> {
        self.stats
            .iter()
            .filter(|(id, s)| s.count > 0 && !self.labels.contains_key(*id))
            .map(|(id, s)| {
                (
                    id.clone(),
                    crate::review::ReviewInput {
                        score: s.last_score,
                        lines: s.count,
                        severity: s.last_severity,
                        learned_normal: s.learned_normal(&self.config),
                    },
                )
            })
            .collect()
    }

    /// How present a template has been: the time windows it was seen in and the most
    /// lines of any one of them (what "learned normal" is judged on), for persistence.
    pub fn presence(&self, id: &TemplateId) -> Option<Presence> {
        self.stats.get(id).map(|s| Presence {
            windows: s.windows,
            max_window_lines: s.max_window_lines,
        })
    }

    /// The configuration this scorer runs with.
    pub fn config(&self) -> &ScorerConfig {
        &self.config
    }

    /// Nearest candidate not labelled anomalous, and the nearest labelled candidates
    /// above `label_similarity` (at most `label_neighbours`, most similar first), for `id`
    /// (indices into `seen_order`). Incremental: only templates seen since the last call
    /// for `id` are compared, unless labels invalidated the cache.
    #[allow(clippy::type_complexity)]
    fn neighbours(&mut self, id: &TemplateId) -> (Option<(usize, f32)>, Vec<(usize, f32, Label)>) {
        let Some(own) = self.embeddings.get(id) else {
            return (None, Vec::new());
        };
        let mut cache = self.neighbours.remove(id).unwrap_or_default();
        let closest_now_anomalous = cache
            .closest
            .is_some_and(|(i, _)| self.labels.get(&self.seen_order[i]) == Some(&Label::Anomaly));
        if cache.epoch != self.closest_epoch || closest_now_anomalous {
            cache.scanned = 0;
            cache.closest = None;
            cache.epoch = self.closest_epoch;
        }
        for (i, other) in self.seen_order.iter().enumerate().skip(cache.scanned) {
            if other == id || self.labels.get(other) == Some(&Label::Anomaly) {
                continue;
            }
            let Some(v) = self.embeddings.get(other) else {
                continue;
            };
            let sim = dot(own, v);
            if cache.closest.is_none_or(|(_, s)| sim > s) {
                cache.closest = Some((i, sim));
            }
        }
        cache.scanned = self.seen_order.len();
        // Labelled templates are few: recompute over them whenever labels or the set of
        // candidates changed.
        if cache.labels_epoch != self.labels_epoch || cache.labelled_seen != self.seen_order.len() {
            cache.labelled.clear();
            cache.labels_epoch = self.labels_epoch;
            cache.labelled_seen = self.seen_order.len();
            for (other, &label) in &self.labels {
                if other == id {
                    continue;
                }
                let (Some(&i), Some(v)) = (self.seen_index.get(other), self.embeddings.get(other))
                else {
                    continue;
                };
                let sim = dot(own, v);
                if sim >= self.config.label_similarity {
                    cache.labelled.push((i, sim, label));
                }
            }
            cache
                .labelled
                .sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            cache.labelled.truncate(self.config.label_neighbours.max(1));
        }
        let out = (cache.closest, cache.labelled.clone());
        self.neighbours.insert(id.clone(), cache);
        out
    }

    /// The current text of a template (its id when unknown).
    pub fn template_text(&self, id: &TemplateId) -> String {
        self.miner
            .template(id)
            .map(|t| t.join(" "))
            .unwrap_or_else(|| id.to_string())
    }
}

/// The plain dot product (no normalisation): a projection on a direction.
fn plain_dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Cosine of two embeddings; they are unit length (L2-normalised by the embedder), so the
/// dot product. Falls back to the full cosine for anything else.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let d: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    if d.abs() <= 1.0 + 1e-3 {
        d
    } else {
        cosine(a, b)
    }
}

/// The text the model sees: the template with the miner's wildcard spelled as a word the
/// tokenizer knows, so `<*>` does not turn into three punctuation tokens.
fn embedding_text(template: &str) -> String {
    template.replace(crate::drain::WILDCARD, "<VAR>")
}

/// "3 days", "5 minutes", "12 seconds".
fn human_duration(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    let (n, unit) = if secs >= 86_400 {
        (secs / 86_400, "day")
    } else if secs >= 3_600 {
        (secs / 3_600, "hour")
    } else if secs >= 60 {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedder::EmbedderConfig;

    const MINUTE: i64 = 60_000;

    fn scorer(warmup_lines: u64) -> Scorer<Embedder> {
        let embedder = Embedder::start(EmbedderConfig::from_env())
            .unwrap_or_else(|e| panic!("embedder did not start: {e}"));
        let config = ScorerConfig {
            warmup_lines,
            ..ScorerConfig::default()
        };
        Scorer::new(config, embedder)
    }

    fn line(t: i64, severity: Severity, message: &str) -> LogLine {
        LogLine {
            timestamp_ms: t,
            severity,
            message: message.to_string(),
            source: None,
        }
    }

    const ROUTINE: &[&str] = &[
        "Accepted publickey for deploy from 10.0.0.5 port 51234 ssh2",
        "session opened for user deploy by (uid=0)",
        "session closed for user deploy",
        "GET /api/health 200 3ms",
        "Connection to 10.0.0.7 closed",
        "cache refresh finished in 120 ms",
    ];

    fn warm_up(s: &mut Scorer<Embedder>, rounds: i64) -> i64 {
        let mut t = 0;
        for round in 0..rounds {
            let batch: Vec<LogLine> = ROUTINE
                .iter()
                .map(|m| {
                    t += MINUTE;
                    line(
                        t,
                        Severity::Info,
                        &m.replace("10.0.0.", &format!("10.0.{round}.")),
                    )
                })
                .collect();
            s.score_batch(&batch).expect("scoring works");
        }
        t
    }

    #[test]
    fn novel_error_after_warm_up_is_flagged_and_routine_is_not() {
        let mut s = scorer(60);
        let t = warm_up(&mut s, 12);
        let novel = s
            .score(&line(
                t + MINUTE,
                Severity::Error,
                "kernel: Out of memory: Kill process 4242 (java) score 901",
            ))
            .expect("scoring works");
        assert!(novel.is_anomaly, "{novel:?}");
        assert!(
            novel.summary.starts_with("New message pattern"),
            "{}",
            novel.summary
        );
        assert!(
            novel.summary.contains("severity ERROR"),
            "{}",
            novel.summary
        );
        assert!(
            novel.summary.contains("closest known: '"),
            "{}",
            novel.summary
        );

        let routine = s
            .score(&line(
                t + 2 * MINUTE,
                Severity::Info,
                "session closed for user deploy",
            ))
            .expect("scoring works");
        assert!(!routine.is_anomaly, "{routine:?}");
        assert!(routine.score < 0.3, "{routine:?}");
        // Each distinct template was embedded once: one model call per batch with news.
        assert!(s.model_calls() <= 3, "model calls: {}", s.model_calls());
    }

    #[test]
    fn during_warm_up_only_level_and_meaning_count() {
        let mut s = scorer(1000);
        warm_up(&mut s, 2);
        let critical = s
            .score(&line(
                0,
                Severity::Critical,
                "segfault in worker thread, core dumped",
            ))
            .expect("scoring works");
        assert!(critical.warming_up);
        assert!(critical.is_anomaly, "{critical:?}");
        assert!(critical.summary.contains("warm-up"), "{}", critical.summary);
        let novel_info = s
            .score(&line(0, Severity::Info, "spooler rotated 12 queue files"))
            .expect("scoring works");
        assert!(!novel_info.is_anomaly, "{novel_info:?}");
        assert_eq!(novel_info.novelty, 0.0, "no novelty counts in the warm-up");
    }

    #[test]
    fn every_line_of_an_anomalous_burst_is_flagged_and_a_second_burst_too() {
        let mut s = scorer(30);
        let mut t = warm_up(&mut s, 40);
        let burst = |s: &mut Scorer<Embedder>, t: &mut i64, n: usize| -> Vec<Score> {
            (0..n)
                .map(|i| {
                    *t += 2_000;
                    s.score(&line(
                        *t,
                        Severity::Critical,
                        &format!("kernel panic: fatal machine check on cpu {i} bank 4"),
                    ))
                    .expect("scoring works")
                })
                .collect()
        };
        let first = burst(&mut s, &mut t, 60);
        assert!(first.iter().all(|sc| sc.is_anomaly), "{:?}", first.last());
        let last = first.last().expect("60 lines");
        assert_eq!(last.state, TemplateState::Unknown);
        assert_eq!(last.decided_by, DecidedBy::Prior);
        assert!(
            last.summary.contains("one burst so far"),
            "{}",
            last.summary
        );
        // The same burst 15 minutes later: still anomalous, every line.
        t += 15 * MINUTE;
        let second = burst(&mut s, &mut t, 11);
        assert!(second.iter().all(|sc| sc.is_anomaly), "{:?}", second.last());
    }

    #[test]
    fn a_template_seen_steadily_is_learned_normal() {
        let mut s = scorer(10);
        let mut t = 0;
        let mut last = None;
        // A CRITICAL routine message every 7 minutes for two hours.
        for i in 0..18 {
            t += 7 * MINUTE;
            last = Some(
                s.score(&line(
                    t,
                    Severity::Critical,
                    &format!("program load failure for job {i}: user binary not found"),
                ))
                .expect("scoring works"),
            );
        }
        let last = last.expect("scored");
        assert_eq!(last.state, TemplateState::LearnedNormal, "{last:?}");
        assert!(!last.is_anomaly, "{last:?}");
        assert!(
            last.summary.contains("learned as normal"),
            "{}",
            last.summary
        );
    }

    #[test]
    fn a_label_decides_later_lines_and_carries_to_close_templates_only() {
        let mut s = scorer(30);
        let t = warm_up(&mut s, 6);
        let failure = "Error loading /usr/lib/x.so: permission denied";
        let first = s
            .score(&line(t + MINUTE, Severity::Error, failure))
            .expect("scoring works");
        s.set_label(&first.template_id, Label::Anomaly);
        let again = s
            .score(&line(t + 2 * MINUTE, Severity::Info, failure))
            .expect("scoring works");
        assert!(again.is_anomaly, "{again:?}");
        assert_eq!(again.state, TemplateState::LabelledAnomaly);
        assert!(
            again.summary.contains("marked this pattern anomalous"),
            "{}",
            again.summary
        );

        // A close template (other words, same meaning) follows the label ...
        let close = s
            .score(&line(
                t + 3 * MINUTE,
                Severity::Info,
                "Error while loading library /usr/lib/x.so: permission denied",
            ))
            .expect("scoring works");
        assert_ne!(close.template_id, first.template_id);
        assert!(close.is_anomaly, "{close:?}");
        assert_eq!(close.decided_by, DecidedBy::NeighbourLabels);
        assert!(
            close
                .summary
                .contains("which an operator marked anomalous, similarity"),
            "{}",
            close.summary
        );
        // ... a far one does not.
        let far = s
            .score(&line(
                t + 4 * MINUTE,
                Severity::Info,
                "nightly backup rotated 4 archives",
            ))
            .expect("scoring works");
        assert_ne!(far.decided_by, DecidedBy::NeighbourLabels, "{far:?}");
        assert!(!far.is_anomaly, "{far:?}");

        // Normal works the same way.
        s.set_label(&first.template_id, Label::Normal);
        let quiet = s
            .score(&line(t + 5 * MINUTE, Severity::Error, failure))
            .expect("scoring works");
        assert!(!quiet.is_anomaly, "{quiet:?}");
        assert!(
            quiet.summary.contains("marked this pattern normal"),
            "{}",
            quiet.summary
        );
    }

    #[test]
    fn state_round_trips_and_reuses_cached_embeddings() {
        let mut s = scorer(0);
        warm_up(&mut s, 2);
        let state = s.export();
        let json = serde_json::to_string(&state).expect("state serialises");
        let state: ScorerState = serde_json::from_str(&json).expect("state deserialises");
        let embedder = Embedder::start(EmbedderConfig::from_env()).expect("embedder starts");
        let mut restored =
            Scorer::from_state(ScorerConfig::default(), embedder, state).expect("state imports");
        let r = restored
            .score(&line(
                10 * MINUTE,
                Severity::Info,
                "session closed for user deploy",
            ))
            .expect("scoring works");
        assert_eq!(restored.model_calls(), 0);
        assert!(
            r.summary.starts_with("Known message pattern"),
            "{}",
            r.summary
        );
    }

    #[test]
    fn severity_parsing_and_durations() {
        assert_eq!(Severity::parse("warn"), Severity::Warning);
        assert_eq!(Severity::parse("FATAL"), Severity::Critical);
        assert_eq!(Severity::parse("whatever"), Severity::Info);
        assert_eq!(human_duration(3 * 86_400_000 + 5), "3 days");
        assert_eq!(human_duration(61_000), "1 minute");
    }
}
