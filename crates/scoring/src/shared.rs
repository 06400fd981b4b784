//! The detector's scorer, kept in step with the other replicas through the `templates`
//! table.
//!
//! Each replica owns a [`Scorer`] (template miner, embedding cache, labels, counts). What
//! another replica needs lives in Postgres: after each batch the worker adds its counts and
//! new templates (with their embeddings) to `templates`, and before scoring, at most every
//! refresh interval, it pulls the rows changed since its last pull ([`SharedScorer::apply`])
//! — templates mined elsewhere, higher counts, more general text, operators' labels — so
//! every replica routes lines to the same template ids and honours the same feedback.
//! A line of a template another replica stored since the last pull is brought in before
//! scoring (see below); two replicas that meet one new message before either stored it
//! each mine it under an id of their own, and the write stores the second's lines in the
//! first's row ([`stored_twin`]), which the second replica then takes
//! ([`SharedScorer::adopt`]).
//!
//! All methods block (the model runs inside [`SharedScorer::score`]); the handler calls
//! them on the blocking pool.
//!
//! [`SharedScorer::apply`] merges the table's rows into the detector's exported state
//! ([`ScorerState`](detector::scorer::ScorerState)): template texts and embeddings directly, per-template counts and
//! presence with `ScorerState::restore_template`, the warm-up progress with
//! `ScorerState::merge_warmup`; then it rebuilds the scorer from that state.
//!
//! A template's presence over time ([`Presence`]: the separate time windows it was seen
//! in, the most lines of any one, its separate arrivals) decides whether it is learned
//! normal; the `templates` row keeps it for every replica: the worker's write counts the
//! batch's lines on from the row's tally under the row's lock ([`count_stored_presence`]),
//! so the row holds the presence of every replica's lines as one stream, and a replica
//! that pulls it takes the larger of its own view and the row's, field by field. A
//! template first stored by another replica keeps how new and how novel it was then
//! (`templates.new_after_warmup`, `templates.novelty`), so its later lines are not judged
//! as a template of the warm-up. A restarted or new replica does not flag routine
//! templates again.
//!
//! # A bounded number of templates
//!
//! Clients decide how many templates there are, so a replica keeps at most
//! `ScorerConfig::max_templates` (`LOGCANARY_MAX_TEMPLATES`): past it the scorer evicts the
//! least recently seen, operator-labelled ones last (`logcanary_templates_evicted_total`).
//! The table keeps every template, so nothing is lost: the lines of a batch that no held
//! template would take ([`SharedScorer::unmatched`]) are looked up in the table by how the
//! miner routes them ([`SharedScorer::route_probes`], `db::templates::route_candidates`),
//! and the stored templates they would join ([`SharedScorer::matching`]) are brought in
//! with their embeddings and labels before scoring ([`SharedScorer::restore`]): templates
//! this replica evicted (or left out of its first load), and templates another replica
//! stored since the last pull. A re-seen template keeps its row and id instead of starting
//! a second one.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use chrono::{DateTime, Utc};
use db::templates::RouteProbe;
use db::templates::TemplateRow;
use detector::{
    drain::{
        MinerConfig, MinerState, TemplateId, TemplateMiner, TemplateRecord, STATE_VERSION, WILDCARD,
    },
    embedder::{EmbedError, Embedder},
    masking::{is_placeholder_token, mask, PLACEHOLDERS},
    scorer::{
        BirthChunk, FirstSight, Label, LogLine, Presence, PresenceTally, Score, ScoreError, Scorer,
        ScorerConfig, Severity, SharedBirths, TemplateCounts, TextEmbedder,
    },
};

/// The embedder shared by successive scorers (a scorer rebuilt from a merged state reuses
/// the running model).
#[derive(Clone)]
pub struct SharedEmbedder(pub Arc<Embedder>);

impl TextEmbedder for SharedEmbedder {
    fn embed_texts(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let started = std::time::Instant::now();
        let result = self.0.embed_blocking(texts);
        // The "embed" stage of a batch, inside its "score" stage.
        metrics::histogram!("logcanary_scoring_stage_seconds", "stage" => "embed")
            .record(started.elapsed().as_secs_f64());
        result
    }
}

/// What this replica knows about one template.
#[derive(Debug, Clone, Default)]
struct Known {
    /// Lines counted by the local scorer (its own and those pulled from the table).
    count: u64,
    /// Current text in the local miner.
    text: String,
    /// Time windows the local scorer saw the template in, and the template's separate
    /// arrivals, all and at the levels that flag alone (its own and the table's).
    windows: u32,
    episodes: u32,
    level_episodes: u32,
    /// The operator's label and the most severe level it covers.
    label: Option<(Label, Severity)>,
    /// The table has this template's embedding.
    embedding_stored: bool,
    /// Embedding waiting to be stored (taken from the scorer once).
    pending_embedding: Option<Vec<f32>>,
}

/// The result of scoring a batch: one score per line, in input order, and the templates
/// the batch touched, with their text and, for templates the table lacks, the embedding.
#[derive(Debug)]
pub struct ScoredBatch {
    pub scores: Vec<Score>,
    pub templates: HashMap<TemplateId, TouchedTemplate>,
    /// Which of the lines scored since the last batch started a template, for the
    /// stream's shared count of how settled it is (`db::stream_births`).
    pub births: BirthChunk,
}

#[derive(Debug, Clone)]
pub struct TouchedTemplate {
    pub text: String,
    pub embedding: Option<Vec<f32>>,
    /// The template's presence as this replica knows it, after the batch.
    pub presence: Presence,
    /// How this replica first saw it (stored with a new row).
    pub first_sight: FirstSight,
    /// This replica has seen the template's row (pulled it, or wrote it): when not, the
    /// write looks for the same pattern stored by another replica under another id.
    pub row_seen: bool,
}

/// Errors from merging the table's templates into the scorer.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Score(#[from] ScoreError),
}

/// A scorer plus the bookkeeping that keeps it in step with the `templates` table.
pub struct SharedScorer<E> {
    config: ScorerConfig,
    embedder: E,
    scorer: Scorer<E>,
    known: HashMap<TemplateId, Known>,
    /// The table may hold templates this replica does not: it evicted some, left some out
    /// of a load, or another replica stores templates (a pull after the first load
    /// brought one it did not hold, or its write found one). Until then (one worker) no
    /// line is looked up in the table before scoring.
    table_has_more: bool,
}

impl<E: TextEmbedder + Clone> SharedScorer<E> {
    pub fn new(config: ScorerConfig, embedder: E) -> Self {
        let scorer = Scorer::new(config.clone(), embedder.clone());
        Self {
            config,
            embedder,
            scorer,
            known: HashMap::new(),
            table_has_more: false,
        }
    }

    /// What "learned normal" is judged by outside the scorer ([`LearnedJudge`]).
    pub fn learned_judge(&self) -> LearnedJudge {
        LearnedJudge {
            config: self.config.clone(),
            stream_start_ms: self.scorer.stream_start_ms(),
        }
    }

    /// Which sources mark their trouble by level, as every replica's written lines say
    /// (`db::source_levels`, the whole stream's row among them), instead of this
    /// replica's own count. Nothing changes before any line was written.
    pub fn set_level_use(&mut self, counts: &[db::source_levels::SourceLevels]) {
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        let Some(stream) = counts
            .iter()
            .find(|c| c.source == db::source_levels::STREAM)
        else {
            return;
        };
        let sources = counts
            .iter()
            .filter(|c| c.source != db::source_levels::STREAM)
            .map(|c| (c.source.clone(), count(c.lines), count(c.trouble)));
        self.scorer
            .set_level_use((count(stream.lines), count(stream.trouble)), sources);
    }

    /// How settled the stream is, as every replica's scored lines say (`shared`, from
    /// `db::stream_births`), followed by `pending` (lines this replica scored that the
    /// shared count does not hold yet), instead of this replica's own count.
    pub fn rebase_births(
        &mut self,
        shared: &db::stream_births::StreamBirths,
        pending: &[BirthChunk],
    ) {
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        let shared = SharedBirths {
            lines: count(shared.lines),
            births: shared.births.iter().map(|&b| count(b)).collect(),
        };
        self.scorer.rebase_births(&shared, pending);
    }

    /// How many of the stream's latest lines the settled count looks at (what the shared
    /// count must keep).
    pub fn settled_lines(&self) -> usize {
        self.config.settled_lines
    }

    /// Templates known to this replica.
    pub fn templates(&self) -> usize {
        self.known.len()
    }

    /// The rows of a pull this replica can hold: every row of a template it holds (their
    /// counts and labels apply), and of the others at most `max_templates`, labelled ones
    /// first, then the most recently seen (the others are brought in when their lines
    /// come, see [`SharedScorer::unmatched`]).
    pub fn loadable(&mut self, rows: Vec<TemplateRow>) -> Vec<TemplateRow> {
        let cap = self.config.max_templates.max(1);
        let (mut held, mut new): (Vec<TemplateRow>, Vec<TemplateRow>) = rows
            .into_iter()
            .partition(|r| self.known.contains_key(&TemplateId(r.template_key.clone())));
        if new.len() > cap {
            new.sort_by(|a, b| {
                b.label
                    .is_some()
                    .cmp(&a.label.is_some())
                    .then(b.last_seen.cmp(&a.last_seen))
            });
            let left_out = new.len() - cap;
            new.truncate(cap);
            self.table_has_more = true;
            tracing::info!(
                left_out,
                max_templates = cap,
                "More stored templates than LOGCANARY_MAX_TEMPLATES; the least recently seen are loaded when their lines come back."
            );
        }
        held.append(&mut new);
        held
    }

    /// Masked texts of the lines no template held here would take, when the table may
    /// hold templates this replica does not (evicted here, or stored by another replica
    /// since the last pull); none otherwise (one worker: no look-up, at no cost).
    pub fn unmatched(&self, lines: &[LogLine]) -> Vec<String> {
        if !self.table_has_more {
            return Vec::new();
        }
        let mut seen = HashSet::new();
        lines
            .iter()
            .filter(|l| self.scorer.peek_template(&l.message).is_none())
            .map(|l| mask(&l.message))
            .filter(|m| seen.insert(m.clone()))
            .collect()
    }

    /// How the miner routes these masked lines, as probes of the table ([`route_probes`]).
    pub fn route_probes(&self, masked: &[String]) -> Vec<RouteProbe> {
        route_probes(&self.config.miner, masked)
    }

    /// The rows among `candidates` that one of the masked lines would join, judged as the
    /// miner would with only those templates.
    pub fn matching(&self, candidates: &[TemplateRow], masked: &[String]) -> Vec<TemplateRow> {
        let Some(scratch) = scratch_miner(&self.config.miner, candidates) else {
            return Vec::new();
        };
        let wanted: HashSet<TemplateId> = masked
            .iter()
            .filter_map(|m| scratch.peek_masked(m))
            .collect();
        candidates
            .iter()
            .filter(|r| wanted.contains(&TemplateId(r.template_key.clone())))
            .cloned()
            .collect()
    }

    /// How this replica mines lines: what the write judges a template stored by another
    /// replica under another id by ([`stored_twin`]).
    pub fn miner_config(&self) -> MinerConfig {
        self.config.miner.clone()
    }

    /// Brings stored templates in from their rows (evicted here, or stored by another
    /// replica since the last pull; with `embeddings` for those this replica lacks), as the
    /// most recently seen, so the batch about to be scored routes its lines to them.
    pub fn restore(
        &mut self,
        rows: &[TemplateRow],
        embeddings: HashMap<String, Vec<f32>>,
    ) -> Result<(), MergeError> {
        let fresh = rows
            .iter()
            .filter(|r| !self.known.contains_key(&TemplateId(r.template_key.clone())))
            .count();
        self.merge(rows, embeddings, true)?;
        metrics::counter!("logcanary_templates_restored_total").increment(fresh as u64);
        Ok(())
    }

    /// Takes the stored rows `rows` in place of this replica's own templates `own`, which
    /// were the same patterns under other ids (their lines were written to those rows,
    /// see [`stored_twin`]): forgets the own and merges the rows in, so later lines join
    /// them.
    pub fn adopt(
        &mut self,
        own: &[String],
        rows: &[TemplateRow],
        embeddings: HashMap<String, Vec<f32>>,
    ) -> Result<(), MergeError> {
        let ids: HashSet<TemplateId> = own.iter().map(|k| TemplateId(k.clone())).collect();
        self.scorer.forget_twins(&ids);
        self.table_has_more = true;
        for id in &ids {
            self.known.remove(id);
        }
        self.merge(rows, embeddings, true)
    }

    /// Forgets what the scorer evicted.
    fn drop_evicted(&mut self) {
        let evicted = self.scorer.take_evicted();
        if evicted.is_empty() {
            return;
        }
        self.table_has_more = true;
        for id in &evicted {
            self.known.remove(id);
        }
        metrics::counter!("logcanary_templates_evicted_total").increment(evicted.len() as u64);
    }

    /// Keys among `rows` whose embedding this replica lacks (to fetch before [`apply`]).
    ///
    /// [`apply`]: SharedScorer::apply
    pub fn missing_embeddings(&self, rows: &[TemplateRow]) -> Vec<String> {
        rows.iter()
            .filter(|r| !self.known.contains_key(&TemplateId(r.template_key.clone())))
            .map(|r| r.template_key.clone())
            .collect()
    }

    /// A template's presence (time windows seen in, most lines of one) as this replica
    /// knows it; `None` for a template it has no stats for.
    pub fn presence(&self, id: &TemplateId) -> Option<Presence> {
        self.scorer.presence(id)
    }

    /// Merges rows of the table into the scorer: new templates (with `embeddings`), counts
    /// that grew elsewhere, text generalised elsewhere, presence seen in more windows
    /// elsewhere, labels. The scorer is rebuilt from a merged state only when templates,
    /// counts, text or windows changed; labels apply in place.
    pub fn apply(
        &mut self,
        rows: &[TemplateRow],
        embeddings: HashMap<String, Vec<f32>>,
    ) -> Result<(), MergeError> {
        self.merge(rows, embeddings, false)
    }

    /// [`SharedScorer::apply`]; with `keep`, the templates of `rows` are not evicted by
    /// this merge.
    fn merge(
        &mut self,
        rows: &[TemplateRow],
        mut embeddings: HashMap<String, Vec<f32>>,
        keep: bool,
    ) -> Result<(), MergeError> {
        let mut rebuild = Vec::new();
        // Keys new to this replica whose embedding the table holds.
        let stored: HashSet<String> = rows
            .iter()
            .filter(|r| embeddings.contains_key(&r.template_key))
            .map(|r| r.template_key.clone())
            .collect();
        for row in rows {
            let id = TemplateId(row.template_key.clone());
            match self.known.get(&id) {
                None => rebuild.push(row),
                Some(k) => {
                    if row.count.max(0) as u64 > k.count
                        || row_windows(row) > k.windows
                        || row_episodes(row) > k.episodes
                        || row_level_episodes(row) > k.level_episodes
                        || merge_text(&k.text, &row.template) != k.text
                    {
                        rebuild.push(row);
                    }
                }
            }
        }
        if !rebuild.is_empty() {
            let keep: HashSet<TemplateId> = if keep {
                rows.iter()
                    .map(|r| TemplateId(r.template_key.clone()))
                    .collect()
            } else {
                HashSet::new()
            };
            self.rebuild(&rebuild, &mut embeddings, &keep)?;
        }
        for row in rows {
            let id = TemplateId(row.template_key.clone());
            // A normal label covers the levels the template had come at when it was given
            // (every level for rows labelled before that was stored).
            let covers = row
                .label_max_level
                .as_deref()
                .map_or(Severity::Critical, Severity::parse);
            let label = row
                .label
                .as_deref()
                .and_then(parse_label)
                .map(|l| (l, covers));
            // Evicted by this very merge (more rows than the cap): nothing to label.
            let Some(known) = self.known.get_mut(&id) else {
                continue;
            };
            if stored.contains(&row.template_key) {
                known.embedding_stored = true;
            }
            if known.label != label {
                known.label = label;
                match label {
                    Some((l, covers)) => self.scorer.set_label_up_to(&id, l, covers),
                    None => self.scorer.clear_label(&id),
                }
            }
        }
        Ok(())
    }

    fn rebuild(
        &mut self,
        rows: &[&TemplateRow],
        embeddings: &mut HashMap<String, Vec<f32>>,
        keep: &HashSet<TemplateId>,
    ) -> Result<(), MergeError> {
        // Templates new to this replica, by last sighting: they count as seen now, in
        // that order, for eviction.
        let mut arrived: Vec<(DateTime<Utc>, TemplateId)> = Vec::new();
        // Rows new to a replica that already held templates: another replica stores them.
        let first_load = self.known.is_empty();
        let mut state = self.scorer.export();
        let mut index: HashMap<TemplateId, usize> = state
            .miner
            .templates
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i))
            .collect();
        for row in rows {
            let id = TemplateId(row.template_key.clone());
            let db_count = row.count.max(0) as u64;
            let (text, count) = match index.get(&id) {
                Some(&i) => {
                    let record = &mut state.miner.templates[i];
                    record.template = merge_text(&record.template, &row.template);
                    record.count = record.count.max(db_count);
                    (record.template.clone(), record.count)
                }
                None => {
                    self.table_has_more |= !first_load;
                    arrived.push((row.last_seen, id.clone()));
                    index.insert(id.clone(), state.miner.templates.len());
                    state.miner.templates.push(TemplateRecord {
                        id: id.clone(),
                        template: row.template.clone(),
                        first_seen: row.template.clone(),
                        count: db_count,
                    });
                    (row.template.clone(), db_count)
                }
            };
            if let Some(v) = embeddings.remove(&row.template_key) {
                state.embeddings.entry(id.clone()).or_insert(v);
            }
            let known = self.known.entry(id).or_default();
            known.text = text;
            known.count = count;
        }
        let lines: u64 = state.miner.templates.iter().map(|r| r.count).sum();
        let first_ms = rows.iter().map(|r| r.first_seen.timestamp_millis()).min();
        for row in rows {
            let id = TemplateId(row.template_key.clone());
            let counts = TemplateCounts {
                count: self.known[&id].count,
                first_seen_ms: row.first_seen.timestamp_millis(),
                tally: PresenceTally {
                    count: row.count.max(0) as u64,
                    last_seen_ms: row.last_seen.timestamp_millis(),
                    windows: row_windows(row),
                    window: row.presence_window.unwrap_or_default(),
                    window_lines: u64::try_from(row.window_lines).unwrap_or(0),
                    max_window_lines: u64::try_from(row.max_window_lines).unwrap_or(0),
                    #[allow(clippy::cast_sign_loss)] // a bit set, stored as bigint
                    window_bits: row.window_bits as u64,
                    episodes: row_episodes(row),
                    level_episodes: row_level_episodes(row),
                    level_last_ms: row.level_last_seen.map_or(0, |t| t.timestamp_millis()),
                    arrivals: pairs(&row.arrivals),
                    level_arrivals: pairs(&row.level_arrivals),
                },
                window_known: row.presence_window.is_some(),
                new_after_warmup: row.new_after_warmup,
                novelty: row.novelty,
                settled: row.born_settled,
            };
            let presence = state.restore_template(&id, counts, &self.config);
            if let Some(k) = self.known.get_mut(&id) {
                k.windows = k.windows.max(presence.windows);
                k.episodes = k.episodes.max(presence.episodes);
                k.level_episodes = k.level_episodes.max(presence.level_episodes);
            }
        }
        state.merge_warmup(lines, first_ms);
        self.scorer = Scorer::from_state(self.config.clone(), self.embedder.clone(), state)?;
        arrived.sort();
        for (_, id) in &arrived {
            self.scorer.touch([id]);
        }
        self.scorer.evict_over_cap(keep);
        self.drop_evicted();
        Ok(())
    }

    /// Scores lines (in time order). Blocks while new templates are embedded.
    pub fn score(&mut self, lines: &[LogLine]) -> Result<ScoredBatch, ScoreError> {
        let embedded_before = self.scorer.texts_embedded();
        let scores = self.scorer.score_batch(lines)?;
        self.drop_evicted();
        // A line whose template needed no model call was served from the embedding cache.
        let misses = self.scorer.texts_embedded().saturating_sub(embedded_before);
        let hits = (lines.len() as u64).saturating_sub(misses);
        metrics::counter!("logcanary_embedding_cache_hits_total").increment(hits);
        metrics::counter!("logcanary_embedding_cache_misses_total").increment(misses);
        #[allow(clippy::cast_precision_loss)] // batch sizes are small
        metrics::histogram!("logcanary_inference_batch_size").record(lines.len() as f64);
        let mut touched: HashMap<TemplateId, TouchedTemplate> = HashMap::new();
        let mut need_embedding = HashSet::new();
        for s in &scores {
            let known = self.known.entry(s.template_id.clone()).or_default();
            known.count += 1;
            known.text = s.template.clone();
            if !known.embedding_stored && known.pending_embedding.is_none() {
                need_embedding.insert(s.template_id.clone());
            }
        }
        if !need_embedding.is_empty() {
            // Only batches with templates new to the table pay for this copy.
            let mut state = self.scorer.export();
            for id in need_embedding {
                if let (Some(v), Some(k)) = (state.embeddings.remove(&id), self.known.get_mut(&id))
                {
                    k.pending_embedding = Some(v);
                }
            }
        }
        for s in &scores {
            if touched.contains_key(&s.template_id) {
                continue;
            }
            let presence = self.scorer.presence(&s.template_id).unwrap_or_default();
            let known = self.known.entry(s.template_id.clone()).or_default();
            known.windows = known.windows.max(presence.windows);
            known.episodes = known.episodes.max(presence.episodes);
            known.level_episodes = known.level_episodes.max(presence.level_episodes);
            touched.insert(
                s.template_id.clone(),
                TouchedTemplate {
                    text: known.text.clone(),
                    embedding: if known.embedding_stored {
                        None
                    } else {
                        known.pending_embedding.clone()
                    },
                    presence,
                    first_sight: self.scorer.first_sight(&s.template_id).unwrap_or_default(),
                    row_seen: known.embedding_stored,
                },
            );
        }
        #[allow(clippy::cast_precision_loss)] // far below 2^52 templates
        metrics::gauge!("logcanary_templates_known").set(self.known.len() as f64);
        metrics::gauge!("logcanary_stream_settled").set(f64::from(self.scorer.stream_settled()));
        Ok(ScoredBatch {
            scores,
            templates: touched,
            births: self.scorer.take_births(),
        })
    }

    /// Records that these templates' rows (with their embeddings) are committed.
    pub fn stored(&mut self, keys: impl IntoIterator<Item = String>) {
        for key in keys {
            if let Some(k) = self.known.get_mut(&TemplateId(key)) {
                k.embedding_stored = true;
                k.pending_embedding = None;
            }
        }
    }
}

/// A row's `windows`, negative values (never written) read as none.
fn row_windows(row: &TemplateRow) -> u32 {
    u32::try_from(row.windows).unwrap_or(0)
}

/// A row's `episodes`, negative values (never written) read as none.
fn row_episodes(row: &TemplateRow) -> u32 {
    u32::try_from(row.episodes).unwrap_or(0)
}

/// A row's `level_episodes`, negative values (never written) read as none.
fn row_level_episodes(row: &TemplateRow) -> u32 {
    u32::try_from(row.level_episodes).unwrap_or(0)
}

fn parse_label(text: &str) -> Option<Label> {
    match text {
        "normal" => Some(Label::Normal),
        "anomaly" => Some(Label::Anomaly),
        _ => None,
    }
}

/// How the miner routes these masked lines (or templates), as probes of the table: token
/// count and, when lines are routed by more than their first token, the second token (a
/// placeholder routes with every placeholder).
pub fn route_probes(miner: &MinerConfig, masked: &[String]) -> Vec<RouteProbe> {
    let by_second = miner.prefix_depth >= 2;
    let mut probes = HashSet::new();
    for m in masked {
        let tokens: Vec<&str> = m.split_whitespace().collect();
        let n = i32::try_from(tokens.len()).unwrap_or(i32::MAX);
        let second = tokens.get(1).copied().unwrap_or("");
        if !by_second {
            probes.insert(RouteProbe {
                tokens: n,
                second: None,
            });
        } else if is_placeholder_token(second) {
            for p in PLACEHOLDERS {
                probes.insert(RouteProbe {
                    tokens: n,
                    second: Some((*p).to_owned()),
                });
            }
        } else {
            probes.insert(RouteProbe {
                tokens: n,
                second: Some(second.to_owned()),
            });
        }
    }
    probes.into_iter().collect()
}

/// The routes new templates of these texts are stored on, as
/// `db::templates::lock_new_templates` takes them: what two templates the miner could
/// merge share (the token count and, when lines are routed by more than their first
/// token, the second, every placeholder alike).
pub fn route_locks(miner: &MinerConfig, texts: &[String]) -> Vec<String> {
    texts
        .iter()
        .map(|text| {
            let tokens: Vec<&str> = text.split_whitespace().collect();
            let second = tokens.get(1).copied().unwrap_or("");
            if miner.prefix_depth < 2 {
                tokens.len().to_string()
            } else if is_placeholder_token(second) {
                format!("{} {WILDCARD}", tokens.len())
            } else {
                format!("{} {second}", tokens.len())
            }
        })
        .collect()
}

/// A miner holding only the templates of `rows`, to judge which one a line joins.
fn scratch_miner(miner: &MinerConfig, rows: &[TemplateRow]) -> Option<TemplateMiner> {
    let state = MinerState {
        version: STATE_VERSION,
        config: miner.clone(),
        templates: rows
            .iter()
            .map(|r| TemplateRecord {
                id: TemplateId(r.template_key.clone()),
                template: r.template.clone(),
                first_seen: r.template.clone(),
                count: r.count.max(0) as u64,
            })
            .collect(),
    };
    TemplateMiner::import(state).ok()
}

/// The stored template among `candidates` that a template this replica mined as `text`,
/// under an id of its own, would have joined had the replica held it: the miner's rule,
/// the text taken as a line. Two replicas that meet a new message at the same time each
/// start a template, keyed by the first line each saw; when those lines differ (in a
/// word that later lines vary in), one worker would have made one template of them.
pub fn stored_twin<'a>(
    miner: &MinerConfig,
    candidates: &'a [TemplateRow],
    text: &str,
) -> Option<&'a TemplateRow> {
    let id = scratch_miner(miner, candidates)?.peek_masked(text)?;
    candidates.iter().find(|r| r.template_key == id.0)
}

/// Two texts of one template, merged: positions where they disagree become wildcards, so
/// replicas that generalised a template differently converge on the more general text.
/// Texts of different lengths cannot be aligned; the local one is kept.
pub fn merge_text(local: &str, other: &str) -> String {
    let a: Vec<&str> = local.split_whitespace().collect();
    let b: Vec<&str> = other.split_whitespace().collect();
    if a.len() != b.len() || a == b {
        return local.to_owned();
    }
    a.iter()
        .zip(&b)
        .map(|(x, y)| if x == y { *x } else { WILDCARD })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A batch's lines counted on a template's stored tally
/// ([`count_stored_presence`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedPresence {
    /// The tally after the lines.
    pub tally: db::templates::StoredPresence,
    /// The indices of the lines on which it was learned as normal.
    pub learned_on: Vec<usize>,
    /// A line logged before the tally's latest counted a presence window it had not seen:
    /// the template's stored lines now fill a gap they had (another worker committed the
    /// later part of the log first).
    pub filled_gap: bool,
}

/// A template's stored presence tally (`before`, none for a template with no line stored)
/// with `lines` counted in: each line's time (milliseconds since the Unix epoch) and
/// whether its level flags a line alone, in time order. The detector's
/// [`PresenceTally::count_line`] counts them, as a single scorer would; a row stored before
/// its latest window was has that window taken as its last line's.
///
/// With `judge` (and the template's first line), also the indices of the lines on which
/// the tally was learned as normal by its rule, as the scorer marks a line
/// ([`Score::newly_learned_normal`](detector::scorer::Score::newly_learned_normal)): the
/// tally became learned on it, or the time windows confirmed what its arrivals had taught.
/// With one worker the tally is the scorer's own and those are the lines its scores mark;
/// with several, a worker whose view was behind the others' does not mark the line that
/// completed the learning, and the tally does.
pub fn count_stored_presence(
    before: Option<db::templates::StoredPresence>,
    lines: &[(i64, bool)],
    window_ms: i64,
    judge: Option<(&LearnedJudge, i64)>,
) -> CountedPresence {
    let window_ms = window_ms.max(1);
    let first_seen = before.as_ref().and_then(|b| b.first_seen);
    let mut tally = before.map_or_else(PresenceTally::default, |b| stored_tally(&b, window_ms));
    let mut learned = Vec::new();
    let mut filled_gap = false;
    for (line, &(at_ms, flags_alone)) in lines.iter().enumerate() {
        let was = judge.map(|(j, first_seen_ms)| j.judge(first_seen_ms, &tally, flags_alone));
        let (late, windows) = (tally.count > 0 && at_ms < tally.last_seen_ms, tally.windows);
        tally.count_line(at_ms, at_ms.div_euclid(window_ms), flags_alone);
        filled_gap |= late && tally.windows > windows;
        let Some((judge, first_seen_ms)) = judge else {
            continue;
        };
        let (was_learned, was_by_windows) = was.unwrap_or_default();
        let (now_learned, by_windows) = judge.judge(first_seen_ms, &tally, flags_alone);
        let windows_confirm = was_learned && !was_by_windows && by_windows;
        if (now_learned && !was_learned) || windows_confirm {
            learned.push(line);
        }
    }
    let at = |ms: i64| DateTime::from_timestamp_millis(ms);
    let flat = |runs: &[(i64, i64)]| runs.iter().flat_map(|&(a, b)| [a, b]).collect();
    let tally = db::templates::StoredPresence {
        lines: i64::try_from(tally.count).unwrap_or(i64::MAX),
        first_seen,
        last_seen: (tally.count > 0).then(|| at(tally.last_seen_ms)).flatten(),
        windows: i32::try_from(tally.windows).unwrap_or(i32::MAX),
        window: (tally.count > 0).then_some(tally.window),
        window_lines: i64::try_from(tally.window_lines).unwrap_or(i64::MAX),
        max_window_lines: i64::try_from(tally.max_window_lines).unwrap_or(i64::MAX),
        episodes: i32::try_from(tally.episodes).unwrap_or(i32::MAX),
        level_episodes: i32::try_from(tally.level_episodes).unwrap_or(i32::MAX),
        level_last_seen: (tally.level_episodes > 0)
            .then(|| at(tally.level_last_ms))
            .flatten(),
        #[allow(clippy::cast_possible_wrap)] // a bit set, stored as bigint
        window_bits: tally.window_bits as i64,
        arrivals: flat(&tally.arrivals),
        level_arrivals: flat(&tally.level_arrivals),
    };
    CountedPresence {
        tally,
        learned_on: learned,
        filled_gap,
    }
}

/// A stored tally as the detector's; a row stored before its latest window was has
/// that window taken as its last line's, and its latest line at a level that flags alone
/// as its last line.
fn stored_tally(b: &db::templates::StoredPresence, window_ms: i64) -> PresenceTally {
    let last_seen_ms = b.last_seen.map_or(0, |t| t.timestamp_millis());
    PresenceTally {
        count: u64::try_from(b.lines).unwrap_or(0),
        last_seen_ms,
        windows: u32::try_from(b.windows).unwrap_or(0),
        window: b.window.unwrap_or_else(|| last_seen_ms.div_euclid(window_ms)),
        window_lines: u64::try_from(b.window_lines).unwrap_or(0),
        max_window_lines: u64::try_from(b.max_window_lines).unwrap_or(0),
        #[allow(clippy::cast_sign_loss)] // a bit set, stored as bigint
        window_bits: b.window_bits as u64,
        episodes: u32::try_from(b.episodes).unwrap_or(0),
        level_episodes: u32::try_from(b.level_episodes).unwrap_or(0),
        level_last_ms: b
            .level_last_seen
            .or((b.level_episodes > 0).then_some(b.last_seen).flatten())
            .map_or(0, |t| t.timestamp_millis()),
        arrivals: pairs(&b.arrivals),
        level_arrivals: pairs(&b.level_arrivals),
    }
}

/// `[a, b, c, d]` as `[(a, b), (c, d)]` (an odd last value is dropped).
fn pairs(flat: &[i64]) -> Vec<(i64, i64)> {
    flat.chunks_exact(2).map(|p| (p[0], p[1])).collect()
}

/// The detector's "learned normal" rule, for a template's stored tally: the worker's write
/// asks it of the tally every replica's lines made, to catch a template another replica's
/// lines taught while this one scored its batch.
#[derive(Debug, Clone)]
pub struct LearnedJudge {
    config: ScorerConfig,
    stream_start_ms: i64,
}

impl LearnedJudge {
    /// Whether a template first seen at `first_seen_ms` with `tally` is learned as normal
    /// for a line at `severity`: steady presence, and for a level that flags a line alone,
    /// its lines at that level arrived steadily too (as the scorer judges a line).
    pub fn learned(
        &self,
        first_seen_ms: i64,
        tally: &db::templates::StoredPresence,
        severity: Severity,
    ) -> bool {
        self.learned_for(first_seen_ms, tally, self.config.flags_alone(severity))
    }

    /// Whether a template first seen at `first_seen_ms` with `tally` shows steady presence
    /// (learned as normal for a line whose level does not flag it alone).
    pub fn steady(&self, first_seen_ms: i64, tally: &db::templates::StoredPresence) -> bool {
        self.learned_for(first_seen_ms, tally, false)
    }

    fn learned_for(
        &self,
        first_seen_ms: i64,
        tally: &db::templates::StoredPresence,
        flags_alone: bool,
    ) -> bool {
        let presence = Presence {
            windows: u32::try_from(tally.windows).unwrap_or(0),
            max_window_lines: u64::try_from(tally.max_window_lines).unwrap_or(0),
            episodes: u32::try_from(tally.episodes).unwrap_or(0),
            level_episodes: u32::try_from(tally.level_episodes).unwrap_or(0),
        };
        let last_seen_ms = tally
            .last_seen
            .map_or(first_seen_ms, |t| t.timestamp_millis());
        let count = u64::try_from(tally.lines).unwrap_or(0);
        let steadiness = self.steadiness(presence, count, first_seen_ms, last_seen_ms);
        self.config.is_learned_normal(&steadiness) && !self.level_unproven(&presence, flags_alone)
    }

    /// The scorer's two questions of a tally, for a line whose level flags it alone or
    /// not: learned as normal (as [`LearnedJudge::learned`]), and learned by the time
    /// windows alone.
    fn judge(&self, first_seen_ms: i64, tally: &PresenceTally, flags_alone: bool) -> (bool, bool) {
        if tally.count == 0 {
            return (false, false);
        }
        let presence = tally.presence();
        let steadiness = self.steadiness(presence, tally.count, first_seen_ms, tally.last_seen_ms);
        (
            self.config.is_learned_normal(&steadiness)
                && !self.level_unproven(&presence, flags_alone),
            self.config.is_learned_by_windows(&steadiness),
        )
    }

    fn steadiness(
        &self,
        presence: Presence,
        count: u64,
        first_seen_ms: i64,
        last_seen_ms: i64,
    ) -> detector::scorer::Steadiness {
        detector::scorer::Steadiness {
            presence,
            count,
            first_seen_ms,
            last_seen_ms,
            stream_start_ms: self.stream_start_ms,
        }
    }

    /// A line whose level flags it alone is covered only once the template's lines at
    /// those levels arrived steadily too.
    fn level_unproven(&self, presence: &Presence, flags_alone: bool) -> bool {
        flags_alone && presence.level_episodes < self.config.normal_after_windows.max(1)
    }
}

/// A line of the `log_entries` table as the detector sees it.
pub fn log_line(
    logged_at: DateTime<Utc>,
    severity: &str,
    message: &str,
    source: Option<&str>,
) -> LogLine {
    LogLine {
        timestamp_ms: logged_at.timestamp_millis(),
        severity: detector::scorer::Severity::parse(severity),
        message: message.to_owned(),
        source: source.map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use detector::scorer::{BagOfWords, DecidedBy, Severity, TemplateState};

    fn config() -> ScorerConfig {
        ScorerConfig {
            warmup_lines: 3,
            ..ScorerConfig::default()
        }
    }

    fn line(t: i64, sev: Severity, msg: &str) -> LogLine {
        LogLine {
            timestamp_ms: t,
            severity: sev,
            message: msg.into(),
            source: None,
        }
    }

    fn row(id: i64, key: &str, text: &str, count: i64, label: Option<&str>) -> TemplateRow {
        let t = DateTime::from_timestamp_millis(1_000).expect("a valid time");
        TemplateRow {
            id,
            template_key: key.into(),
            template: text.into(),
            count,
            first_seen: t,
            last_seen: t,
            label: label.map(str::to_owned),
            labelled_at: None,
            updated_at: t,
            windows: 0,
            max_window_lines: 0,
            episodes: 0,
            level_episodes: 0,
            label_max_level: None,
            presence_window: None,
            window_lines: 0,
            level_last_seen: None,
            new_after_warmup: false,
            novelty: 0.0,
            window_bits: 0,
            arrivals: Vec::new(),
            level_arrivals: Vec::new(),
            born_settled: 0.0,
        }
    }

    const MINUTE: i64 = 60_000;
    /// 2026-01-01T00:00:00Z, on a presence window boundary.
    const T0: i64 = 1_767_225_600_000;

    /// A routine CRITICAL message of one template.
    fn routine_critical(t: i64, job: i64) -> LogLine {
        line(
            t,
            Severity::Critical,
            &format!("program load failure for job {job}: user binary not found"),
        )
    }

    /// The row replica `a` would have stored for `id` after the lines at `times`.
    fn row_of(
        a: &SharedScorer<BagOfWords>,
        id: &TemplateId,
        text: &str,
        times: &[i64],
    ) -> TemplateRow {
        let presence = a.presence(id).expect("a has stats for the template");
        let at = |ms: i64| DateTime::from_timestamp_millis(ms).expect("a valid time");
        TemplateRow {
            first_seen: at(*times.iter().min().expect("lines")),
            last_seen: at(*times.iter().max().expect("lines")),
            windows: i32::try_from(presence.windows).expect("few windows"),
            max_window_lines: i64::try_from(presence.max_window_lines).expect("few lines"),
            episodes: i32::try_from(presence.episodes).expect("few episodes"),
            level_episodes: i32::try_from(presence.level_episodes).expect("few episodes"),
            ..row(1, &id.0, text, times.len() as i64, None)
        }
    }

    #[test]
    fn a_replica_loaded_from_the_table_knows_the_templates_counts_and_labels() {
        // Replica A scores lines and "stores" its templates.
        let mut a = SharedScorer::new(config(), BagOfWords);
        let batch: Vec<LogLine> = (0..5)
            .map(|i| {
                line(
                    i * 1000,
                    Severity::Info,
                    &format!("request {i} served in {i} ms"),
                )
            })
            .collect();
        let out = a.score(&batch).expect("scores");
        assert_eq!(out.templates.len(), 1, "one template for five lines");
        let (id, touched) = out.templates.iter().next().expect("a template");
        assert!(
            touched.embedding.is_some(),
            "a new template carries its embedding"
        );
        let embedding = touched.embedding.clone().expect("embedding");

        // Replica B starts from the table: it must route the same line to the same id
        // without calling the model, count it as known, and apply the label.
        let mut b = SharedScorer::new(config(), BagOfWords);
        let rows = vec![row(1, &id.0, &touched.text, 5, Some("normal"))];
        assert_eq!(b.missing_embeddings(&rows), vec![id.0.clone()]);
        b.apply(&rows, HashMap::from([(id.0.clone(), embedding)]))
            .expect("merges");
        let again = b
            .score(&[line(9000, Severity::Error, "request 9 served in 9 ms")])
            .expect("scores");
        let s = &again.scores[0];
        assert_eq!(&s.template_id, id);
        assert!(s.summary.contains("seen 5 times"), "{}", s.summary);
        assert!(
            s.summary.contains("marked this pattern normal"),
            "{}",
            s.summary
        );
        assert!(!s.warming_up, "the table's lines count towards the warm-up");
        assert!(
            again.templates[id].embedding.is_none(),
            "the table already has the embedding"
        );
    }

    #[test]
    fn a_normal_label_covers_the_levels_the_table_says_it_was_given_for() {
        let mut a = SharedScorer::new(config(), BagOfWords);
        let out = a
            .score(&[line(0, Severity::Info, "request 1 served in 1 ms")])
            .expect("scores");
        let (id, touched) = out.templates.iter().next().expect("a template");
        let embedding = touched.embedding.clone().expect("embedding");
        let critical = line(60_000, Severity::Critical, "request 7 served in 7 ms");

        // Labelled normal when its lines of the day came at INFO at most: a CRITICAL line of
        // it is judged on its own (flagged by its level).
        let mut b = SharedScorer::new(config(), BagOfWords);
        let narrow = TemplateRow {
            label_max_level: Some("INFO".into()),
            ..row(1, &id.0, &touched.text, 1, Some("normal"))
        };
        b.apply(
            std::slice::from_ref(&narrow),
            HashMap::from([(id.0.clone(), embedding.clone())]),
        )
        .expect("merges");
        let s = &b
            .score(std::slice::from_ref(&critical))
            .expect("scores")
            .scores[0];
        assert_eq!(&s.template_id, id);
        assert!(s.is_anomaly, "{s:?}");
        assert!(
            s.summary.contains("when it had come at INFO at most"),
            "{}",
            s.summary
        );

        // The operator labels it again after seeing CRITICAL lines: the label now covers them.
        let wide = TemplateRow {
            label_max_level: Some("CRITICAL".into()),
            ..narrow.clone()
        };
        b.apply(std::slice::from_ref(&wide), HashMap::new())
            .expect("merges");
        let s = &b
            .score(std::slice::from_ref(&critical))
            .expect("scores")
            .scores[0];
        assert!(!s.is_anomaly, "{s:?}");
        assert!(
            s.summary.contains("marked this pattern normal"),
            "{}",
            s.summary
        );

        // A row labelled before the level was stored covers every level.
        let mut c = SharedScorer::new(config(), BagOfWords);
        let old = TemplateRow {
            label_max_level: None,
            ..narrow
        };
        c.apply(&[old], HashMap::from([(id.0.clone(), embedding)]))
            .expect("merges");
        let s = &c.score(&[critical]).expect("scores").scores[0];
        assert!(!s.is_anomaly, "{s:?}");
    }

    #[test]
    fn counts_from_other_replicas_and_more_general_text_are_merged() {
        let mut a = SharedScorer::new(config(), BagOfWords);
        let out = a
            .score(&[line(
                0,
                Severity::Info,
                "session opened for user alice from web by sshd",
            )])
            .expect("scores");
        let id = out.scores[0].template_id.clone();
        a.stored([id.0.clone()]);
        let rows = vec![row(
            1,
            &id.0,
            "session opened for user <*> from <*> by sshd",
            40,
            None,
        )];
        assert!(a.missing_embeddings(&rows).is_empty());
        a.apply(&rows, HashMap::new()).expect("merges");
        let s = a
            .score(&[line(
                1000,
                Severity::Info,
                "session opened for user bob from app by sshd",
            )])
            .expect("scores");
        assert_eq!(s.scores[0].template_id, id);
        assert!(
            s.scores[0].summary.contains("seen 40 times"),
            "{}",
            s.scores[0].summary
        );
        assert_eq!(
            s.templates[&id].text,
            "session opened for user <*> from <*> by sshd"
        );
    }

    #[test]
    fn a_fresh_replica_knows_what_another_learned_normal_from_the_table() {
        // Replica A sees one CRITICAL routine template every 20 minutes: 4 windows over an
        // hour, so it learns the template as normal.
        let mut a = SharedScorer::new(config(), BagOfWords);
        let times: Vec<i64> = (0..4).map(|i| T0 + i * 20 * MINUTE).collect();
        let lines: Vec<LogLine> = times
            .iter()
            .zip(1..)
            .map(|(&t, job)| routine_critical(t, job))
            .collect();
        let out = a.score(&lines).expect("scores");
        assert_eq!(out.templates.len(), 1, "one template: {:?}", out.templates);
        let last = out.scores.last().expect("4 scores");
        assert_eq!(last.state, TemplateState::LearnedNormal, "{last:?}");
        assert!(!last.is_anomaly, "{last:?}");
        let (id, touched) = out.templates.iter().next().expect("a template");
        assert_eq!(
            touched.presence,
            Presence {
                windows: 4,
                max_window_lines: 1,
                episodes: 4,
                level_episodes: 4
            },
            "the batch reports the template's presence"
        );
        assert_eq!(a.presence(id), Some(touched.presence));
        let embedding = touched
            .embedding
            .clone()
            .expect("a new template's embedding");
        let stored = row_of(&a, id, &touched.text, &times);

        // Replica B starts from the table only: the next line, 20 minutes later, is
        // learned normal without B having seen the history.
        let next = routine_critical(T0 + 80 * MINUTE, 9);
        let mut b = SharedScorer::new(config(), BagOfWords);
        b.apply(
            std::slice::from_ref(&stored),
            HashMap::from([(id.0.clone(), embedding.clone())]),
        )
        .expect("merges");
        let scored = b.score(std::slice::from_ref(&next)).expect("scores");
        let s = &scored.scores[0];
        assert_eq!(&s.template_id, id);
        assert!(!s.warming_up, "{s:?}");
        assert_eq!(s.state, TemplateState::LearnedNormal, "{s:?}");
        assert_eq!(s.decided_by, DecidedBy::LearnedNormal, "{s:?}");
        assert!(!s.is_anomaly, "{s:?}");
        assert_eq!(
            scored.templates[id].presence,
            Presence {
                windows: 5,
                max_window_lines: 1,
                episodes: 5,
                level_episodes: 5
            }
        );

        // Without the shared presence (a row as stored before it was), the same line is
        // flagged: B would have to learn the template again.
        let mut c = SharedScorer::new(config(), BagOfWords);
        let bare = TemplateRow {
            windows: 0,
            max_window_lines: 0,
            episodes: 0,
            level_episodes: 0,
            ..stored
        };
        c.apply(&[bare], HashMap::from([(id.0.clone(), embedding)]))
            .expect("merges");
        let s = &c.score(&[next]).expect("scores").scores[0];
        assert_eq!(s.state, TemplateState::Unknown, "{s:?}");
        assert!(s.is_anomaly, "{s:?}");
    }

    #[test]
    fn presence_from_the_table_grows_and_its_last_window_is_not_counted_twice() {
        let mut a = SharedScorer::new(config(), BagOfWords);
        let times: Vec<i64> = (0..4).map(|i| T0 + i * 20 * MINUTE).collect();
        let lines: Vec<LogLine> = times
            .iter()
            .zip(1..)
            .map(|(&t, job)| routine_critical(t, job))
            .collect();
        let out = a.score(&lines).expect("scores");
        let (id, touched) = out.templates.iter().next().expect("a template");
        let embedding = touched.embedding.clone().expect("embedding");
        let stored = TemplateRow {
            max_window_lines: 3,
            ..row_of(&a, id, &touched.text, &times)
        };

        let mut b = SharedScorer::new(config(), BagOfWords);
        b.apply(
            std::slice::from_ref(&stored),
            HashMap::from([(id.0.clone(), embedding)]),
        )
        .expect("merges");
        assert_eq!(
            b.presence(id),
            Some(Presence {
                windows: 4,
                max_window_lines: 3,
                episodes: 4,
                level_episodes: 4
            })
        );
        // Five minutes after the last stored line: the same window, not a new one (but a
        // new arrival).
        let out = b
            .score(&[routine_critical(T0 + 65 * MINUTE, 9)])
            .expect("scores");
        assert_eq!(
            out.templates[id].presence,
            Presence {
                windows: 4,
                max_window_lines: 3,
                episodes: 5,
                level_episodes: 5
            }
        );

        // The table counted more lines (another replica's among them): its tally is
        // taken as it is, every replica's lines counted as one stream.
        let more = TemplateRow {
            count: 7,
            windows: 7,
            max_window_lines: 2,
            episodes: 6,
            level_episodes: 6,
            ..stored.clone()
        };
        b.apply(&[more], HashMap::new()).expect("merges");
        assert_eq!(
            b.presence(id),
            Some(Presence {
                windows: 7,
                max_window_lines: 2,
                episodes: 6,
                level_episodes: 6
            }),
            "the table's tally, which counted more lines"
        );
        // A table behind this replica (lines scored here, not written yet): the larger
        // view, field by field.
        let mut c = SharedScorer::new(config(), BagOfWords);
        c.apply(
            std::slice::from_ref(&stored),
            HashMap::from([(id.0.clone(), touched.embedding.clone().expect("embedding"))]),
        )
        .expect("merges");
        c.score(&[routine_critical(T0 + 65 * MINUTE, 9)])
            .expect("scores");
        let behind = TemplateRow {
            count: 4,
            windows: 6,
            max_window_lines: 1,
            episodes: 2,
            level_episodes: 2,
            ..stored
        };
        c.apply(&[behind], HashMap::new()).expect("merges");
        assert_eq!(
            c.presence(id),
            Some(Presence {
                windows: 6,
                max_window_lines: 3,
                episodes: 5,
                level_episodes: 5
            }),
            "the larger view wins, field by field"
        );
    }

    #[test]
    fn texts_merge_position_by_position() {
        assert_eq!(merge_text("a b c", "a x c"), "a <*> c");
        assert_eq!(merge_text("a <*> c", "a b c"), "a <*> c");
        assert_eq!(merge_text("a b", "a b c"), "a b");
    }

    #[test]
    fn the_tally_is_learned_on_the_lines_the_scorer_marks() {
        // One template's lines in time order, CRITICAL and INFO: 10 arrivals in the first
        // 20 minutes, most in the second window, then a line every 10 minutes. The scorer
        // learns it from its arrivals and marks it again when the windows confirm; the
        // tally counted from no row gives the same lines, so that with one worker the
        // write finds nothing the scorer did not mark.
        let mut a = SharedScorer::new(
            ScorerConfig {
                warmup_lines: 0,
                ..ScorerConfig::default()
            },
            BagOfWords,
        );
        let minutes = [
            0.0, 2.0, 4.0, 6.0, 10.0, 11.5, 13.0, 14.5, 16.0, 17.5, 30.0, 32.0,
        ]
        .into_iter()
        .chain((4..14).map(|w| f64::from(w) * 10.0));
        let lines: Vec<LogLine> = minutes
            .enumerate()
            .map(|(i, m)| {
                let sev = if i % 4 == 3 {
                    Severity::Info
                } else {
                    Severity::Critical
                };
                line(T0 + (m * 60_000.0) as i64, sev, "fan tray 2 speed adjusted")
            })
            .collect();
        let out = a.score(&lines).expect("scores");
        let marked: Vec<usize> = out
            .scores
            .iter()
            .enumerate()
            .filter(|(_, s)| s.newly_learned_normal)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(marked.len(), 2, "learned, then confirmed: {marked:?}");
        let judge = a.learned_judge();
        let config = ScorerConfig::default();
        let counted: Vec<(i64, bool)> = lines
            .iter()
            .map(|l| (l.timestamp_ms, config.flags_alone(l.severity)))
            .collect();
        let CountedPresence {
            tally,
            learned_on: learned,
            ..
        } = count_stored_presence(
            None,
            &counted,
            config.presence_window_ms,
            Some((&judge, T0)),
        );
        assert_eq!(learned, marked);
        assert_eq!(tally.lines, lines.len() as i64);
        let none = count_stored_presence(None, &counted, config.presence_window_ms, None);
        assert!(none.learned_on.is_empty(), "no judge, no learning lines");
        assert!(!none.filled_gap, "in time order no line is late");
    }

    #[test]
    fn a_new_template_is_the_twin_of_the_stored_one_the_miner_would_have_joined() {
        let miner = MinerConfig::default();
        let stored = vec![
            row(
                1,
                "ta",
                "Storage volume alpha went read-only after repeated write errors",
                1,
                None,
            ),
            row(
                2,
                "tb",
                "Storage volume <*> was mounted read-write by the operator",
                4,
                None,
            ),
        ];
        let twin = stored_twin(
            &miner,
            &stored,
            "Storage volume gamma went read-only after repeated write errors",
        );
        assert_eq!(twin.map(|r| r.id), Some(1), "one word differs: one pattern");
        assert!(
            stored_twin(
                &miner,
                &stored,
                "Storage volume gamma reported a failed disk in slot"
            )
            .is_none(),
            "same route, another message: a template of its own"
        );
        assert!(
            stored_twin(&miner, &stored, "Storage volume gamma went read-only").is_none(),
            "another length routes elsewhere"
        );
        let locks = route_locks(
            &miner,
            &[
                "Storage volume gamma went read-only after repeated write errors".into(),
                "Storage <NUM> gamma went read-only after repeated write errors".into(),
                "Storage <*> gamma went read-only after repeated write errors".into(),
            ],
        );
        assert_eq!(
            locks,
            ["9 volume", "9 <*>", "9 <*>"],
            "placeholders route alike"
        );
    }
}
