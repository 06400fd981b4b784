//! What the scorer learned per template, and its persisted form.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Label, Presence, ScorerConfig};
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
    /// First seen after the warm-up was over.
    #[serde(default)]
    pub(super) new_after_warmup: bool,
    /// How unlike every template known before it the template was when first seen (0 for
    /// templates of the warm-up: they are what normal looks like).
    #[serde(default)]
    pub(super) novelty: f32,
    /// The last line's score and prior severity, for the review queue.
    #[serde(default)]
    pub(super) last_score: f32,
    #[serde(default)]
    pub(super) last_severity: f32,
}

impl TemplateStats {
    /// Steady presence: enough episodes, none holding too much of the template's lines.
    pub(super) fn learned_normal(&self, cfg: &ScorerConfig) -> bool {
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

/// Everything the scorer learned, for persistence (serde). Embeddings are included so a
/// restarted worker does not re-run the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScorerState {
    pub miner: MinerState,
    pub embeddings: HashMap<TemplateId, Vec<f32>>,
    pub labels: HashMap<TemplateId, Label>,
    pub(super) stats: HashMap<TemplateId, TemplateStats>,
    pub(super) lines_seen: u64,
    pub(super) first_line_ms: Option<i64>,
}
