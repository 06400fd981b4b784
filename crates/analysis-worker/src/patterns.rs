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

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use contracts::{tasks, v1};
use db::{models::status, patterns::CountRow, tasks::StartDecision, DbError};
use detector::{
    patterns::{analyse_counted, Analysis, BucketCount, Event, PatternConfig},
    scorer::Severity,
};
use diesel::Connection;
use mq::{Delivery, Outcome};
use serde_json::{json, Value};
use uuid::Uuid;

use scoring::detections::{detection_rows, store_detections};

use crate::tasks::TaskContext;

/// Default window when a message carries none (the old system's default).
const DEFAULT_HOURS: u32 = 24;
/// Most detections listed in a task result (all are in the table).
const RESULT_DETECTIONS: usize = 100;

/// Why a pattern analysis failed.
#[derive(Debug, thiserror::Error)]
enum PatternError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Delivery(#[from] mq::DeliveryError),
    /// The thresholds do not make sense together (a configuration error).
    #[error(transparent)]
    Config(#[from] detector::patterns::ConfigError),
    #[error("the analysis task panicked")]
    Panicked,
}

impl mq::Classify for PatternError {
    fn is_retryable(&self) -> bool {
        match self {
            PatternError::Db(e) => e.is_transient(),
            PatternError::Delivery(_) | PatternError::Config(_) => false,
            PatternError::Panicked => true,
        }
    }
}

/// Runs one `detect_anomaly_patterns` delivery to its outcome.
pub async fn run(ctx: &TaskContext, delivery: &Delivery) -> Outcome {
    let (msg, task_id) = match delivery.decode_task::<v1::DetectAnomalyPatterns>() {
        Ok(decoded) => decoded,
        Err(e) => return Outcome::from_error(&e),
    };
    let hours = match msg.time_window_hours {
        0 => DEFAULT_HOURS,
        h => h.min(24 * 30),
    };
    let started = std::time::Instant::now();
    match analyse_task(ctx, task_id, hours).await {
        Ok((outcome, alerts)) => {
            metrics::histogram!("logcanary_pattern_analysis_seconds")
                .record(started.elapsed().as_secs_f64());
            let _ = ctx.outbox.publish(&alerts).await;
            outcome
        }
        Err(error) => {
            if mq::Classify::is_retryable(&error) {
                let reason = error.to_string();
                tracing::warn!(%task_id, error = %reason, "Pattern analysis failed; retrying.");
                let _ = ctx
                    .db
                    .run(move |c| db::tasks::mark_retry(c, task_id, &reason))
                    .await;
            }
            Outcome::from_error(&error)
        }
    }
}

async fn analyse_task(
    ctx: &TaskContext,
    task_id: Uuid,
    hours: u32,
) -> Result<(Outcome, Vec<v1::SendPatternAlert>), PatternError> {
    let task = match ctx.db.run(move |c| db::tasks::start(c, task_id)).await? {
        StartDecision::Run(task) => task,
        StartDecision::AlreadyFinished(state) => {
            tracing::info!(%task_id, state, "Redelivered pattern analysis already finished; acknowledging.");
            return Ok((Outcome::Done, Vec::new()));
        }
        StartDecision::Unknown => {
            return Ok((
                Outcome::from_error(&mq::DeliveryError::NoRecord(task_id)),
                Vec::new(),
            ))
        }
    };
    let config = ctx.patterns.config()?;
    let end = task.created_at;
    let start = end - chrono::Duration::hours(i64::from(hours));
    let baseline_hours = i64::from(ctx.patterns.baseline_hours);
    let max_rows = ctx.patterns.max_rows;
    let cfg = config.clone();
    let loaded = ctx
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
    let (stored, alerts) = ctx
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
