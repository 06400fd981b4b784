//! `logs.tasks.detect_anomaly_patterns`: the four pattern detectors of
//! [`detector::patterns`] over the requested window, every detection stored in
//! `pattern_detections`, and a `logs.tasks.send_pattern_alert` queued for each new one.
//!
//! The window ends when the task was created (not when a worker gets to it), so a retried
//! or late task analyses the window that was asked for, and a re-run finds the same
//! detections: the table's unique key (kind, source, window) drops the repeats, and only
//! detections this run inserted get an alert. Detections, their alert tasks and the task's
//! SUCCESS are one transaction (the outbox); the alert messages are published after it.
//!
//! Statistics come from counts aggregated in Postgres (the window and a baseline period
//! before it); entries are loaded one by one only to name them in detections: all of them
//! for a window of at most `LOGCANARY_PATTERN_MAX_ROWS` entries, otherwise the anomalies
//! and ERROR/CRITICAL ones.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use contracts::{tasks, v1, TaskMessage};
use db::{
    models::{status, NewTask},
    patterns::{CountRow, NewPatternDetection},
    tasks::StartDecision,
    DbError,
};
use detector::{
    patterns::{analyse_counted, Analysis, BucketCount, Detection, Event, PatternConfig},
    scorer::Severity,
};
use diesel::Connection;
use mq::{Delivery, Outcome};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::handler::AnalysisHandler;

/// Default window when a message carries none (the old system's default).
const DEFAULT_HOURS: u32 = 24;
/// Most detections listed in a task result (all are in the table).
const RESULT_DETECTIONS: usize = 100;

/// Thresholds of pattern analysis; flags that are also environment variables, shared by
/// the analysis worker (periodic analysis) and the real-time worker (sliding windows).
#[derive(clap::Args, Clone, Debug)]
pub struct PatternSettings {
    /// Anomalies inside the cluster window that make an anomaly cluster.
    #[arg(long = "pattern-cluster-min", env = "LOGCANARY_PATTERN_CLUSTER_MIN", value_name = "LOGCANARY_PATTERN_CLUSTER_MIN", default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=100_000))]
    pub cluster_min: u32,
    /// Span of an anomaly cluster, in seconds.
    #[arg(long = "pattern-cluster-window-secs", env = "LOGCANARY_PATTERN_CLUSTER_WINDOW_SECS", value_name = "LOGCANARY_PATTERN_CLUSTER_WINDOW_SECS", default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub cluster_window_secs: u32,
    /// Counting bucket of error spikes and low activity, in seconds.
    #[arg(long = "pattern-bucket-secs", env = "LOGCANARY_PATTERN_BUCKET_SECS", value_name = "LOGCANARY_PATTERN_BUCKET_SECS", default_value_t = 600, value_parser = clap::value_parser!(u32).range(10..=86_400))]
    pub bucket_secs: u32,
    /// Robust deviations (scaled MAD) above a source's median error count that make a spike.
    #[arg(long = "pattern-spike-k", env = "LOGCANARY_PATTERN_SPIKE_K", value_name = "LOGCANARY_PATTERN_SPIKE_K", default_value_t = 5.0, value_parser = parse_positive)]
    pub spike_k: f64,
    /// Fewest ERROR/CRITICAL entries in a bucket that can be a spike.
    #[arg(
        long = "pattern-spike-min",
        env = "LOGCANARY_PATTERN_SPIKE_MIN",
        value_name = "LOGCANARY_PATTERN_SPIKE_MIN",
        default_value_t = 5
    )]
    pub spike_min: u64,
    /// A bucket with at most this share of a source's usual count is low activity.
    #[arg(long = "pattern-low-ratio", env = "LOGCANARY_PATTERN_LOW_RATIO", value_name = "LOGCANARY_PATTERN_LOW_RATIO", default_value_t = 0.2, value_parser = parse_ratio)]
    pub low_ratio: f64,
    /// Usual entries per bucket below which a source is too quiet to call low.
    #[arg(long = "pattern-low-min-expected", env = "LOGCANARY_PATTERN_LOW_MIN_EXPECTED", value_name = "LOGCANARY_PATTERN_LOW_MIN_EXPECTED", default_value_t = 5.0, value_parser = parse_positive)]
    pub low_min_expected: f64,
    /// Fewest entries in the window and in the baseline to compare severity mixes.
    #[arg(
        long = "pattern-severity-min-samples",
        env = "LOGCANARY_PATTERN_SEVERITY_MIN_SAMPLES",
        value_name = "LOGCANARY_PATTERN_SEVERITY_MIN_SAMPLES",
        default_value_t = 30
    )]
    pub severity_min_samples: u64,
    /// Chi-square p-value below which a severity mix differs from its baseline.
    #[arg(long = "pattern-severity-p-value", env = "LOGCANARY_PATTERN_SEVERITY_P_VALUE", value_name = "LOGCANARY_PATTERN_SEVERITY_P_VALUE", default_value_t = 0.001, value_parser = parse_ratio)]
    pub severity_p_value: f64,
    /// Jensen-Shannon distance (0..1) a severity mix must move by as well.
    #[arg(long = "pattern-severity-min-distance", env = "LOGCANARY_PATTERN_SEVERITY_MIN_DISTANCE", value_name = "LOGCANARY_PATTERN_SEVERITY_MIN_DISTANCE", default_value_t = 0.1, value_parser = parse_ratio)]
    pub severity_min_distance: f64,
    /// Hours before the window whose counts are the baseline.
    #[arg(long = "pattern-baseline-hours", env = "LOGCANARY_PATTERN_BASELINE_HOURS", value_name = "LOGCANARY_PATTERN_BASELINE_HOURS", default_value_t = 168, value_parser = clap::value_parser!(u32).range(0..=8760))]
    pub baseline_hours: u32,
    /// Windows with at most this many entries are loaded entry by entry (every detection
    /// then names its entries); larger ones load only anomalies and errors.
    #[arg(long = "pattern-max-rows", env = "LOGCANARY_PATTERN_MAX_ROWS", value_name = "LOGCANARY_PATTERN_MAX_ROWS", default_value_t = 200_000, value_parser = clap::value_parser!(i64).range(1..))]
    pub max_rows: i64,
}

fn parse_positive(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("expected a positive number, got {raw:?}")),
    }
}

fn parse_ratio(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
        _ => Err(format!("expected a number between 0 and 1, got {raw:?}")),
    }
}

impl Default for PatternSettings {
    fn default() -> Self {
        let c = PatternConfig::default();
        Self {
            cluster_min: c.cluster_min as u32,
            cluster_window_secs: (c.cluster_window_ms / 1000) as u32,
            bucket_secs: (c.bucket_ms / 1000) as u32,
            spike_k: c.spike_k,
            spike_min: c.spike_min_count,
            low_ratio: c.low_ratio,
            low_min_expected: c.low_min_expected,
            severity_min_samples: c.severity_min_samples,
            severity_p_value: c.severity_p_value,
            severity_min_distance: c.severity_min_distance,
            baseline_hours: 168,
            max_rows: 200_000,
        }
    }
}

impl PatternSettings {
    /// The detectors' configuration.
    ///
    /// # Errors
    ///
    /// When the values do not make sense together; the message names the problem.
    pub fn config(&self) -> Result<PatternConfig, String> {
        let c = PatternConfig {
            cluster_min: self.cluster_min as usize,
            cluster_window_ms: i64::from(self.cluster_window_secs) * 1000,
            bucket_ms: i64::from(self.bucket_secs) * 1000,
            spike_k: self.spike_k,
            spike_min_count: self.spike_min,
            low_ratio: self.low_ratio,
            low_min_expected: self.low_min_expected,
            severity_min_samples: self.severity_min_samples,
            severity_p_value: self.severity_p_value,
            severity_min_distance: self.severity_min_distance,
            ..PatternConfig::default()
        };
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }
}

/// Why a pattern analysis failed.
#[derive(Debug, thiserror::Error)]
enum PatternError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Permanent(String),
    #[error("the analysis task panicked")]
    Panicked,
}

impl PatternError {
    fn is_transient(&self) -> bool {
        match self {
            PatternError::Db(e) => e.is_transient(),
            PatternError::Permanent(_) => false,
            PatternError::Panicked => true,
        }
    }
}

/// Runs one `detect_anomaly_patterns` delivery to its outcome.
pub async fn run(handler: &AnalysisHandler, delivery: &Delivery) -> Outcome {
    let msg = match delivery.decode::<v1::DetectAnomalyPatterns>() {
        Ok(m) => m,
        Err(e) => return Outcome::Fail(e.to_string()),
    };
    let Ok(task_id) = Uuid::parse_str(&msg.task_id) else {
        return Outcome::Fail(format!("task id {:?} is not a UUID", msg.task_id));
    };
    let hours = match msg.time_window_hours {
        0 => DEFAULT_HOURS,
        h => h.min(24 * 30),
    };
    let started = std::time::Instant::now();
    match analyse_task(handler, task_id, hours).await {
        Ok((outcome, alerts)) => {
            metrics::histogram!("logcanary_pattern_analysis_seconds")
                .record(started.elapsed().as_secs_f64());
            publish_outbox(handler, alerts).await;
            outcome
        }
        Err(error) => {
            let reason = error.to_string();
            if error.is_transient() {
                tracing::warn!(%task_id, error = %reason, "Pattern analysis failed; retrying.");
                let r = reason.clone();
                let _ = handler
                    .db
                    .run(move |c| db::tasks::mark_retry(c, task_id, &r))
                    .await;
                Outcome::Retry(reason)
            } else {
                Outcome::Fail(reason)
            }
        }
    }
}

async fn analyse_task(
    handler: &AnalysisHandler,
    task_id: Uuid,
    hours: u32,
) -> Result<(Outcome, Vec<v1::SendPatternAlert>), PatternError> {
    let task = match handler
        .db
        .run(move |c| db::tasks::start(c, task_id))
        .await?
    {
        StartDecision::Run(task) => task,
        StartDecision::AlreadyFinished(state) => {
            tracing::info!(%task_id, state, "Redelivered pattern analysis already finished; acknowledging.");
            return Ok((Outcome::Done, Vec::new()));
        }
        StartDecision::Unknown => {
            return Ok((
                Outcome::Fail(format!("task {task_id} has no record in the database")),
                Vec::new(),
            ))
        }
    };
    let config = handler.patterns.config().map_err(PatternError::Permanent)?;
    let end = task.created_at;
    let start = end - chrono::Duration::hours(i64::from(hours));
    let baseline_hours = i64::from(handler.patterns.baseline_hours);
    let max_rows = handler.patterns.max_rows;
    let cfg = config.clone();
    let loaded = handler
        .db
        .run(move |c| load(c, &cfg, start, end, baseline_hours, max_rows))
        .await?;
    let unscored = loaded.unscored;
    let cfg = config.clone();
    let analysis = tokio::task::spawn_blocking(move || {
        analyse_counted(
            &cfg,
            start.timestamp_millis(),
            end.timestamp_millis(),
            &loaded.window,
            &loaded.events,
            &loaded.baseline,
        )
    })
    .await
    .map_err(|_| PatternError::Panicked)?;

    let rows = detection_rows(&analysis.detections, Some(task_id));
    let (stored, alerts) = handler
        .db
        .run(move |c| {
            c.transaction(|c| {
                // Finished meanwhile (a concurrent redelivery): store nothing twice.
                if let Some(t) = db::tasks::get(c, task_id)? {
                    if t.status == status::SUCCESS || t.status == status::FAILURE {
                        return Ok((None, Vec::new()));
                    }
                }
                let (ids, alerts) = store_detections(c, &rows)?;
                let result = task_result(hours, &analysis, &ids, unscored, alerts.len());
                db::tasks::mark_success(c, task_id, &result)?;
                Ok((Some((ids, analysis)), alerts))
            })
        })
        .await?;
    if let Some((ids, analysis)) = stored {
        let new = ids.iter().filter(|(_, n)| *n).count();
        for d in &analysis.detections {
            metrics::counter!("logcanary_patterns_detected_total", "kind" => d.kind.as_str())
                .increment(1);
        }
        metrics::counter!("logcanary_tasks_total", "task" => tasks::DETECT_ANOMALY_PATTERNS, "outcome" => status::SUCCESS).increment(1);
        tracing::info!(%task_id, hours, found = ids.len(), new, entries = analysis.entries, "Pattern analysis finished.");
    }
    Ok((Outcome::Done, alerts))
}

/// What an analysis reads.
struct Loaded {
    window: Vec<BucketCount>,
    events: Vec<Event>,
    baseline: Vec<BucketCount>,
    unscored: i64,
}

fn load(
    c: &mut diesel::PgConnection,
    config: &PatternConfig,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    baseline_hours: i64,
    max_rows: i64,
) -> Result<Loaded, DbError> {
    let (from_ms, until_ms) = config.load_range(start.timestamp_millis(), end.timestamp_millis());
    let from = DateTime::from_timestamp_millis(from_ms).unwrap_or(start);
    let until = DateTime::from_timestamp_millis(until_ms).unwrap_or(end);
    let bucket_secs = config.bucket_ms / 1000;
    let window = db::patterns::counts(c, from, until, bucket_secs)?;
    let total: i64 = window.iter().map(|r| r.count).sum();
    let events = db::patterns::events(c, from, until, total > max_rows, max_rows)?
        .into_iter()
        .map(|e| Event {
            id: e.id,
            timestamp_ms: e.logged_at.timestamp_millis(),
            source: e.source,
            severity: Severity::parse(&e.severity),
            is_anomaly: e.is_anomaly,
        })
        .collect();
    let baseline = if baseline_hours > 0 {
        db::patterns::counts(
            c,
            from - chrono::Duration::hours(baseline_hours),
            from,
            bucket_secs,
        )?
    } else {
        Vec::new()
    };
    let unscored = db::patterns::unscored(c, from, until)?;
    Ok(Loaded {
        window: window.into_iter().map(bucket_count).collect(),
        events,
        baseline: baseline.into_iter().map(bucket_count).collect(),
        unscored,
    })
}

fn bucket_count(r: CountRow) -> BucketCount {
    BucketCount {
        source: r.source,
        bucket_start_ms: r.bucket_start.timestamp_millis(),
        severity: Severity::parse(&r.severity),
        count: r.count.max(0) as u64,
    }
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Rows for `pattern_detections`.
pub fn detection_rows(detections: &[Detection], task_id: Option<Uuid>) -> Vec<NewPatternDetection> {
    detections
        .iter()
        .map(|d| NewPatternDetection {
            kind: d.kind.as_str().to_owned(),
            window_start: time(d.window_start_ms),
            window_end: time(d.window_end_ms),
            source: d.source.clone(),
            severity: d.severity.as_str().to_owned(),
            details: d.details.clone(),
            log_entry_ids: d.log_entry_ids.clone(),
            task_id,
        })
        .collect()
}

/// Each detection's id and whether it is new, and the alert messages to publish.
pub type StoredDetections = (Vec<(i64, bool)>, Vec<v1::SendPatternAlert>);

/// Stores detections (repeats of stored ones are skipped) and, for each new one, a
/// `send_pattern_alert` task row; call inside the transaction that finishes the work.
/// Returns each detection's id and whether it is new, and the alert messages to publish
/// once the transaction has committed.
pub fn store_detections(
    c: &mut diesel::PgConnection,
    rows: &[NewPatternDetection],
) -> Result<StoredDetections, DbError> {
    let ids = db::patterns::insert_new(c, rows)?;
    let mut alert_tasks = Vec::new();
    let mut alerts = Vec::new();
    for (id, new) in &ids {
        if !new {
            continue;
        }
        let alert_id = Uuid::new_v4();
        alert_tasks.push(NewTask {
            id: alert_id,
            task_name: tasks::SEND_PATTERN_ALERT.into(),
            queue: contracts::queues::NOTIFICATIONS.into(),
            args: json!({"pattern_detection_id": id}),
        });
        alerts.push(v1::SendPatternAlert {
            task_id: alert_id.to_string(),
            pattern_detection_id: *id,
        });
    }
    if !alert_tasks.is_empty() {
        db::tasks::insert(c, &alert_tasks)?;
    }
    Ok((ids, alerts))
}

fn task_result(
    hours: u32,
    a: &Analysis,
    ids: &[(i64, bool)],
    unscored: i64,
    alerts: usize,
) -> Value {
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &a.detections {
        *by_kind.entry(d.kind.as_str()).or_default() += 1;
    }
    let listed: Vec<Value> = a
        .detections
        .iter()
        .zip(ids)
        .take(RESULT_DETECTIONS)
        .map(|(d, (id, new))| {
            json!({
                "id": id,
                "kind": d.kind.as_str(),
                "source": d.source,
                "severity": d.severity.as_str(),
                "window_start": time(d.window_start_ms),
                "window_end": time(d.window_end_ms),
                "new": new,
                "log_entries": d.log_entry_ids.len(),
                "summary": d.details.get("summary").cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    json!({
        "time_window_hours": hours,
        "window_start": time(a.window_start_ms),
        "window_end": time(a.window_end_ms),
        "entries_analyzed": a.entries,
        "anomalies": a.anomalies,
        "sources": a.sources,
        "unscored_entries": unscored,
        "ignored_out_of_window": a.ignored_out_of_window,
        "patterns_found": a.detections.len(),
        "new_patterns": ids.iter().filter(|(_, n)| *n).count(),
        "by_kind": by_kind,
        "alerts_queued": alerts,
        "detections": listed,
    })
}

/// Publishes task messages whose rows are already committed (the outbox), then records
/// the outcome on the rows; if the broker is away the rows stay unpublished for the relay.
pub async fn publish_outbox<M: TaskMessage>(handler: &AnalysisHandler, msgs: Vec<M>) {
    if msgs.is_empty() {
        return;
    }
    let ids: Vec<Uuid> = msgs
        .iter()
        .filter_map(|m| Uuid::parse_str(m.task_id()).ok())
        .collect();
    let publisher: Arc<tokio::sync::Mutex<Option<mq::Publisher>>> = handler.publisher.clone();
    let result = {
        let mut guard = publisher.lock().await;
        if guard.as_ref().is_none_or(|p| !p.is_connected()) {
            *guard = tokio::time::timeout(
                Duration::from_secs(10),
                mq::Publisher::connect(
                    &handler.amqp_url,
                    handler.topology.clone(),
                    "analysis-worker",
                ),
            )
            .await
            .ok()
            .and_then(|r| {
                r.map_err(|error| tracing::warn!(%error, "Cannot connect the alert publisher."))
                    .ok()
            });
        }
        match guard.as_ref() {
            Some(p) => p.publish_many(&msgs).await.map_err(|e| e.to_string()),
            None => Err("no broker connection".to_owned()),
        }
    };
    let db_result = match result {
        Ok(()) => {
            handler
                .db
                .run(move |c| db::tasks::mark_published(c, &ids))
                .await
        }
        Err(error) => {
            tracing::warn!(%error, messages = ids.len(), task = M::TASK_NAME, "Publish failed; the relay will retry.");
            handler
                .db
                .run(move |c| db::tasks::mark_publish_failed(c, &ids, &error))
                .await
        }
    };
    if let Err(error) = db_result {
        tracing::warn!(%error, "Could not record the publish outcome.");
    }
}
