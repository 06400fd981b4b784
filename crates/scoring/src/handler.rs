//! Scoring deliveries (`analyze_log_entry`, `batch_analyze_logs`), end to end; both
//! scoring workers run their entries through [`ScoringHandler`].
//!
//! A micro-batch goes through three steps, and the model never runs inside a database
//! transaction:
//!
//! 1. a short read: the tasks' states (finished tasks are redeliveries: acked, not
//!    scored) and the entries that still need a score;
//! 2. scoring with the detector on the blocking pool, after pulling the templates and
//!    labels other replicas stored since the last pull (at most every refresh interval),
//!    every replica's count of which sources mark their trouble by level and of which of
//!    the stream's latest lines started a template (how settled it is);
//! 3. one transaction that re-checks each task (`STARTED` unless it finished meanwhile),
//!    locks the entries still unscored, puts the lines of a template new to the table in
//!    the row of the same pattern when another replica stored it first under another id
//!    (and this replica takes that row after the commit), adds their templates to the
//!    shared counts (each template's presence counted on under its row's lock, line by
//!    line), writes
//!    the scores, runs the re-scores learning calls for, queues critical alerts and marks
//!    the tasks SUCCESS. The written lines' level counts, and which of the scored lines
//!    started a template, are added to every replica's right after, in statements of
//!    their own. Only entries written
//!    here are counted, so a redelivery or a race between replicas counts nothing twice.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use contracts::{tasks, v1};
use db::{
    models::{status, EntryScore, LogEntry, NewTask},
    tasks::StartDecision,
    templates::TemplateDelta,
    DbError,
};
use detector::scorer::{BirthChunk, LogLine, Score, Severity};
use diesel::Connection;
use mq::{Delivery, Outcome};
use serde_json::json;
use uuid::Uuid;

use crate::shared::{log_line, SharedEmbedder, SharedScorer, TouchedTemplate};

/// How far back each pull of changed templates reaches before the previous one, so rows
/// stamped by transactions that were still committing are not missed.
const REFRESH_OVERLAP: Duration = Duration::from_secs(30);

/// Most stored templates one batch's unmatched lines are compared with when looking for
/// evicted templates (the most recently seen first).
const ROUTE_CANDIDATES: i64 = 5_000;

/// The scorer of this replica, shared by all in-flight batches.
pub type SharedDetector = Arc<Mutex<SharedScorer<SharedEmbedder>>>;

/// Scores entry tasks with this replica's copy of the shared templates; shared by all
/// in-flight batches.
pub struct ScoringHandler {
    pub db: db::Db,
    /// Where critical-anomaly alert tasks go once their rows are committed.
    pub outbox: outbox::Outbox,
    pub detector: SharedDetector,
    /// Longest time between two pulls of the shared templates.
    pub refresh_every: Duration,
    pub refresh: Mutex<RefreshState>,
    /// What a template's stored entries become when this replica learns it as normal.
    pub relearn: db::templates::RelearnRule,
}

/// The detector's [`relearn`](detector::scorer::relearn) rule for the stored entries.
pub fn relearn_rule(config: &detector::scorer::ScorerConfig) -> db::templates::RelearnRule {
    use detector::scorer::relearn;
    db::templates::RelearnRule {
        max_entries: i64::try_from(relearn::RESCORE_MAX_LINES).unwrap_or(i64::MAX),
        presence_window_ms: config.presence_window_ms,
        levels: relearn::levels_flagged_alone(config)
            .into_iter()
            .map(|s| s.as_str().to_owned())
            .collect(),
        level_min_episodes: i64::from(config.normal_after_windows),
        episode_gap: Duration::from_millis(relearn::EPISODE_GAP_MS.unsigned_abs()),
        burst_rate_factor: relearn::BURST_RATE_FACTOR,
        burst_min_lines: i64::try_from(relearn::BURST_MIN_LINES).unwrap_or(i64::MAX),
        continuous_coverage: relearn::CONTINUOUS_COVERAGE,
    }
}

/// Where the last pull of shared templates stopped, and the level counts of written lines
/// not yet added to `source_levels`.
#[derive(Debug, Default)]
pub struct RefreshState {
    since: Option<DateTime<Utc>>,
    last: Option<Instant>,
    unflushed_levels: Vec<db::source_levels::SourceLevels>,
    births: BirthsSync,
}

/// This replica's part of the stream's count of which latest lines started a template
/// (`stream_births`). A pull takes the row as the scorer's count only when another replica
/// added lines since the last time: alone, a replica keeps its own count, in the order it
/// scored its lines (batches in flight may be added in another order).
#[derive(Debug, Default)]
struct BirthsSync {
    /// Lines scored here, in order, not yet added.
    unflushed: Vec<BirthChunk>,
    /// How many of the stream's latest lines the row keeps (the scorer's `settled_lines`).
    horizon: usize,
    /// The row's lines when this replica last took it as its count (none: take it at the
    /// next pull).
    base: Option<i64>,
    /// Lines this replica added, or is adding, since.
    added: i64,
    /// Lines of adds not returned yet.
    in_flight: i64,
}

/// What a batch's write transaction returns.
#[derive(Default)]
struct Written {
    /// The jobs' outcomes.
    results: Vec<JobResult>,
    /// Keys of templates whose embedding is now stored.
    stored: Vec<String>,
    /// The level counts of the lines written.
    levels: Vec<db::source_levels::SourceLevels>,
    /// Templates this replica mined under ids of its own whose lines went to the row of
    /// the same pattern another replica stored first: (own key, the row's key).
    twins: Vec<(String, String)>,
}

/// Why a batch could not be analysed.
#[derive(Debug, thiserror::Error)]
pub enum AnalyseError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("scoring failed: {0}")]
    Score(String),
    #[error("merging the shared templates failed: {0}")]
    Merge(String),
    /// The shared templates could not be read (database down, schema not migrated).
    #[error("loading the shared templates failed: {0}")]
    Sync(DbError),
}

impl mq::Classify for AnalyseError {
    /// Database errors say for themselves; the model and the merge are retried (a stuck
    /// inference thread or a bad row should not lose the message at once).
    fn is_retryable(&self) -> bool {
        match self {
            AnalyseError::Db(e) => e.is_transient(),
            // A replica that cannot sync must not score alone, nor drop the message.
            AnalyseError::Score(_) | AnalyseError::Merge(_) | AnalyseError::Sync(_) => true,
        }
    }
}

/// A task of this batch that needs scoring.
struct Job {
    index: usize,
    task_id: Uuid,
    task_name: &'static str,
    entry_ids: Vec<i64>,
}

type JobResult = (usize, Outcome, Vec<v1::SendCriticalAnomalyAlert>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while scoring leaves a scorer that is still usable: at worst a count is off.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ScoringHandler {
    fn decode(delivery: &Delivery) -> Result<(Uuid, &'static str, Vec<i64>), mq::DeliveryError> {
        let id = delivery.task_uuid()?;
        match delivery.task_name.as_str() {
            tasks::ANALYZE_LOG_ENTRY => {
                let m = delivery.decode::<v1::AnalyzeLogEntry>()?;
                Ok((id, tasks::ANALYZE_LOG_ENTRY, vec![m.log_entry_id]))
            }
            tasks::BATCH_ANALYZE_LOGS => {
                let m = delivery.decode::<v1::BatchAnalyzeLogs>()?;
                Ok((id, tasks::BATCH_ANALYZE_LOGS, m.log_entry_ids))
            }
            other => Err(contracts::ContractError::UnknownTask(other.to_owned()).into()),
        }
    }

    async fn publish_alerts(&self, alerts: Vec<v1::SendCriticalAnomalyAlert>) {
        if alerts.is_empty() {
            return;
        }
        let started = Instant::now();
        // The alert tasks are already committed; if publishing fails the relay sends them.
        let _ = self.outbox.publish(&alerts).await;
        stage("publish", started);
    }

    /// Pulls the templates and labels stored since the last pull into the scorer, unless
    /// the last pull is more recent than the refresh interval (`force` pulls anyway). The
    /// first pull loads the whole table.
    pub async fn refresh_templates(&self, force: bool) -> Result<(), AnalyseError> {
        let since = {
            let state = lock(&self.refresh);
            let fresh = state.last.is_some_and(|t| t.elapsed() < self.refresh_every);
            if fresh && !force {
                return Ok(());
            }
            state.since
        };
        let (rows, read_at) = self
            .db
            .run(move |c| db::templates::changed_since(c, since))
            .await
            .map_err(AnalyseError::Sync)?;
        if !rows.is_empty() {
            let detector = self.detector.clone();
            let (rows, missing) = tokio::task::spawn_blocking(move || {
                let mut d = lock(&detector);
                let rows = d.loadable(rows);
                let missing = d.missing_embeddings(&rows);
                (rows, missing)
            })
            .await
            .map_err(|_| AnalyseError::Merge("the merge task panicked".into()))?;
            let embeddings = self.stored_embeddings(missing).await?;
            let detector = self.detector.clone();
            let templates = tokio::task::spawn_blocking(move || {
                let mut d = lock(&detector);
                d.apply(&rows, embeddings).map(|()| d.templates())
            })
            .await
            .map_err(|_| AnalyseError::Merge("the merge task panicked".into()))?
            .map_err(|e| AnalyseError::Merge(e.to_string()))?;
            metrics::gauge!("logcanary_templates_known").set(templates as f64);
        }
        // Which sources mark their trouble by level, and how settled the stream is, by
        // every replica's lines (this replica's own written lines first, should an
        // earlier add have failed), in one round trip.
        self.flush_levels().await.map_err(AnalyseError::Sync)?;
        self.flush_births().await.map_err(AnalyseError::Sync)?;
        let limit = i64::try_from(detector::scorer::MAX_LEVEL_SOURCES).unwrap_or(i64::MAX);
        let (levels, births) = self
            .db
            .run(move |c| {
                Ok((
                    db::source_levels::load(c, limit)?,
                    db::stream_births::load(c)?,
                ))
            })
            .await
            .map_err(AnalyseError::Sync)?;
        let (pending, others_added) = {
            let sync = &mut lock(&self.refresh).births;
            let others_added = sync.base.is_none_or(|b| births.lines > b + sync.added);
            if others_added {
                sync.base = Some(births.lines);
                // Adds still in flight come on top of what was read.
                sync.added = sync.in_flight;
            }
            (sync.unflushed.clone(), others_added)
        };
        let detector = self.detector.clone();
        tokio::task::spawn_blocking(move || {
            let mut d = lock(&detector);
            d.set_level_use(&levels);
            if others_added {
                d.rebase_births(&births, &pending);
            }
        })
        .await
        .map_err(|_| AnalyseError::Merge("the merge task panicked".into()))?;
        let mut state = lock(&self.refresh);
        let next = read_at - REFRESH_OVERLAP;
        state.since = Some(state.since.map_or(next, |s| s.max(next)));
        state.last = Some(Instant::now());
        Ok(())
    }

    /// Adds the level counts of the lines this replica wrote to `source_levels`, in one
    /// statement of its own after the batch's write committed: the whole stream's row is
    /// every worker's, and a write transaction that updated it would hold every other
    /// worker's write until it committed. Counts not added stay for the next try.
    async fn flush_levels(&self) -> Result<(), DbError> {
        let unflushed = std::mem::take(&mut lock(&self.refresh).unflushed_levels);
        if unflushed.is_empty() {
            return Ok(());
        }
        let counts = merge_level_counts(unflushed.clone());
        let added = self
            .db
            .run(move |c| db::source_levels::add(c, &counts))
            .await;
        if added.is_err() {
            lock(&self.refresh).unflushed_levels.extend(unflushed);
        }
        added
    }

    /// Adds the lines this replica scored to the stream's count of which latest lines
    /// started a template (`stream_births`), in order, each chunk in a statement of its
    /// own after the batch's write committed. Chunks not added stay for the next try.
    async fn flush_births(&self) -> Result<(), DbError> {
        let (unflushed, horizon) = {
            let sync = &mut lock(&self.refresh).births;
            (
                std::mem::take(&mut sync.unflushed),
                i64::try_from(sync.horizon).unwrap_or(i64::MAX),
            )
        };
        let mut left = unflushed.into_iter();
        while let Some(chunk) = left.next() {
            let lines = i64::try_from(chunk.lines).unwrap_or(i64::MAX);
            let births: Vec<i64> = chunk
                .births
                .iter()
                .map(|&b| i64::try_from(b).unwrap_or(i64::MAX))
                .collect();
            {
                let sync = &mut lock(&self.refresh).births;
                sync.added += lines;
                sync.in_flight += lines;
            }
            let added = self
                .db
                .run(move |c| db::stream_births::add(c, lines, &births, horizon))
                .await;
            let sync = &mut lock(&self.refresh).births;
            sync.in_flight -= lines;
            if let Err(e) = added {
                sync.added -= lines;
                // Unknown whether it committed: the next pull takes the row as it is.
                sync.base = None;
                let newer = std::mem::take(&mut sync.unflushed);
                sync.unflushed = std::iter::once(chunk).chain(left).chain(newer).collect();
                return Err(e);
            }
        }
        Ok(())
    }

    /// The stored embeddings of the templates `keys`, for rows read without theirs.
    async fn stored_embeddings(
        &self,
        keys: Vec<String>,
    ) -> Result<HashMap<String, Vec<f32>>, AnalyseError> {
        Ok(self
            .db
            .run(move |c| db::templates::embeddings(c, &keys))
            .await
            .map_err(AnalyseError::Sync)?
            .into_iter()
            .collect())
    }

    /// Brings from the table the stored templates that lines of this batch belong to
    /// and this replica does not hold: evicted here (see `shared`'s module docs), or
    /// stored by another replica since the last pull. So those lines keep the template's
    /// row and id, and are scored as lines of a known pattern, with its presence and
    /// label, as one worker would score them. No query while every line is of a held
    /// template.
    async fn restore_from_table(&self, lines: &[LogLine]) -> Result<(), AnalyseError> {
        let detector = self.detector.clone();
        let lines = lines.to_vec();
        let (masked, probes) = tokio::task::spawn_blocking(move || {
            let d = lock(&detector);
            let masked = d.unmatched(&lines);
            let probes = d.route_probes(&masked);
            (masked, probes)
        })
        .await
        .map_err(|_| AnalyseError::Merge("the restore task panicked".into()))?;
        if probes.is_empty() {
            return Ok(());
        }
        let candidates = self
            .db
            .run(move |c| db::templates::route_candidates(c, &probes, ROUTE_CANDIDATES))
            .await
            .map_err(AnalyseError::Sync)?;
        if candidates.is_empty() {
            return Ok(());
        }
        let detector = self.detector.clone();
        let (rows, missing) = tokio::task::spawn_blocking(move || {
            let d = lock(&detector);
            let rows = d.matching(&candidates, &masked);
            let missing = d.missing_embeddings(&rows);
            (rows, missing)
        })
        .await
        .map_err(|_| AnalyseError::Merge("the restore task panicked".into()))?;
        if rows.is_empty() {
            return Ok(());
        }
        let embeddings = self.stored_embeddings(missing).await?;
        let detector = self.detector.clone();
        tokio::task::spawn_blocking(move || lock(&detector).restore(&rows, embeddings))
            .await
            .map_err(|_| AnalyseError::Merge("the restore task panicked".into()))?
            .map_err(|e| AnalyseError::Merge(e.to_string()))
    }

    /// Replaces this replica's templates that another replica had stored first under
    /// other ids (the write put their lines in those rows) with those rows, so the next
    /// lines of the pattern join them without waiting for a pull.
    async fn adopt_twins(&self, twins: Vec<(String, String)>) -> Result<(), AnalyseError> {
        let (own, keys): (Vec<String>, Vec<String>) = twins.into_iter().unzip();
        let rows = self
            .db
            .run(move |c| db::templates::by_keys(c, &keys))
            .await
            .map_err(AnalyseError::Sync)?;
        let detector = self.detector.clone();
        let missing = {
            let rows = rows.clone();
            tokio::task::spawn_blocking(move || lock(&detector).missing_embeddings(&rows))
                .await
                .map_err(|_| AnalyseError::Merge("the adopt task panicked".into()))?
        };
        let embeddings = self.stored_embeddings(missing).await?;
        let detector = self.detector.clone();
        tokio::task::spawn_blocking(move || lock(&detector).adopt(&own, &rows, embeddings))
            .await
            .map_err(|_| AnalyseError::Merge("the adopt task panicked".into()))?
            .map_err(|e| AnalyseError::Merge(e.to_string()))
    }

    /// Readiness: the shared templates have been loaded at least once.
    pub fn templates_loaded(&self) -> Result<(), String> {
        if lock(&self.refresh).last.is_some() {
            Ok(())
        } else {
            Err("shared templates not loaded yet".into())
        }
    }

    /// Analyses the decoded jobs of one batch; see the module docs for the steps.
    async fn analyse(&self, jobs: Vec<Job>) -> Result<Vec<JobResult>, AnalyseError> {
        let task_ids: Vec<Uuid> = jobs.iter().map(|j| j.task_id).collect();
        let mut all_ids: Vec<i64> = jobs
            .iter()
            .flat_map(|j| j.entry_ids.iter().copied())
            .collect();
        all_ids.sort_unstable();
        all_ids.dedup();
        let fetch = Instant::now();
        let (statuses, entries) = self
            .db
            .run(move |c| {
                Ok((
                    db::tasks::statuses(c, &task_ids)?,
                    db::entries::by_ids(c, &all_ids)?,
                ))
            })
            .await?;
        stage("fetch", fetch);
        let statuses: HashMap<Uuid, String> = statuses.into_iter().collect();

        let mut results = Vec::with_capacity(jobs.len());
        let mut runnable = Vec::new();
        for job in jobs {
            match statuses.get(&job.task_id).map(String::as_str) {
                Some(state @ (status::SUCCESS | status::FAILURE)) => {
                    tracing::info!(task_id = %job.task_id, state, "Redelivered task already finished; acknowledging.");
                    results.push((job.index, Outcome::Done, Vec::new()));
                }
                None => results.push((
                    job.index,
                    Outcome::from_error(&mq::DeliveryError::NoRecord(job.task_id)),
                    Vec::new(),
                )),
                Some(_) => runnable.push(job),
            }
        }
        if runnable.is_empty() {
            return Ok(results);
        }

        let wanted: HashSet<i64> = runnable
            .iter()
            .flat_map(|j| j.entry_ids.iter().copied())
            .collect();
        let mut to_score: Vec<LogEntry> = entries
            .into_iter()
            .filter(|e| e.analyzed_at.is_none() && wanted.contains(&e.id))
            .collect();
        // The detector expects lines in time order.
        to_score.sort_by_key(|e| (e.logged_at, e.id));

        let sync = Instant::now();
        self.refresh_templates(false).await?;
        stage("sync", sync);
        let mut scored: HashMap<i64, (LogEntry, Score)> = HashMap::new();
        let mut templates: HashMap<String, TouchedTemplate> = HashMap::new();
        // The detector's "learned normal" rule as of this batch (none: nothing scored).
        let mut learned = None;
        let mut miner_config = None;
        let mut births = None;
        if !to_score.is_empty() {
            let lines: Vec<_> = to_score
                .iter()
                .map(|e| log_line(e.logged_at, &e.severity, &e.message, e.source.as_deref()))
                .collect();
            self.restore_from_table(&lines).await?;
            let detector = self.detector.clone();
            let started = Instant::now();
            let (batch, judge, miner, horizon) = tokio::task::spawn_blocking(move || {
                let mut d = lock(&detector);
                (
                    d.score(&lines),
                    d.learned_judge(),
                    d.miner_config(),
                    d.settled_lines(),
                )
            })
            .await
            .map_err(|_| AnalyseError::Score("the scoring task panicked".into()))?;
            let batch = batch.map_err(|e| AnalyseError::Score(e.to_string()))?;
            learned = Some(judge);
            miner_config = Some(miner);
            metrics::histogram!("logcanary_scoring_seconds")
                .record(started.elapsed().as_secs_f64());
            stage("score", started);
            births = Some((batch.births, horizon));
            templates = batch
                .templates
                .into_iter()
                .map(|(id, t)| (id.0, t))
                .collect();
            scored = to_score
                .into_iter()
                .zip(batch.scores)
                .map(|(e, s)| (e.id, (e, s)))
                .collect();
        }

        let write_started = Instant::now();
        let rules = WriteRules {
            relearn: self.relearn.clone(),
            learned,
            miner: miner_config,
        };
        let Written {
            results: written,
            stored: stored_keys,
            levels,
            twins,
        } = self
            .db
            .run(move |c| c.transaction(|c| write(c, runnable, &scored, &templates, &rules)))
            .await?;
        stage("write", write_started);
        if !twins.is_empty() {
            if let Err(e) = self.adopt_twins(twins).await {
                tracing::warn!(error = %e, "Could not take the rows another replica stored first for this batch's new templates; they are pulled with the next refresh.");
            }
        }
        lock(&self.refresh).unflushed_levels.extend(levels);
        if let Err(e) = self.flush_levels().await {
            tracing::warn!(error = %e, "Could not add the batch's lines to the sources' level counts; retrying with the next batch.");
        }
        if let Some((chunk, horizon)) = births {
            {
                let sync = &mut lock(&self.refresh).births;
                sync.unflushed.push(chunk);
                sync.horizon = horizon;
            }
            if let Err(e) = self.flush_births().await {
                tracing::warn!(error = %e, "Could not add the batch's lines to the stream's count of new templates; retrying with the next batch.");
            }
        }
        if !stored_keys.is_empty() {
            let detector = self.detector.clone();
            // Off the runtime: a batch being scored may hold the lock for a while.
            let _ = tokio::task::spawn_blocking(move || lock(&detector).stored(stored_keys)).await;
        }
        results.extend(written);
        Ok(results)
    }
}

impl ScoringHandler {
    /// Scores a micro-batch of entry-task deliveries; one outcome per delivery, in order.
    /// A delivery of another task is failed (no consumer of this version can run it).
    pub async fn score_deliveries(&self, batch: &[&Delivery]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = (0..batch.len()).map(|_| None).collect();
        let mut jobs = Vec::new();
        for (index, delivery) in batch.iter().enumerate() {
            match Self::decode(delivery) {
                Ok((task_id, task_name, entry_ids)) => jobs.push(Job {
                    index,
                    task_id,
                    task_name,
                    entry_ids,
                }),
                Err(error) => outcomes[index] = Some(Outcome::from_error(&error)),
            }
        }
        if !jobs.is_empty() {
            match self.analyse(jobs).await {
                Ok(done) => {
                    let mut alerts = Vec::new();
                    for (index, outcome, job_alerts) in done {
                        outcomes[index] = Some(outcome);
                        alerts.extend(job_alerts);
                    }
                    self.publish_alerts(alerts).await;
                }
                Err(error) => {
                    let reason = error.to_string();
                    let retry = mq::Classify::is_retryable(&error);
                    tracing::warn!(error = %reason, retry, "Analysis batch failed.");
                    for (index, delivery) in batch.iter().enumerate() {
                        if outcomes[index].is_none() {
                            if retry {
                                if let Ok(id) = Uuid::parse_str(&delivery.task_id) {
                                    let r = reason.clone();
                                    let _ = self
                                        .db
                                        .run(move |c| db::tasks::mark_retry(c, id, &r))
                                        .await;
                                }
                                outcomes[index] = Some(Outcome::Retry(reason.clone()));
                            } else {
                                outcomes[index] = Some(Outcome::Fail(reason.clone()));
                            }
                        }
                    }
                }
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::Fail("no outcome recorded".into())))
            .collect()
    }
}

#[async_trait::async_trait]
impl mq::Handler for ScoringHandler {
    async fn handle(&self, batch: &[Delivery]) -> Vec<Outcome> {
        let batch: Vec<&Delivery> = batch.iter().collect();
        self.score_deliveries(&batch).await
    }

    async fn dead_lettered(&self, delivery: &Delivery, error: &str) {
        let Ok(id) = Uuid::parse_str(&delivery.task_id) else {
            return;
        };
        let error = error.to_owned();
        if let Err(e) = self
            .db
            .run(move |c| db::tasks::mark_failed(c, id, &error))
            .await
        {
            tracing::error!(task_id = %id, error = %e, "Could not mark the dead-lettered task FAILURE.");
        }
        metrics::counter!("logcanary_tasks_total", "task" => delivery.task_name.clone(), "outcome" => "failure").increment(1);
    }
}
/// Time of one stage of a scoring batch (`fetch`, `sync`, `score` with `embed` inside it,
/// `write`, `publish`), for the worker-drain benchmark and dashboards.
fn stage(name: &'static str, started: Instant) {
    metrics::histogram!("logcanary_scoring_stage_seconds", "stage" => name)
        .record(started.elapsed().as_secs_f64());
}

/// An operator's label on the entry's template that this replica had not pulled when it
/// scored the entry (it pulls every `LOGCANARY_TEMPLATE_REFRESH_MS`): the entry takes the
/// label's verdict at the levels the label covers, as the answer's re-score gave the
/// template's earlier entries, with the same note. A label the scorer knew already agrees.
fn follow_label(score: &mut EntryScore, severity: &str, label: &str, covers: Option<&str>) {
    let verdict = label == "anomaly";
    if score.is_anomaly != verdict && db::templates::label_covers(label, covers, severity) {
        score.is_anomaly = verdict;
        score.summary = format!("{}; {}", score.summary, db::templates::rescore_note(label));
        metrics::counter!("logcanary_label_applied_at_write_total").increment(1);
    }
}

/// The template as its learning line `entry` left it (`at`, its lifetime then), for the
/// re-score its learning runs: what the batch added after that line (`end`: its lifetime
/// after the batch's last line of it) is taken off the row's counts.
fn learned_at(
    entry: &LogEntry,
    at: detector::scorer::relearn::Lifetime,
    end: detector::scorer::relearn::Lifetime,
) -> db::templates::LearnedAt {
    db::templates::LearnedAt {
        lines_after: i64::try_from(end.lines.saturating_sub(at.lines)).unwrap_or(0),
        windows_after: i64::from(end.windows.saturating_sub(at.windows)),
        first_window: at.first_window,
        last_window: at.last_window,
        at: entry.logged_at,
    }
}

/// A template as learned on its latest line (`last_seen`), nothing after it: what the
/// re-scores that follow learning other workers' lines taught judge by.
fn learned_on_latest(
    first_seen_ms: i64,
    last_seen: DateTime<Utc>,
    window_ms: i64,
) -> db::templates::LearnedAt {
    let window = |ms: i64| ms.div_euclid(window_ms.max(1));
    db::templates::LearnedAt {
        lines_after: 0,
        windows_after: 0,
        first_window: window(first_seen_ms),
        last_window: window(last_seen.timestamp_millis()),
        at: last_seen,
    }
}

/// What the write counted of a batch's templates, for the re-scores that follow learning.
struct Learning<'a> {
    /// Each template's row.
    row_ids: &'a HashMap<String, i64>,
    /// Each template's tally after the batch, with its first line.
    counted: &'a HashMap<String, (i64, db::templates::StoredPresence)>,
    /// Templates whose stored lines had a gap in time (presence windows another worker's
    /// later lines skipped) that the batch's lines filled.
    gaps_filled: &'a HashSet<String>,
    /// The entries on which a template's tally (every replica's lines) was learned as
    /// normal.
    tally_learned: &'a [i64],
}

/// The re-scores that learning runs in a batch's write transaction, after its scores are
/// written: as of each learning line of the batch, then for the entries from later in the
/// log that other workers stored first, then for templates the other workers' lines taught
/// while this worker scored on a view behind theirs. A learning line is one the scorer
/// marked, or one on which the template's stored tally was learned when this worker's view
/// was behind it and the scorer did not mark it (with one worker the two are the same).
fn rescore_learning(
    conn: &mut diesel::PgConnection,
    writable: &[i64],
    scored: &HashMap<i64, (LogEntry, Score)>,
    learning: &Learning<'_>,
    rules: &WriteRules,
) -> Result<(), DbError> {
    let Learning {
        row_ids, counted, ..
    } = *learning;
    let relearn = &rules.relearn;
    let window_ms = relearn.presence_window_ms;
    // Templates this batch learned as normal: their earlier flags that the level alone
    // (or being new, for a continuous stream) gave are re-scored
    // (detector::scorer::relearn), in this transaction, in line order, each as its
    // template was on the line that learned it (not at the batch's end).
    // Each template's lifetime after the batch's last line of it (entries in line order).
    let mut at_end: HashMap<&str, detector::scorer::relearn::Lifetime> = HashMap::new();
    for id in writable {
        let score = &scored[id].1;
        at_end.insert(score.template_id.0.as_str(), score.lifetime);
    }
    let learned: Vec<(i64, db::templates::LearnedAt)> = writable
        .iter()
        .filter(|id| scored[*id].1.newly_learned_normal)
        .filter_map(|id| {
            let (entry, score) = &scored[id];
            let template = row_ids.get(&score.template_id.0).copied()?;
            let end = at_end.get(score.template_id.0.as_str()).copied()?;
            Some((template, learned_at(entry, score.lifetime, end)))
        })
        .collect();
    // Each template's first learning line in this batch.
    let mut first_learned: BTreeMap<i64, DateTime<Utc>> = BTreeMap::new();
    for (template, at) in learned {
        first_learned.entry(template).or_insert(at.at);
        let rescored = db::templates::rescore_learned_normal(conn, template, relearn, &at)?;
        if rescored > 0 {
            tracing::info!(template_id = template, rescored, "Template learned as normal; its recent entries flagged before it was known were re-scored.");
            metrics::counter!("logcanary_relearn_rescored_total").increment(rescored as u64);
        }
    }
    // Entries from later in the log that other workers stored first, judged on views that
    // had not learned the template: they follow the learning as of its latest line.
    if !first_learned.is_empty() {
        let keys: HashMap<i64, &str> = row_ids.iter().map(|(k, id)| (*id, k.as_str())).collect();
        for (template, after) in first_learned {
            let Some((first_seen_ms, tally)) = keys.get(&template).and_then(|k| counted.get(*k))
            else {
                continue;
            };
            let Some(last_seen) = tally.last_seen.filter(|l| *l > after) else {
                continue;
            };
            let at = learned_on_latest(*first_seen_ms, last_seen, window_ms);
            let rescored = db::templates::rescore_learned_later(
                conn, template, relearn, &at, after, writable,
            )?;
            if rescored > 0 {
                tracing::info!(template_id = template, rescored, "Template learned as normal; entries from later in the log that other workers stored first were re-scored.");
                metrics::counter!("logcanary_relearn_in_flight_total").increment(1);
                metrics::counter!("logcanary_relearn_rescored_total").increment(rescored as u64);
            }
        }
    }
    // Learning that this worker's scorer did not see, because its view was behind the
    // other replicas' lines: (1) the template's tally (every replica's lines) was learned
    // on one of this batch's lines the scorer did not mark; (2) it is learned and the
    // scorer judged the batch's latest line of it unknown and flagged it; (3) it shows
    // steady presence and the batch's lines filled a gap in time its stored lines had
    // (another worker committed the later part of the log first, and the re-scores run
    // then judged continuity and bursts without these lines). The re-score that learning
    // runs is run here: as of each line on which the template's stored lines, read in the
    // order they were logged, were learned (what one worker reading the whole stream in
    // time order would have re-scored), and as of the tally now, for the lines logged
    // after them that were scored on views behind the learning. With one worker reading
    // in time order none of the three happens.
    let learned_here: HashSet<&str> = writable
        .iter()
        .filter(|id| scored[*id].1.newly_learned_normal)
        .map(|id| scored[id].1.template_id.0.as_str())
        .collect();
    let mut behind: BTreeSet<&str> = learning
        .tally_learned
        .iter()
        .filter_map(|id| scored.get(id))
        .filter(|(_, score)| !score.newly_learned_normal)
        .map(|(_, score)| score.template_id.0.as_str())
        .filter(|key| !learned_here.contains(key))
        .collect();
    let mut latest: BTreeMap<&str, (&LogEntry, &Score)> = BTreeMap::new();
    for id in writable {
        let (entry, score) = &scored[id];
        let key = score.template_id.0.as_str();
        let later = latest
            .get(key)
            .is_none_or(|(e, _)| (e.logged_at, e.id) < (entry.logged_at, entry.id));
        if later {
            latest.insert(key, (entry, score));
        }
    }
    for (key, (entry, score)) in latest {
        let flagged_unknown = score.is_anomaly
            && score.state == detector::scorer::TemplateState::Unknown
            && !learned_here.contains(key);
        let learned = counted.get(key).is_some_and(|(first_seen_ms, tally)| {
            rules.learned.as_ref().is_some_and(|judge| {
                judge.learned(*first_seen_ms, tally, Severity::parse(&entry.severity))
            })
        });
        if flagged_unknown && learned {
            behind.insert(key);
        }
    }
    for key in learning.gaps_filled {
        let steady = counted.get(key).is_some_and(|(first_seen_ms, tally)| {
            rules
                .learned
                .as_ref()
                .is_some_and(|judge| judge.steady(*first_seen_ms, tally))
        });
        if steady {
            behind.insert(key.as_str());
        }
    }
    for key in behind {
        let (Some(&template), Some((first_seen_ms, tally))) = (row_ids.get(key), counted.get(key))
        else {
            continue;
        };
        metrics::counter!("logcanary_relearn_in_flight_total").increment(1);
        let mut rescored = 0;
        let learned_at = learned_in_log_order(conn, template, *first_seen_ms, tally, rules)?;
        for &at in &learned_at {
            let at = learned_on_latest(*first_seen_ms, at, window_ms);
            rescored += db::templates::rescore_learned_normal(conn, template, relearn, &at)?;
        }
        // The lines after the first learning line (all of them when the stored lines do
        // not say where it was), as of the latest line.
        let last_seen = tally.last_seen.unwrap_or_else(Utc::now);
        let at = learned_on_latest(*first_seen_ms, last_seen, window_ms);
        rescored += match learned_at.first() {
            Some(&first) => {
                db::templates::rescore_learned_later(conn, template, relearn, &at, first, &[])?
            }
            None => db::templates::rescore_learned_normal(conn, template, relearn, &at)?,
        };
        if rescored > 0 {
            tracing::info!(template_id = template, rescored, "Template learned as normal from other replicas' lines while this batch was scored; its flagged entries were re-scored.");
            metrics::counter!("logcanary_relearn_rescored_total").increment(rescored as u64);
        }
    }
    Ok(())
}

/// The times of the lines on which template `template` (first seen at `first_seen_ms`,
/// its tally `tally`) was learned as normal, reading its stored lines in the order they
/// were logged, as one scorer reading them in time order would have marked them (the
/// learning, and the time windows confirming what its arrivals taught). None when its
/// stored lines are not all of its lines (more than a re-score reads).
fn learned_in_log_order(
    conn: &mut diesel::PgConnection,
    template: i64,
    first_seen_ms: i64,
    tally: &db::templates::StoredPresence,
    rules: &WriteRules,
) -> Result<Vec<DateTime<Utc>>, DbError> {
    let Some(judge) = rules.learned.as_ref() else {
        return Ok(Vec::new());
    };
    let relearn = &rules.relearn;
    let stored = db::templates::stored_lines(conn, template, relearn.max_entries)?;
    if i64::try_from(stored.len()).unwrap_or(i64::MAX) != tally.lines {
        return Ok(Vec::new());
    }
    let lines: Vec<(i64, bool)> = stored
        .iter()
        .map(|(at, severity)| {
            let level = Severity::parse(severity);
            let flags_alone = relearn.levels.iter().any(|l| l == level.as_str());
            (at.timestamp_millis(), flags_alone)
        })
        .collect();
    let judge = Some((judge, first_seen_ms));
    let window_ms = relearn.presence_window_ms;
    let counted = crate::shared::count_stored_presence(None, &lines, window_ms, judge);
    Ok(counted
        .learned_on
        .into_iter()
        .map(|line| stored[line].0)
        .collect())
}

/// Level counts of several batches, one per source.
fn merge_level_counts(
    counts: Vec<db::source_levels::SourceLevels>,
) -> Vec<db::source_levels::SourceLevels> {
    let mut merged: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for c in counts {
        let m = merged.entry(c.source).or_default();
        m.0 += c.lines;
        m.1 += c.trouble;
    }
    merged
        .into_iter()
        .map(
            |(source, (lines, trouble))| db::source_levels::SourceLevels {
                source,
                lines,
                trouble,
            },
        )
        .collect()
}

/// The lines of `entries` and those at WARNING or above, for the whole stream and per
/// source, as the detector's `levels` counts them.
fn level_counts<'a>(
    entries: impl Iterator<Item = &'a LogEntry>,
) -> Vec<db::source_levels::SourceLevels> {
    let mut counts: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for entry in entries {
        let trouble = i64::from(detector::scorer::marks_trouble(Severity::parse(
            &entry.severity,
        )));
        let source = entry.source.as_deref().filter(|s| !s.is_empty());
        let sources = std::iter::once(db::source_levels::STREAM).chain(source);
        for source in sources {
            let c = counts.entry(source).or_default();
            c.0 += 1;
            c.1 += trouble;
        }
    }
    counts
        .into_iter()
        .map(
            |(source, (lines, trouble))| db::source_levels::SourceLevels {
                source: source.to_owned(),
                lines,
                trouble,
            },
        )
        .collect()
}

/// True for an anomaly the notifier must hear about at once.
fn is_critical(severity: &str, score: &EntryScore) -> bool {
    score.is_anomaly && matches!(severity, "ERROR" | "CRITICAL")
}

/// What the writing transaction re-scores by: the stored entries' learning rule, and the
/// detector's "learned normal" for a template's stored tally.
struct WriteRules {
    relearn: db::templates::RelearnRule,
    /// Taken with the batch's scores (none when nothing was scored).
    learned: Option<crate::shared::LearnedJudge>,
    /// How the scoring replica mines lines (none when nothing was scored).
    miner: Option<detector::drain::MinerConfig>,
}

/// The rows other replicas stored first for templates this replica mined under ids of
/// its own, by own key: the templates new to the table (not yet seen as rows here) that a
/// stored template would have taken ([`crate::shared::stored_twin`]). Storing a new
/// template waits for other workers storing one of the same route
/// ([`db::templates::lock_new_templates`]), so of two that meet one new message at once,
/// the second finds the first's row.
fn stored_twins(
    conn: &mut diesel::PgConnection,
    templates: &HashMap<String, TouchedTemplate>,
    rules: &WriteRules,
) -> Result<HashMap<String, db::templates::TemplateRow>, DbError> {
    let Some(miner) = rules.miner.as_ref() else {
        return Ok(HashMap::new());
    };
    let unseen: Vec<(&String, &TouchedTemplate)> =
        templates.iter().filter(|(_, t)| !t.row_seen).collect();
    if unseen.is_empty() {
        return Ok(HashMap::new());
    }
    // Most are stored already (another replica met the same first line, or this one wrote
    // the row since it last scored the template): only the others wait for the lock.
    let new = not_stored(conn, unseen)?;
    if new.is_empty() {
        return Ok(HashMap::new());
    }
    let texts: Vec<String> = new.iter().map(|(_, t)| t.text.clone()).collect();
    db::templates::lock_new_templates(conn, &crate::shared::route_locks(miner, &texts))?;
    // Another worker may have stored one of them while this one waited.
    let new = not_stored(conn, new)?;
    if new.is_empty() {
        return Ok(HashMap::new());
    }
    let texts: Vec<String> = new.iter().map(|(_, t)| t.text.clone()).collect();
    let probes = crate::shared::route_probes(miner, &texts);
    let candidates = db::templates::route_candidates(conn, &probes, ROUTE_CANDIDATES)?;
    let mut twins = HashMap::new();
    for (key, t) in new {
        if let Some(row) = crate::shared::stored_twin(miner, &candidates, &t.text) {
            tracing::info!(own = %key, stored = %row.template_key, template = %row.template, "A new template of this batch is a pattern another replica stored first; its lines go to that row.");
            metrics::counter!("logcanary_templates_twinned_total").increment(1);
            twins.insert(key.clone(), row.clone());
        }
    }
    Ok(twins)
}

/// Those of `templates` whose key has no row.
fn not_stored<'a>(
    conn: &mut diesel::PgConnection,
    templates: Vec<(&'a String, &'a TouchedTemplate)>,
) -> Result<Vec<(&'a String, &'a TouchedTemplate)>, DbError> {
    let keys: Vec<String> = templates.iter().map(|(k, _)| (*k).clone()).collect();
    let stored = db::templates::existing_keys(conn, &keys)?;
    Ok(templates
        .into_iter()
        .filter(|(k, _)| !stored.contains(*k))
        .collect())
}

/// The batch's scores and templates with each of `twins`' own keys replaced by its row's
/// key (the row's text generalised with the own one).
fn to_twins(
    scored: &HashMap<i64, (LogEntry, Score)>,
    templates: &HashMap<String, TouchedTemplate>,
    twins: &HashMap<String, db::templates::TemplateRow>,
) -> (
    HashMap<i64, (LogEntry, Score)>,
    HashMap<String, TouchedTemplate>,
) {
    let scored = scored
        .iter()
        .map(|(id, (entry, score))| {
            let mut score = score.clone();
            if let Some(row) = twins.get(&score.template_id.0) {
                score.template_id = detector::drain::TemplateId(row.template_key.clone());
            }
            (*id, (entry.clone(), score))
        })
        .collect();
    let mut out: HashMap<String, TouchedTemplate> = templates
        .iter()
        .filter(|(key, _)| !twins.contains_key(*key))
        .map(|(key, t)| (key.clone(), t.clone()))
        .collect();
    for (key, row) in twins {
        let own = &templates[key];
        let twin = out
            .entry(row.template_key.clone())
            .or_insert_with(|| TouchedTemplate {
                text: row.template.clone(),
                embedding: None,
                row_seen: true,
                ..own.clone()
            });
        twin.text = crate::shared::merge_text(&twin.text, &own.text);
    }
    (scored, out)
}

/// The writing transaction of a batch (step 3 of the module docs). Returns the jobs'
/// outcomes and the keys of templates whose embedding is now stored.
fn write(
    conn: &mut diesel::PgConnection,
    mut jobs: Vec<Job>,
    scored: &HashMap<i64, (LogEntry, Score)>,
    templates: &HashMap<String, TouchedTemplate>,
    rules: &WriteRules,
) -> Result<Written, DbError> {
    let relearn = &rules.relearn;
    let mut results = Vec::with_capacity(jobs.len());
    // One lock order on task rows for every worker.
    jobs.sort_by_key(|j| j.task_id);
    let mut started = Vec::new();
    let task_ids: Vec<Uuid> = jobs.iter().map(|j| j.task_id).collect();
    let decisions = db::tasks::start_many(conn, &task_ids)?;
    for (job, (_, decision)) in jobs.into_iter().zip(decisions) {
        match decision {
            StartDecision::Run(_) => started.push(job),
            StartDecision::AlreadyFinished(state) => {
                tracing::info!(task_id = %job.task_id, state, "Task finished while this batch was scored; acknowledging.");
                results.push((job.index, Outcome::Done, Vec::new()));
            }
            StartDecision::Unknown => results.push((
                job.index,
                Outcome::from_error(&mq::DeliveryError::NoRecord(job.task_id)),
                Vec::new(),
            )),
        }
    }
    if started.is_empty() {
        return Ok(Written {
            results,
            ..Written::default()
        });
    }
    let mut ids: Vec<i64> = started
        .iter()
        .flat_map(|j| j.entry_ids.iter().copied())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let locked = db::entries::lock_unanalysed(conn, &ids)?;
    let unscored: HashSet<i64> = locked
        .iter()
        .copied()
        .filter(|id| !scored.contains_key(id))
        .collect();
    let writable: Vec<i64> = locked
        .into_iter()
        .filter(|id| scored.contains_key(id))
        .collect();

    // A template this replica mined under an id of its own, while another replica stored
    // the same pattern first under another: its lines go to that row.
    let twins = stored_twins(conn, templates, rules)?;
    let rekeyed;
    let (scored, templates) = if twins.is_empty() {
        (scored, templates)
    } else {
        rekeyed = to_twins(scored, templates, &twins);
        (&rekeyed.0, &rekeyed.1)
    };

    // Count each written entry once in its template; BTreeMap: rows upserted in key order.
    let mut deltas: BTreeMap<&str, TemplateDelta> = BTreeMap::new();
    // Each template's written lines, in time order: what its stored presence counts on.
    let mut lines_of: HashMap<&str, Vec<(i64, i64, bool)>> = HashMap::new();
    for id in &writable {
        let (entry, score) = &scored[id];
        let key = score.template_id.0.as_str();
        let delta = deltas.entry(key).or_insert_with(|| {
            let touched = templates.get(key);
            let first_sight = touched.map(|t| t.first_sight).unwrap_or_default();
            TemplateDelta {
                key: key.to_owned(),
                template: touched.map_or_else(|| score.template.clone(), |t| t.text.clone()),
                count: 0,
                first_seen: entry.logged_at,
                last_seen: entry.logged_at,
                embedding: touched.and_then(|t| t.embedding.clone()),
                new_after_warmup: first_sight.new_after_warmup,
                novelty: first_sight.novelty,
                born_settled: first_sight.settled,
            }
        });
        delta.count += 1;
        delta.first_seen = delta.first_seen.min(entry.logged_at);
        delta.last_seen = delta.last_seen.max(entry.logged_at);
        let flags_alone = relearn
            .levels
            .iter()
            .any(|l| l == Severity::parse(&entry.severity).as_str());
        lines_of.entry(key).or_default().push((
            entry.logged_at.timestamp_millis(),
            *id,
            flags_alone,
        ));
    }
    for lines in lines_of.values_mut() {
        lines.sort_unstable();
    }
    let deltas: Vec<TemplateDelta> = deltas.into_values().collect();
    let window_ms = relearn.presence_window_ms;
    // Each template's tally after this batch, and its first line.
    let mut counted: HashMap<String, (i64, db::templates::StoredPresence)> = HashMap::new();
    // The entries on which a template's tally (every replica's lines) was learned as normal.
    let mut tally_learned: Vec<i64> = Vec::new();
    // Templates whose stored lines had a gap in time this batch's lines filled.
    let mut gaps_filled: HashSet<String> = HashSet::new();
    let row_ids: HashMap<String, i64> = db::templates::upsert(conn, &deltas, |delta, before| {
        let batch_lines: &[(i64, i64, bool)] =
            lines_of.get(delta.key.as_str()).map_or(&[], Vec::as_slice);
        let lines: Vec<(i64, bool)> = batch_lines
            .iter()
            .map(|&(at_ms, _, flags)| (at_ms, flags))
            .collect();
        let first_seen = before
            .as_ref()
            .and_then(|b| b.first_seen)
            .map_or(delta.first_seen, |f| f.min(delta.first_seen))
            .timestamp_millis();
        let judge = rules.learned.as_ref().map(|j| (j, first_seen));
        let crate::shared::CountedPresence {
            tally,
            learned_on,
            filled_gap,
        } = crate::shared::count_stored_presence(before, &lines, window_ms, judge);
        tally_learned.extend(learned_on.into_iter().map(|line| batch_lines[line].1));
        if filled_gap {
            gaps_filled.insert(delta.key.clone());
        }
        counted.insert(delta.key.clone(), (first_seen, tally.clone()));
        tally
    })?
    .into_iter()
    .collect();
    // The rows are locked now: their labels stay as read until this transaction commits.
    let touched: Vec<i64> = row_ids.values().copied().collect();
    let labels: HashMap<i64, (String, Option<String>)> = db::templates::labels_of(conn, &touched)?
        .into_iter()
        .map(|(id, label, covers)| (id, (label, covers)))
        .collect();
    let new_scores: HashMap<i64, EntryScore> = writable
        .iter()
        .map(|id| {
            let (entry, s) = &scored[id];
            let template_id = row_ids.get(&s.template_id.0).copied();
            let mut score = EntryScore {
                id: *id,
                anomaly_score: (f64::from(s.score) * 1000.0).round() / 1000.0,
                is_anomaly: s.is_anomaly,
                summary: s.summary.clone(),
                template_id,
                prior_score: Some((s.prior * 1000.0).round() / 1000.0),
            };
            if let Some((label, covers)) = template_id.and_then(|t| labels.get(&t)) {
                follow_label(&mut score, &entry.severity, label, covers.as_deref());
            }
            (*id, score)
        })
        .collect();
    let mut to_write: Vec<EntryScore> = new_scores.values().cloned().collect();
    to_write.sort_by_key(|s| s.id);
    db::entries::write_scores(conn, &to_write)?;
    let learning = Learning {
        row_ids: &row_ids,
        counted: &counted,
        gaps_filled: &gaps_filled,
        tally_learned: &tally_learned,
    };
    rescore_learning(conn, &writable, scored, &learning, rules)?;
    // Entries scored before this batch (by another task or replica) keep their score.
    let earlier: Vec<i64> = ids
        .iter()
        .copied()
        .filter(|id| !new_scores.contains_key(id))
        .collect();
    let earlier: HashMap<i64, LogEntry> = db::entries::by_ids(conn, &earlier)?
        .into_iter()
        .filter(|e| e.analyzed_at.is_some())
        .map(|e| (e.id, e))
        .collect();

    let mut alerted = HashSet::new();
    let mut new_alert_tasks = Vec::new();
    let mut successes = Vec::new();
    for job in started {
        if job.entry_ids.iter().any(|id| unscored.contains(id)) {
            // Not seen by the first read (cannot happen with entries stored before their
            // task is published); score them on the next attempt.
            results.push((
                job.index,
                Outcome::Retry("entries of this task appeared after scoring; retrying".into()),
                Vec::new(),
            ));
            continue;
        }
        let mut job_scores = Vec::new();
        let mut missing = Vec::new();
        let mut alerts = Vec::new();
        let mut alert_tasks = Vec::new();
        for id in &job.entry_ids {
            if let Some(score) = new_scores.get(id) {
                job_scores.push(score.clone());
                let severity = &scored[id].0.severity;
                if is_critical(severity, score) && alerted.insert(*id) {
                    let alert_id = Uuid::new_v4();
                    alert_tasks.push(NewTask {
                        id: alert_id,
                        task_name: tasks::SEND_CRITICAL_ANOMALY_ALERT.into(),
                        queue: contracts::queues::NOTIFICATIONS.into(),
                        args: json!({"log_entry_id": id, "anomaly_score": score.anomaly_score, "summary": score.summary}),
                    });
                    alerts.push(v1::SendCriticalAnomalyAlert {
                        task_id: alert_id.to_string(),
                        log_entry_id: *id,
                        anomaly_score: score.anomaly_score,
                        summary: score.summary.clone(),
                    });
                }
            } else if let Some(e) = earlier.get(id) {
                job_scores.push(EntryScore {
                    id: e.id,
                    anomaly_score: e.anomaly_score.unwrap_or_default(),
                    is_anomaly: e.is_anomaly.unwrap_or_default(),
                    summary: e.summary.clone().unwrap_or_default(),
                    template_id: e.template_id,
                    prior_score: None,
                });
            } else {
                missing.push(*id);
            }
        }
        if job.task_name == tasks::ANALYZE_LOG_ENTRY && job_scores.is_empty() {
            results.push((
                job.index,
                Outcome::Fail(format!(
                    "log entry {} does not exist",
                    job.entry_ids.first().copied().unwrap_or_default()
                )),
                Vec::new(),
            ));
            continue;
        }
        let anomalies = job_scores.iter().filter(|s| s.is_anomaly).count();
        let result = if job.task_name == tasks::ANALYZE_LOG_ENTRY {
            let s = &job_scores[0];
            json!({"log_entry_id": s.id, "anomaly_score": s.anomaly_score, "is_anomaly": s.is_anomaly,
                   "summary": s.summary, "template_id": s.template_id, "alerts_queued": alerts.len()})
        } else {
            json!({"processed": job_scores.len(), "anomalies": anomalies, "missing_log_entry_ids": missing,
                   "alerts_queued": alerts.len()})
        };
        new_alert_tasks.extend(alert_tasks);
        successes.push((job.task_id, result));
        metrics::counter!("logcanary_tasks_total", "task" => job.task_name, "outcome" => status::SUCCESS).increment(1);
        metrics::counter!("logcanary_entries_scored_total").increment(job_scores.len() as u64);
        metrics::counter!("logcanary_anomalies_flagged_total").increment(anomalies as u64);
        results.push((job.index, Outcome::Done, alerts));
    }
    if !new_alert_tasks.is_empty() {
        db::tasks::insert(conn, &new_alert_tasks)?;
    }
    db::tasks::mark_success_many(conn, &successes)?;
    let stored = deltas
        .into_iter()
        .filter(|d| d.embedding.is_some())
        .map(|d| d.key)
        .collect();
    let levels = level_counts(writable.iter().map(|id| &scored[id].0));
    Ok(Written {
        results,
        stored,
        levels,
        twins: twins
            .into_iter()
            .map(|(own, row)| (own, row.template_key))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    /// Learning a template normal and an operator's answer reach as many of its entries,
    /// as the eval assumes (`detector::replay`).
    #[test]
    fn learning_and_answers_re_score_as_many_entries() {
        let rule = super::relearn_rule(&detector::scorer::ScorerConfig::default());
        assert_eq!(rule.max_entries, db::templates::RESCORE_MAX_ENTRIES);
    }
}
