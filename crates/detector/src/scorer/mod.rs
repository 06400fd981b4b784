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
//!   novelty (+ new_weight when it first appeared after the warm-up, + up to
//!   settled_weight on its first lines when the stream had settled then, see `settled`)`,
//!   where severity is the larger of the level's weight and what the words say (the
//!   embedding's position between
//!   [`FAILURE_PROTOTYPES`] and [`ROUTINE_PROTOTYPES`]; worth less for a source that marks
//!   its trouble by level, see `levels`), and novelty is how far the template's embedding
//!   is from every other known template;
//! - **learned normal**: it has shown steady presence, seen in at least
//!   `normal_after_windows` separate time windows of `presence_window_ms`, spread over at
//!   least `normal_min_span_ms`, or (a dense log, where an hour is long) its lines arrived
//!   `normal_after_episodes` separate times (more than [`relearn::EPISODE_GAP_MS`] after
//!   its previous line) over at least `normal_episode_span_ms`; either way with no window
//!   holding more than `max_window_share` of its lines. A template first seen after the
//!   stream had run a while needs its lines spread over longer: `late_span_share` of the
//!   time watched before it, at most `late_span_max_ms` (the longer a source ran without a
//!   message, the more its arrival is a change), unless it was seen in at least
//!   `late_steady_coverage` of the windows since (it came and kept coming: the new
//!   steady state, as a chatty message a change brought in). A burst is one arrival however
//!   many lines it has: a template that only ever comes in bursts stays unknown, and so
//!   suspect. A line at a level that flags by itself (CRITICAL by default) is covered only
//!   once the template's lines at that level arrived `normal_after_windows` separate times
//!   ([`Presence::level_episodes`]): a CRITICAL burst of a message learned as INFO chatter,
//!   or one that came back once, is judged by its prior;
//! - **labelled normal / labelled anomaly**: an operator answered; the label decides.
//!
//! An unlabelled template close to labelled ones (cosine at or above `label_similarity`)
//! follows the similarity-weighted vote of its `label_neighbours` nearest labelled
//! templates, ahead of its own learned state and prior; but an anomalous vote does not
//! overrule a template learned as normal from its own steady presence (a success message
//! is close to its failure in the embedding).
//!
//! Until the warm-up is over (a number of lines and a span of time, both configurable)
//! novelty does not count (there is no "normal" to be novel against yet): only lines
//! severe by level or meaning are flagged. Every summary says which of these decided.
//!
//! The shared types and the [`Scorer`]'s life cycle are here; [`ScorerConfig`] in `config`;
//! what the words say ([`FAILURE_PROTOTYPES`], the failure axis) in `meaning`; which
//! sources mark their trouble by level in `levels`; the
//! persisted per-template counts ([`ScorerState`]) in `state`; the nearest-template cache
//! in `neighbours`; the steps from a mined line to its [`Score`] in `verdict`, and their
//! explanation in `summary`; what a template's earlier lines become once it is learned
//! as normal in [`relearn`].

mod config;
mod levels;
mod meaning;
mod neighbours;
pub mod relearn;
mod settled;
pub use settled::{BirthChunk, SharedBirths};
mod state;
mod summary;
mod verdict;

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::drain::{TemplateId, TemplateMiner};
use crate::embedder::{EmbedError, Embedder};

pub use config::{ScorerConfig, Steadiness};
pub use levels::{marks_trouble, MAX_SOURCES as MAX_LEVEL_SOURCES};
pub use meaning::{FAILURE_PROTOTYPES, ROUTINE_PROTOTYPES};
pub use state::{PresenceTally, ScorerState, TemplateCounts};

use levels::LevelUse;
use meaning::FailureAxis;
use neighbours::Neighbours;
use state::TemplateStats;

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

/// An embedder without the model, for tests of the rules around it: each word of a text
/// hashes to one of 64 dimensions, so texts that share words are close. Built for this
/// crate's tests and, with the `test-util` feature, for other crates' tests.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Clone, Copy, Default)]
pub struct BagOfWords;

#[cfg(any(test, feature = "test-util"))]
impl TextEmbedder for BagOfWords {
    fn embed_texts(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts
            .iter()
            .map(|text| {
                let mut v = vec![0f32; 64];
                for word in text.split_whitespace() {
                    let h = word
                        .bytes()
                        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
                    v[(h % 64) as usize] += 1.0;
                }
                crate::embedder::normalise(&mut v);
                v
            })
            .collect())
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
    /// The level words [`Severity::parse`] reads, upper case, with the level each means;
    /// any other word is INFO. The line-header reader ([`crate::line_header`]) knows a
    /// header's level word from this list too.
    pub const WORDS: &'static [(&'static str, Self)] = &[
        ("TRACE", Self::Debug),
        ("DEBUG", Self::Debug),
        ("FINE", Self::Debug),
        ("FINER", Self::Debug),
        ("FINEST", Self::Debug),
        ("WARN", Self::Warning),
        ("WARNING", Self::Warning),
        ("ERR", Self::Error),
        ("ERROR", Self::Error),
        ("SEVERE", Self::Error),
        ("CRIT", Self::Critical),
        ("CRITICAL", Self::Critical),
        ("FATAL", Self::Critical),
        ("FAILURE", Self::Critical),
        ("ALERT", Self::Critical),
        ("EMERG", Self::Critical),
        ("EMERGENCY", Self::Critical),
        ("PANIC", Self::Critical),
    ];

    /// Case-insensitive; accepts the usual spellings (WARN, ERR, FATAL, CRIT, ...),
    /// java.util.logging's FINE and SEVERE and Blue Gene/L's FAILURE ([`Severity::WORDS`]),
    /// as the log shippers' level words do (`shippers::severity`).
    pub fn parse(text: &str) -> Self {
        let upper = text.trim().to_ascii_uppercase();
        Self::WORDS
            .iter()
            .find(|(word, _)| *word == upper)
            .map_or(Self::Info, |&(_, level)| level)
    }

    /// The level's weight in [0, 1]: its contribution to the score, and the severity the
    /// review queue ranks by (as `db::templates::level_weight` does for stored lines).
    pub fn weight(self) -> f32 {
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
    /// The prior score in [0, 1] (level, meaning, novelty, newness), before a label, the
    /// neighbours' vote or learned normal decided `score`: what the line would score if
    /// that rule did not hold. The review queue ranks learned-normal templates by it.
    #[serde(default)]
    pub prior: f32,
    /// This line is the first its template was learned as normal on (steady presence
    /// shown, no label, no neighbour's vote): its earlier lines that the level alone
    /// flagged are re-scored ([`relearn`]). A template learned from its arrivals (a dense
    /// log) is marked once more on the line its time windows confirm it: the re-score
    /// runs again, its bursts judged against the windows seen since.
    #[serde(default)]
    pub newly_learned_normal: bool,
    /// The template's lines and presence windows so far, this line's included: what the
    /// re-score on `newly_learned_normal` judges its bursts by.
    #[serde(default)]
    pub lifetime: relearn::Lifetime,
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
    /// Separate arrivals of its lines: lines more than
    /// [`relearn::EPISODE_GAP_MS`] after the template's previous line (0 in states saved
    /// before it was counted).
    #[serde(default)]
    pub episodes: u32,
    /// Separate arrivals of its lines at the levels that flag a line by themselves
    /// ([`relearn::levels_flagged_alone`]: CRITICAL by default). Steady presence covers
    /// such a line only when these reach `normal_after_windows`: a CRITICAL burst of a
    /// pattern otherwise seen at INFO was not what was learned (0 in states saved before
    /// it was counted).
    #[serde(default)]
    pub level_episodes: u32,
}

/// How a template was first seen (see [`Scorer::first_sight`]).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FirstSight {
    /// First seen after the warm-up was over.
    pub new_after_warmup: bool,
    /// How unlike every template known then it was (0 for templates of the warm-up).
    pub novelty: f32,
    /// How settled the stream was then (what its newness counts for, see
    /// [`ScorerConfig::settled_weight`]).
    pub settled: f32,
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

/// Online scorer; owns the template miner, the embedding cache and the feedback.
pub struct Scorer<E> {
    config: ScorerConfig,
    embedder: E,
    miner: TemplateMiner,
    embeddings: HashMap<TemplateId, Vec<f32>>,
    labels: HashMap<TemplateId, Label>,
    /// The most severe level a normal label covers, when narrower than every level (see
    /// [`Scorer::set_label_up_to`]).
    label_levels: HashMap<TemplateId, Severity>,
    stats: HashMap<TemplateId, TemplateStats>,
    lines_seen: u64,
    first_line_ms: Option<i64>,
    /// Which sources mark their trouble by level.
    levels: LevelUse,
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
    /// When each template was last scored (see `ScorerState::recency`), and the next tick.
    recency: HashMap<TemplateId, u64>,
    tick: u64,
    /// Templates forgotten past `max_templates` since the last [`Scorer::take_evicted`].
    evicted: Vec<TemplateId>,
    /// Which of the stream's latest lines started a template (how settled it is).
    births: settled::Births,
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
            label_levels: HashMap::new(),
            stats: HashMap::new(),
            lines_seen: 0,
            first_line_ms: None,
            levels: LevelUse::default(),
            model_calls: 0,
            texts_embedded: 0,
            lines_needing_model: 0,
            seen_order: Vec::new(),
            seen_index: HashMap::new(),
            neighbours: HashMap::new(),
            closest_epoch: 0,
            labels_epoch: 0,
            failure_axis: None,
            recency: HashMap::new(),
            tick: 1,
            evicted: Vec::new(),
            births: settled::Births::default(),
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
            .filter(|(_, s)| s.tally.count > 0)
            .map(|(id, _)| id.clone())
            .collect();
        seen_order.sort();
        let seen_index = seen_order
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();
        let tick = state.recency.values().max().map_or(1, |t| t + 1);
        Ok(Self {
            config,
            embedder,
            miner,
            embeddings: state.embeddings,
            labels: state.labels,
            label_levels: state.label_levels,
            stats: state.stats,
            lines_seen: state.lines_seen,
            first_line_ms: state.first_line_ms,
            levels: state.levels,
            model_calls: 0,
            texts_embedded: 0,
            lines_needing_model: 0,
            seen_order,
            seen_index,
            neighbours: HashMap::new(),
            closest_epoch: 0,
            labels_epoch: 0,
            failure_axis: None,
            recency: state.recency,
            tick,
            evicted: Vec::new(),
            births: state.births,
        })
    }

    pub fn export(&self) -> ScorerState {
        ScorerState {
            miner: self.miner.export(),
            embeddings: self.embeddings.clone(),
            labels: self.labels.clone(),
            label_levels: self.label_levels.clone(),
            stats: self.stats.clone(),
            lines_seen: self.lines_seen,
            first_line_ms: self.first_line_ms,
            levels: self.levels.clone(),
            recency: self.recency.clone(),
            births: self.births.clone(),
        }
    }

    /// Record an operator's label on a template; later scores use it, at every level.
    pub fn set_label(&mut self, template: &TemplateId, label: Label) {
        self.set_label_up_to(template, label, Severity::Critical);
    }

    /// Record an operator's label given when the template's lines had come at `seen` at
    /// most (what the operator could see). An anomaly label covers every level. A normal
    /// label covers a line at a level that flags by itself (CRITICAL by default) above
    /// `seen` only once the template's lines at that level arrived steadily (as learning
    /// needs, [`Presence::level_episodes`]): "normal" said of INFO chatter does not vouch for
    /// a later CRITICAL burst of it.
    pub fn set_label_up_to(&mut self, template: &TemplateId, label: Label, seen: Severity) {
        if label == Label::Normal && seen < Severity::Critical {
            self.label_levels.insert(template.clone(), seen);
        } else {
            self.label_levels.remove(template);
        }
        let old = self.labels.insert(template.clone(), label);
        self.label_changed(old, Some(label));
    }

    pub fn clear_label(&mut self, template: &TemplateId) {
        self.label_levels.remove(template);
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
        // A labelled template held without an embedding (loaded from a row whose stored
        // one an upgrade cleared, such as a template mined with its line header before
        // the miner read messages alone) is embedded with them, from its text: its label
        // votes on close templates again (a message's lines now mine into a template of
        // their own, which an operator's answer on the old one would otherwise not reach).
        for id in self.labels.keys() {
            if !self.embeddings.contains_key(id) && !missing.iter().any(|(m, _)| m == id) {
                if let Some(tokens) = self.miner.template(id) {
                    missing.push((id.clone(), tokens.join(" ")));
                }
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
                if self.labels.contains_key(&id) {
                    // A labelled template is a candidate of every nearest-labelled cache.
                    self.labels_epoch += 1;
                }
                self.embeddings.insert(id, v);
            }
        }
        let batch: HashSet<TemplateId> = mined.iter().map(|m| m.template_id.clone()).collect();
        let scores = lines
            .iter()
            .zip(mined)
            .map(|(line, m)| self.score_mined(line, m.template_id, m.template))
            .collect();
        self.touch(batch.iter());
        self.evict_over_cap(&batch);
        Ok(scores)
    }

    /// Marks templates as seen now, for eviction (scoring a line does it; a caller that
    /// brings a template back does it so the template is not the next to go).
    pub fn touch<'a>(&mut self, ids: impl IntoIterator<Item = &'a TemplateId>) {
        for id in ids {
            self.recency.insert(id.clone(), self.tick);
        }
        self.tick += 1;
    }

    /// Forgets templates while there are more than `max_templates`, least recently seen
    /// first and operator-labelled ones last, never one of `keep` (the templates of the
    /// batch being scored, so a batch with more templates than the cap keeps them all
    /// until the next). To spare the per-template caches, a round that has to evict goes
    /// 1 % below the cap. What was forgotten is listed by [`Scorer::take_evicted`].
    pub fn evict_over_cap(&mut self, keep: &HashSet<TemplateId>) {
        let cap = self.config.max_templates.max(1);
        let len = self.miner.len();
        if len <= cap {
            return;
        }
        let target = cap - cap / 100;
        let mut candidates: Vec<(bool, u64, TemplateId)> = self
            .miner
            .records()
            .filter(|r| !keep.contains(&r.id))
            .map(|r| {
                (
                    self.labels.contains_key(&r.id),
                    self.recency.get(&r.id).copied().unwrap_or(0),
                    r.id,
                )
            })
            .collect();
        candidates.sort_unstable();
        let victims: HashSet<TemplateId> = candidates
            .into_iter()
            .take(len - target)
            .map(|(_, _, id)| id)
            .collect();
        self.forget(&victims);
    }

    fn forget(&mut self, ids: &HashSet<TemplateId>) {
        if ids.is_empty() {
            return;
        }
        self.miner.remove(ids);
        let mut labelled = false;
        for id in ids {
            self.embeddings.remove(id);
            labelled |= self.labels.remove(id).is_some();
            self.label_levels.remove(id);
            self.stats.remove(id);
            self.recency.remove(id);
        }
        self.seen_order.retain(|id| !ids.contains(id));
        self.seen_index = self
            .seen_order
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();
        // Neighbour caches hold positions in `seen_order`, which moved.
        self.neighbours.clear();
        self.closest_epoch += 1;
        if labelled {
            self.labels_epoch += 1;
        }
        self.evicted.extend(ids.iter().cloned());
    }

    /// Forgets templates whose lines are kept under another id (another replica stored
    /// the same pattern first, see the scoring crate's `shared::stored_twin`). Unlike
    /// eviction, they are not listed by [`Scorer::take_evicted`].
    pub fn forget_twins(&mut self, ids: &HashSet<TemplateId>) {
        let evicted_before = self.evicted.len();
        self.forget(ids);
        self.evicted.truncate(evicted_before);
    }

    /// The templates forgotten past `max_templates` since the last call.
    pub fn take_evicted(&mut self) -> Vec<TemplateId> {
        std::mem::take(&mut self.evicted)
    }

    /// The lines scored since the last call and which of them started a template: this
    /// scorer's part of the stream's count of how settled it is, for the count replicas
    /// share (see [`Scorer::rebase_births`]).
    pub fn take_births(&mut self) -> BirthChunk {
        self.births.take()
    }

    /// How settled the stream is now, in [0, 1]: what a template first seen on the next
    /// line would get (see [`ScorerConfig::settled_weight`]).
    pub fn stream_settled(&self) -> f32 {
        self.births
            .settled(self.config.settled_lines, self.config.settled_share)
    }

    /// Takes the stream's shared count of which latest lines started a template (every
    /// replica's handed-over lines) as this scorer's, followed by `pending` (chunks taken
    /// here that the shared count does not hold yet) and the lines scored here since the
    /// last [`Scorer::take_births`].
    pub fn rebase_births(&mut self, shared: &SharedBirths, pending: &[BirthChunk]) {
        self.births
            .rebase(shared, pending, self.config.settled_lines);
    }

    /// The template an in-memory template would take `message` to, without changing
    /// anything; `None` when it would start a new one (see [`TemplateMiner::peek`]).
    pub fn peek_template(&self, message: &str) -> Option<TemplateId> {
        self.miner.peek(message)
    }

    /// The review queue's candidates: every unlabelled template scored so far, and whether
    /// it is learned as normal. The rest of [`crate::review::ReviewInput`] (its recent
    /// lines, their mean score and most severe level) is the caller's to count, as
    /// `GET /api/review/` counts it from the stored lines.
    pub fn review_candidates(&self) -> Vec<(TemplateId, bool)> {
        self.stats
            .iter()
            .filter(|(id, s)| s.tally.count > 0 && !self.labels.contains_key(*id))
            .map(|(id, s)| {
                (
                    id.clone(),
                    s.learned_normal(&self.config, self.stream_start_ms()),
                )
            })
            .collect()
    }

    /// How present a template has been: the time windows it was seen in and the most
    /// lines of any one of them (what "learned normal" is judged on), for persistence.
    pub fn presence(&self, id: &TemplateId) -> Option<Presence> {
        self.stats.get(id).map(TemplateStats::presence)
    }

    /// How a template was first seen: after the warm-up or not, and how unlike every
    /// template known then (what its later lines' prior keeps), for the other replicas.
    pub fn first_sight(&self, id: &TemplateId) -> Option<FirstSight> {
        self.stats.get(id).map(|s| FirstSight {
            new_after_warmup: s.new_after_warmup,
            novelty: s.novelty,
            settled: s.settled,
        })
    }

    /// Which sources mark their trouble by level, from counts kept elsewhere (every
    /// replica's lines): the whole stream's `(lines, lines at WARNING or above)` and each
    /// source's, instead of the lines this scorer counted.
    pub fn set_level_use(
        &mut self,
        stream: (u64, u64),
        sources: impl IntoIterator<Item = (String, u64, u64)>,
    ) {
        self.levels.replace(stream, sources);
    }

    /// When the stream started: its first line's time (none yet: nothing is late).
    pub fn stream_start_ms(&self) -> i64 {
        self.first_line_ms.unwrap_or(i64::MAX)
    }

    /// The configuration this scorer runs with.
    pub fn config(&self) -> &ScorerConfig {
        &self.config
    }

    /// The current text of a template (its id when unknown).
    pub fn template_text(&self, id: &TemplateId) -> String {
        self.miner
            .template(id)
            .map(|t| t.join(" "))
            .unwrap_or_else(|| id.to_string())
    }
}

/// The text the model sees: the template's message from its first word on, with the
/// miner's wildcard spelled as a word the tokenizer knows, so `<*>` does not turn into three
/// punctuation tokens.
///
/// The miner leaves a line header out of the templates it makes; a template mined before it
/// did (`<TS> host sshd[<NUM>]: ...`) is read from the end of its header too
/// ([`crate::line_header::message_start`]). Values before the message's first word (a
/// count, a timestamp, a host: `<NUM> failures on node <HOST>`, `<HOST>: open`; tokens
/// without a letter, or of placeholders and punctuation only) say nothing about what it
/// means, but the model reads them as much as the words, and they pull every template that
/// starts with them towards each other. A template of values only is kept whole. Changing
/// this text changes stored embeddings' meaning: a migration clears the ones it changes
/// (`2026-12-07-000001_embedding_text`, `2026-12-07-000002_embedding_header`), and the
/// workers embed them again.
fn embedding_text(template: &str) -> String {
    let words: Vec<&str> = template.split(' ').collect();
    let message = &words[crate::line_header::message_start(&words)..];
    let first_word = message
        .iter()
        .position(|w| crate::line_header::is_word(w))
        .unwrap_or(0);
    message[first_word..]
        .join(" ")
        .replace(crate::drain::WILDCARD, "<VAR>")
}

#[cfg(test)]
mod tests;
