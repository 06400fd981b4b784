//! The nearest known templates of a template, cached per template.

use super::{Label, Scorer, TextEmbedder};
use crate::drain::TemplateId;
use crate::embedder::cosine;

/// Per-template cache of the nearest neighbours, so a repeated template costs no vector
/// work: `scanned` templates of `seen_order` have been compared so far.
#[derive(Debug, Clone, Default)]
pub(super) struct Neighbours {
    scanned: usize,
    epoch: u64,
    /// Nearest template (index into `seen_order`) not labelled anomalous.
    closest: Option<(usize, f32)>,
    labels_epoch: u64,
    labelled_seen: usize,
    /// The nearest labelled templates at or above `label_similarity`, most similar first.
    labelled: Vec<(usize, f32, Label)>,
}

impl<E: TextEmbedder> Scorer<E> {
    /// Nearest candidate not labelled anomalous, and the nearest labelled candidates
    /// above `label_similarity` (at most `label_neighbours`, most similar first), for `id`
    /// (indices into `seen_order`). Incremental: only templates seen since the last call
    /// for `id` are compared, unless labels invalidated the cache.
    #[allow(clippy::type_complexity)]
    pub(super) fn neighbours(
        &mut self,
        id: &TemplateId,
    ) -> (Option<(usize, f32)>, Vec<(usize, f32, Label)>) {
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
