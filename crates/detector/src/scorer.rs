//! Scoring: how unusual is this line, and why.
//!
//! Each line is mined to a template ([`crate::drain`]); each distinct template is embedded
//! once (cached by template id) and the score combines:
//!
//! - **semantic novelty**: how far the template's embedding is from every other template
//!   seen so far that is not labelled anomalous ("what normal looks like");
//! - **rarity**: how few times the template has been seen (first sighting = 1);
//! - **severity**: the line's level;
//! - **feedback**: a template labelled normal stops alerting, one labelled anomalous keeps
//!   alerting, and templates whose embeddings are close to a labelled one are pulled the
//!   same way, in proportion to the similarity.
//!
//! Until the warm-up is over (a number of lines and a span of time, both configurable) the
//! scorer only learns: scores are computed but nothing is flagged.
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
    /// Weights of the three parts; they sum to 1 so the score stays in [0, 1].
    pub novelty_weight: f32,
    pub rarity_weight: f32,
    pub severity_weight: f32,
    /// Cosine at or above which a template counts as "the same kind of message" (novelty
    /// 0); novelty rises linearly to 1 at `similar_at - novelty_span`.
    pub similar_at: f32,
    pub novelty_span: f32,
    /// Cosine from which a labelled template starts pulling a neighbour; the pull is full
    /// at `label_pull_from + label_pull_span`.
    pub label_pull_from: f32,
    pub label_pull_span: f32,
    /// Once a template has alerted, its lines keep alerting for this many milliseconds
    /// after the first alert (one incident, one burst), unless an operator labels the
    /// template. 0 turns this off.
    #[serde(default = "default_alert_hold_ms")]
    pub alert_hold_ms: i64,
    /// How severe a line can count for what its words say, whatever its level: a template
    /// that reads like a failure ("authentication failure", "connection refused") at INFO
    /// counts up to this severity weight (ERROR is 0.8). Measured by where its embedding
    /// falls between [`FAILURE_PROTOTYPES`] and [`ROUTINE_PROTOTYPES`]. 0 turns it off.
    #[serde(default = "default_meaning_severity_max")]
    pub meaning_severity_max: f32,
    pub miner: MinerConfig,
}

fn default_alert_hold_ms() -> i64 {
    ScorerConfig::default().alert_hold_ms
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

impl Default for ScorerConfig {
    fn default() -> Self {
        Self {
            threshold: 0.6,
            warmup_lines: 200,
            warmup_ms: 0,
            novelty_weight: 0.55,
            rarity_weight: 0.2,
            severity_weight: 0.25,
            similar_at: 0.85,
            novelty_span: 0.6,
            label_pull_from: 0.5,
            label_pull_span: 0.25,
            alert_hold_ms: 60 * 1000,
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
    pub novelty: f32,
    pub rarity: f32,
    /// Most similar other known template and its cosine similarity, if any.
    pub closest: Option<(String, f32)>,
    pub warming_up: bool,
    /// How much the template reads like a failure, whatever the line's level: 0 routine,
    /// 1 as much as the failure prototypes (0 when `meaning_severity_max` is 0).
    #[serde(default)]
    pub failure_likeness: f32,
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
    /// Timestamp of the template's last alert while its incident is open.
    #[serde(default)]
    alerting_since_ms: Option<i64>,
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
    /// Nearest labelled template and its label.
    labelled: Option<(usize, f32, Label)>,
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

        let seen_before = self.stats.get(&id).map_or(0, |s| s.count);
        let previous_first_seen = self.stats.get(&id).map(|s| s.first_seen_ms);

        // Nearest known template that is not labelled anomalous, and the nearest labelled
        // one (either label), both excluding this template.
        let (closest, closest_labelled) = self.neighbours(&id);
        let closest = closest.map(|(i, sim)| (&self.seen_order[i], sim));
        let closest_labelled =
            closest_labelled.map(|(i, sim, label)| (&self.seen_order[i], sim, label));
        let cfg = &self.config;
        let nearest_sim = closest.map_or(0.0, |(_, s)| s);
        let novelty = ((cfg.similar_at - nearest_sim) / cfg.novelty_span).clamp(0.0, 1.0);
        // 1 on first sight, 0.59 on the second, 0.3 by the tenth.
        let rarity = 1.0 / (1.0 + (seen_before as f32 + 1.0).ln());
        let level = line.severity.weight();
        let failure_likeness = match (&self.failure_axis, self.embeddings.get(&id)) {
            (Some(axis), Some(e)) => axis.failure_likeness(e),
            _ => 0.0,
        };
        let meaning = cfg.meaning_severity_max * failure_likeness;
        let severity = level.max(meaning);
        let mut score = cfg.novelty_weight * novelty * rarity
            + cfg.rarity_weight * rarity
            + cfg.severity_weight * severity;

        let own_label = self.labels.get(&id).copied();
        let mut feedback_note = None;
        match own_label {
            Some(Label::Normal) => {
                // Marked normal: never alert again on this template.
                score = score.min(cfg.threshold * 0.5);
                feedback_note = Some("marked normal by an operator".to_string());
            }
            Some(Label::Anomaly) => {
                score = score.max((cfg.threshold + 1.0) / 2.0);
                feedback_note = Some("marked anomalous by an operator".to_string());
            }
            None => {
                if let Some((other, sim, label)) = closest_labelled {
                    let pull = ((sim - cfg.label_pull_from) / cfg.label_pull_span).clamp(0.0, 1.0);
                    if pull > 0.0 {
                        let other_text = self.template_text(other);
                        match label {
                            Label::Normal => score *= 1.0 - pull,
                            Label::Anomaly => score += pull * (1.0 - score),
                        }
                        feedback_note = Some(format!(
                            "similar to '{other_text}' which an operator marked {} (similarity {sim:.2})",
                            match label {
                                Label::Normal => "normal",
                                Label::Anomaly => "anomalous",
                            }
                        ));
                    }
                }
            }
        }
        let mut score = score.clamp(0.0, 1.0);
        // An open incident: the template alerted and keeps recurring. It stays alerting
        // until an operator labels it (normal silences it above, anomaly keeps it up).
        let held_since = self.stats.get(&id).and_then(|s| {
            let since = s.alerting_since_ms?;
            let recent = line.timestamp_ms.saturating_sub(since) <= cfg.alert_hold_ms;
            (recent && own_label.is_none()).then_some(since)
        });
        if held_since.is_some() && !warming_up {
            score = score.max(cfg.threshold);
        }
        let is_anomaly = !warming_up && score >= cfg.threshold;

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
            let since = previous_first_seen
                .map(|t| human_duration(line.timestamp_ms.saturating_sub(t)))
                .unwrap_or_else(|| "a while".into());
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
        if let Some(note) = feedback_note {
            parts.push(note);
        }
        if let Some(since) = held_since {
            parts.push(format!(
                "still recurring since its first alert {} ago",
                human_duration(line.timestamp_ms.saturating_sub(since))
            ));
        }
        if warming_up {
            parts.push("still learning what normal looks like (warm-up), not alerting".into());
        }
        let summary = parts.join("; ");

        if seen_before == 0 {
            self.seen_index.insert(id.clone(), self.seen_order.len());
            self.seen_order.push(id.clone());
        }
        let stats = self.stats.entry(id.clone()).or_insert(TemplateStats {
            count: 0,
            first_seen_ms: line.timestamp_ms,
            last_seen_ms: line.timestamp_ms,
            alerting_since_ms: None,
        });
        stats.count += 1;
        stats.last_seen_ms = stats.last_seen_ms.max(line.timestamp_ms);
        if is_anomaly && own_label.is_none() && held_since.is_none() {
            // A fresh alert opens a new hold window.
            stats.alerting_since_ms = Some(line.timestamp_ms);
        } else if !is_anomaly {
            stats.alerting_since_ms = None;
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
        }
    }

    /// Nearest candidate not labelled anomalous, and nearest labelled candidate, for `id`
    /// (indices into `seen_order`). Incremental: only templates seen since the last call
    /// for `id` are compared, unless labels invalidated the cache.
    #[allow(clippy::type_complexity)]
    fn neighbours(
        &mut self,
        id: &TemplateId,
    ) -> (Option<(usize, f32)>, Option<(usize, f32, Label)>) {
        let Some(own) = self.embeddings.get(id) else {
            return (None, None);
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
            cache.labelled = None;
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
                if cache.labelled.is_none_or(|(_, s, _)| sim > s) {
                    cache.labelled = Some((i, sim, label));
                }
            }
        }
        let out = (cache.closest, cache.labelled);
        self.neighbours.insert(id.clone(), cache);
        out
    }

    fn template_text(&self, id: &TemplateId) -> String {
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
    fn nothing_is_flagged_during_warm_up() {
        let mut s = scorer(1000);
        warm_up(&mut s, 2);
        let novel = s
            .score(&line(
                0,
                Severity::Critical,
                "segfault in worker thread, core dumped",
            ))
            .expect("scoring works");
        assert!(!novel.is_anomaly);
        assert!(novel.warming_up);
        assert!(novel.summary.contains("warm-up"), "{}", novel.summary);
    }

    #[test]
    fn normal_label_quiets_the_template_and_its_semantic_neighbours() {
        let mut s = scorer(30);
        let t = warm_up(&mut s, 6);
        let first = s
            .score(&line(
                t + MINUTE,
                Severity::Error,
                "Error loading /usr/lib/x.so: permission denied",
            ))
            .expect("scoring works");
        assert!(first.is_anomaly, "{first:?}");
        s.set_label(&first.template_id, Label::Normal);

        let again = s
            .score(&line(
                t + 2 * MINUTE,
                Severity::Error,
                "Error loading /usr/lib/x.so: permission denied",
            ))
            .expect("scoring works");
        assert!(!again.is_anomaly, "{again:?}");

        let neighbour = s
            .score(&line(
                t + 3 * MINUTE,
                Severity::Error,
                "Error loading module: exec format error",
            ))
            .expect("scoring works");
        assert_ne!(neighbour.template_id, first.template_id);
        assert!(!neighbour.is_anomaly, "{neighbour:?}");
        assert!(
            neighbour.summary.contains("marked normal"),
            "{}",
            neighbour.summary
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
