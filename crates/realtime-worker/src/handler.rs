//! What the real-time worker does with `logs.tasks.analyze_real_time_stream`.
//!
//! 1. Scoring is the analysis worker's, unchanged: each delivery is handed to
//!    [`ScoringHandler`] as a batch analysis of its entries, so entries are scored in
//!    micro-batches with the shared templates (entries already scored keep their score),
//!    critical anomalies get their alert task in the scoring transaction and it is
//!    published at once, and the task is marked SUCCESS.
//! 2. The scored entries of every task that ran (not redeliveries of finished ones) then
//!    go through per-source sliding windows ([`StreamWindows`]); a cluster or spike they
//!    complete is stored in `pattern_detections` with a `send_pattern_alert` task in one
//!    transaction, which also adds what was found to the task's result, and the alert is
//!    published right after: no waiting for the periodic analysis.
//!
//! The windows live in this process only (route `real_time` by source across replicas);
//! the periodic analysis over Postgres remains the complete view.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
};

use contracts::{tasks, v1};
use db::models::status;
use detector::{
    patterns::{Detection, Event, PatternKind, PatternSeverity, StreamSignal, StreamWindows},
    scorer::Severity,
};
use diesel::Connection;
use mq::{Delivery, Outcome};
use prost::Message;
use scoring::{
    detections::{detection_rows, store_detections},
    handler::ScoringHandler,
};
use serde_json::{json, Value};
use uuid::Uuid;

/// The real-time worker's handler; shared by all in-flight batches.
pub struct RealtimeHandler {
    pub scoring: Arc<ScoringHandler>,
    pub windows: Mutex<StreamWindows>,
    pub bucket_ms: i64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The windows stay consistent enough after a panic: at worst one count is off.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Job {
    index: usize,
    task_id: Uuid,
    entry_ids: Vec<i64>,
}

impl RealtimeHandler {
    /// Feeds the entries of the tasks that just ran through the windows; returns the
    /// detections per task.
    async fn slide(&self, ran: &[&Job]) -> Result<Vec<(Uuid, Vec<Detection>)>, db::DbError> {
        let ids: Vec<i64> = ran
            .iter()
            .flat_map(|j| j.entry_ids.iter().copied())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let entries = self
            .scoring
            .db
            .run(move |c| db::entries::by_ids(c, &ids))
            .await?;
        let by_id: HashMap<i64, db::models::LogEntry> =
            entries.into_iter().map(|e| (e.id, e)).collect();
        let mut out = Vec::new();
        let mut windows = lock(&self.windows);
        windows.set_now(chrono::Utc::now().timestamp_millis());
        let evicted_before = windows.evicted_sources();
        for job in ran {
            let mut events: Vec<Event> = job
                .entry_ids
                .iter()
                .filter_map(|id| by_id.get(id))
                .map(|e| Event {
                    id: e.id,
                    timestamp_ms: e.logged_at.timestamp_millis(),
                    source: e.source.clone().unwrap_or_default(),
                    severity: Severity::parse(&e.severity),
                    is_anomaly: e.is_anomaly.unwrap_or(false),
                })
                .collect();
            // In the windows' time: a timestamp too far ahead counts as the allowed limit.
            events.sort_by_key(|e| (windows.clamp(e.timestamp_ms), e.id));
            let mut found = Vec::new();
            for e in &events {
                for signal in windows.observe(e) {
                    found.push(self.detection(signal));
                }
            }
            out.push((job.task_id, found));
        }
        windows.evict_idle(chrono::Utc::now().timestamp_millis());
        metrics::counter!("logcanary_realtime_sources_evicted_total")
            .increment(windows.evicted_sources() - evicted_before);
        metrics::gauge!("logcanary_realtime_sources").set(windows.sources() as f64);
        Ok(out)
    }

    fn detection(&self, signal: StreamSignal) -> Detection {
        match signal {
            StreamSignal::Cluster {
                source,
                anomalies,
                window_start_ms,
                window_end_ms,
                log_entry_ids,
            } => Detection {
                kind: PatternKind::AnomalyCluster,
                details: json!({
                    "anomalies": anomalies,
                    "detected_by": "realtime-worker",
                    "span_seconds": (window_end_ms - 1 - window_start_ms) as f64 / 1000.0,
                    "summary": format!(
                        "{anomalies} anomalies from {:?} within {:.0} s, seen as they arrived",
                        if source.is_empty() { "(no source)" } else { source.as_str() },
                        (window_end_ms - 1 - window_start_ms) as f64 / 1000.0
                    ),
                }),
                severity: PatternSeverity::Critical,
                source,
                window_start_ms,
                window_end_ms,
                log_entry_ids,
            },
            StreamSignal::Spike {
                source,
                errors,
                threshold,
                bucket_start_ms,
                log_entry_ids,
            } => Detection {
                kind: PatternKind::ErrorSpike,
                details: json!({
                    "errors": errors,
                    "threshold": threshold,
                    "detected_by": "realtime-worker",
                    "bucket_seconds": self.bucket_ms / 1000,
                    "summary": format!(
                        "{errors} ERROR/CRITICAL entries from {:?} so far in this {} min bucket (threshold {threshold:.1})",
                        if source.is_empty() { "(no source)" } else { source.as_str() },
                        self.bucket_ms / 60_000
                    ),
                }),
                severity: PatternSeverity::Warning,
                source,
                window_start_ms: bucket_start_ms,
                window_end_ms: bucket_start_ms + self.bucket_ms,
                log_entry_ids,
            },
        }
    }

    /// Stores a task's detections and their alert tasks, and adds them to its result.
    async fn record(
        &self,
        task_id: Uuid,
        detections: Vec<Detection>,
    ) -> Result<Vec<v1::SendPatternAlert>, db::DbError> {
        let rows = detection_rows(&detections, Some(task_id));
        self.scoring
            .db
            .run(move |c| {
                c.transaction(|c| {
                    let (ids, alerts) = store_detections(c, &rows)?;
                    if let Some(task) = db::tasks::get(c, task_id)? {
                        let mut result = task.result.unwrap_or_else(|| json!({}));
                        let listed: Vec<Value> = rows
                            .iter()
                            .zip(&ids)
                            .map(|(r, (id, new))| json!({"id": id, "kind": r.kind, "source": r.source, "new": new}))
                            .collect();
                        if let Some(obj) = result.as_object_mut() {
                            obj.insert("patterns".into(), Value::Array(listed));
                            obj.insert("pattern_alerts_queued".into(), json!(alerts.len()));
                        }
                        if task.status == status::SUCCESS {
                            db::tasks::mark_success(c, task_id, &result)?;
                        }
                    }
                    Ok(alerts)
                })
            })
            .await
    }
}

#[async_trait::async_trait]
impl mq::Handler for RealtimeHandler {
    async fn handle(&self, batch: &[Delivery]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = (0..batch.len()).map(|_| None).collect();
        let mut jobs = Vec::new();
        for (index, delivery) in batch.iter().enumerate() {
            let decoded = delivery
                .decode::<v1::AnalyzeRealTimeStream>()
                .map_err(|e| e.to_string())
                .and_then(|m| {
                    Uuid::parse_str(&m.task_id)
                        .map(|id| (id, m.log_entry_ids))
                        .map_err(|_| format!("task id {:?} is not a UUID", m.task_id))
                });
            match decoded {
                Ok((task_id, entry_ids)) => jobs.push(Job {
                    index,
                    task_id,
                    entry_ids,
                }),
                Err(reason) => outcomes[index] = Some(Outcome::Fail(reason)),
            }
        }
        if !jobs.is_empty() {
            // Redeliveries of finished tasks are not fed to the windows twice.
            let ids: Vec<Uuid> = jobs.iter().map(|j| j.task_id).collect();
            let before: HashMap<Uuid, String> = match self
                .scoring
                .db
                .run(move |c| db::tasks::statuses(c, &ids))
                .await
            {
                Ok(rows) => rows.into_iter().collect(),
                Err(error) => {
                    let reason = format!("reading task states: {error}");
                    for job in &jobs {
                        outcomes[job.index] = Some(Outcome::Retry(reason.clone()));
                    }
                    return outcomes
                        .into_iter()
                        .map(Option::unwrap_or_default_retry)
                        .collect();
                }
            };
            let scoring: Vec<Delivery> = jobs
                .iter()
                .map(|j| {
                    let body = v1::BatchAnalyzeLogs {
                        task_id: j.task_id.to_string(),
                        log_entry_ids: j.entry_ids.clone(),
                    }
                    .encode_to_vec();
                    Delivery::new(
                        contracts::queues::REAL_TIME,
                        tasks::BATCH_ANALYZE_LOGS,
                        j.task_id.to_string(),
                        body,
                    )
                })
                .collect();
            let scored = self.scoring.handle(&scoring).await;
            let mut ran = Vec::new();
            for (job, outcome) in jobs.iter().zip(scored) {
                let fresh = !matches!(
                    before.get(&job.task_id).map(String::as_str),
                    Some(status::SUCCESS | status::FAILURE)
                );
                if outcome == Outcome::Done && fresh {
                    ran.push(job);
                }
                outcomes[job.index] = Some(outcome);
            }
            if !ran.is_empty() {
                match self.slide(&ran).await {
                    Ok(found) => {
                        for (task_id, detections) in found {
                            if detections.is_empty() {
                                continue;
                            }
                            for d in &detections {
                                metrics::counter!("logcanary_realtime_patterns_total", "kind" => d.kind.as_str()).increment(1);
                            }
                            match self.record(task_id, detections).await {
                                Ok(alerts) => {
                                    let _ = self.scoring.outbox.publish(&alerts).await;
                                }
                                // The scores are stored and the task is done; the periodic
                                // analysis will still find the pattern.
                                Err(error) => {
                                    tracing::warn!(%task_id, %error, "Could not store real-time patterns.")
                                }
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "Could not load scored entries for the sliding windows.")
                    }
                }
            }
        }
        outcomes
            .into_iter()
            .map(Option::unwrap_or_default_retry)
            .collect()
    }

    async fn dead_lettered(&self, delivery: &Delivery, error: &str) {
        self.scoring.dead_lettered(delivery, error).await;
    }
}

/// A delivery left without an outcome is retried.
trait OrRetry {
    fn unwrap_or_default_retry(self) -> Outcome;
}

impl OrRetry for Option<Outcome> {
    fn unwrap_or_default_retry(self) -> Outcome {
        self.unwrap_or_else(|| Outcome::Retry("no outcome recorded".into()))
    }
}
