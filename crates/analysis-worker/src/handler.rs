//! What the worker does with each delivery: the analysis tasks, end to end.

use std::{collections::HashMap, sync::Arc};

use contracts::{tasks, v1, TaskMessage};
use db::{
    models::{status, EntryScore, LogEntry, NewTask},
    tasks::StartDecision,
    DbError,
};
use diesel::Connection;
use mq::{Delivery, Outcome};
use prost::Message;
use serde_json::json;
use uuid::Uuid;

use crate::scoring::{self, Prior, ScoringConfig};

/// The analysis worker's handler; shared by all in-flight batches.
pub struct AnalysisHandler {
    pub db: db::Db,
    pub publisher: Arc<tokio::sync::Mutex<Option<mq::Publisher>>>,
    pub amqp_url: String,
    pub topology: mq::Topology,
    pub scoring: ScoringConfig,
}

/// A task of this batch that needs scoring.
struct Job {
    index: usize,
    task_id: Uuid,
    task_name: &'static str,
    entry_ids: Vec<i64>,
}

impl AnalysisHandler {
    fn decode(delivery: &Delivery) -> Result<(Uuid, &'static str, Vec<i64>), String> {
        let task_id = Uuid::parse_str(&delivery.task_id)
            .map_err(|_| format!("message id {:?} is not a task id", delivery.task_id))?;
        match delivery.task_name.as_str() {
            tasks::ANALYZE_LOG_ENTRY => {
                let m = v1::AnalyzeLogEntry::decode(delivery.body.as_slice())
                    .map_err(|e| format!("undecodable {}: {e}", tasks::ANALYZE_LOG_ENTRY))?;
                Ok((task_id, tasks::ANALYZE_LOG_ENTRY, vec![m.log_entry_id]))
            }
            tasks::BATCH_ANALYZE_LOGS => {
                let m = v1::BatchAnalyzeLogs::decode(delivery.body.as_slice())
                    .map_err(|e| format!("undecodable {}: {e}", tasks::BATCH_ANALYZE_LOGS))?;
                Ok((task_id, tasks::BATCH_ANALYZE_LOGS, m.log_entry_ids))
            }
            other => Err(format!(
                "task {other} is not handled by analysis-worker {}; no consumer of this version can run it",
                env!("CARGO_PKG_VERSION")
            )),
        }
    }

    async fn publish_alerts(&self, alerts: Vec<v1::SendCriticalAnomalyAlert>) {
        if alerts.is_empty() {
            return;
        }
        let ids: Vec<Uuid> = alerts
            .iter()
            .filter_map(|a| Uuid::parse_str(a.task_id()).ok())
            .collect();
        let result = {
            let mut guard = self.publisher.lock().await;
            if guard.as_ref().is_none_or(|p| !p.is_connected()) {
                *guard = mq::Publisher::connect(
                    &self.amqp_url,
                    self.topology.clone(),
                    "analysis-worker",
                )
                .await
                .map_err(|error| tracing::warn!(%error, "Cannot connect the alert publisher."))
                .ok();
            }
            match guard.as_ref() {
                Some(p) => p.publish_many(&alerts).await.map_err(|e| e.to_string()),
                None => Err("no broker connection".to_owned()),
            }
        };
        // The alert tasks are already committed; if publishing failed the relay sends them.
        let db_result = match result {
            Ok(()) => {
                self.db
                    .run(move |c| db::tasks::mark_published(c, &ids))
                    .await
            }
            Err(error) => {
                tracing::warn!(%error, alerts = ids.len(), "Alert publish failed; the relay will retry.");
                self.db
                    .run(move |c| db::tasks::mark_publish_failed(c, &ids, &error))
                    .await
            }
        };
        if let Err(error) = db_result {
            tracing::warn!(%error, "Could not record the alert publish outcome.");
        }
    }
}

#[async_trait::async_trait]
impl mq::Handler for AnalysisHandler {
    async fn handle(&self, batch: &[Delivery]) -> Vec<Outcome> {
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
                Err(reason) => outcomes[index] = Some(Outcome::Fail(reason)),
            }
        }
        if !jobs.is_empty() {
            let scoring = self.scoring;
            let result = self.db.run(move |conn| analyse(conn, jobs, &scoring)).await;
            match result {
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
                    let retry = error.is_transient();
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

type JobResult = (usize, Outcome, Vec<v1::SendCriticalAnomalyAlert>);

/// Scores every job of a batch and commits all of it in one transaction: template counts,
/// scores, task states and the alert tasks. A failure rolls everything back, so a retry
/// starts from a clean slate and counts nothing twice.
fn analyse(
    conn: &mut diesel::PgConnection,
    jobs: Vec<Job>,
    config: &ScoringConfig,
) -> Result<Vec<JobResult>, DbError> {
    conn.transaction(|conn| {
        let mut results = Vec::with_capacity(jobs.len());
        let mut runnable = Vec::new();
        for job in jobs {
            match db::tasks::start(conn, job.task_id)? {
                StartDecision::Run(_) => runnable.push(job),
                StartDecision::AlreadyFinished(state) => {
                    tracing::info!(task_id = %job.task_id, state, "Redelivered task already finished; acknowledging.");
                    results.push((job.index, Outcome::Done, Vec::new()));
                }
                StartDecision::Unknown => results.push((
                    job.index,
                    Outcome::Fail(format!("task {} has no record in the database", job.task_id)),
                    Vec::new(),
                )),
            }
        }
        if runnable.is_empty() {
            return Ok(results);
        }
        let all_ids: Vec<i64> = runnable.iter().flat_map(|j| j.entry_ids.iter().copied()).collect();
        let entries = scoring::in_time_order(db::entries::by_ids(conn, &all_ids)?);
        let mut masked = scoring::mask_batch(&entries);
        // A fixed lock order on template rows keeps concurrent workers from deadlocking.
        masked.observations.sort_by(|a, b| a.key.cmp(&b.key));
        let priors: HashMap<String, Prior> = db::templates::observe(conn, &masked.observations)?
            .into_iter()
            .map(|o| (o.key, Prior { id: o.id, seen_before: o.seen_before }))
            .collect();
        let scores = scoring::score(&entries, &masked.keys, &priors, config);
        let by_id: HashMap<i64, (&LogEntry, &EntryScore)> = entries
            .iter()
            .zip(&scores)
            .map(|(e, s)| (e.id, (e, s)))
            .collect();

        for job in runnable {
            let mut job_scores = Vec::new();
            let mut missing = Vec::new();
            let mut alerts = Vec::new();
            let mut alert_tasks = Vec::new();
            for id in &job.entry_ids {
                match by_id.get(id) {
                    Some((entry, score)) => {
                        job_scores.push((*score).clone());
                        if scoring::is_critical(&entry.severity, score) {
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
                    }
                    None => missing.push(*id),
                }
            }
            if job.task_name == tasks::ANALYZE_LOG_ENTRY && job_scores.is_empty() {
                // Roll back nothing else: record the failure in this task alone.
                results.push((
                    job.index,
                    Outcome::Fail(format!("log entry {} does not exist", job.entry_ids.first().copied().unwrap_or_default())),
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
            db::entries::write_scores(conn, &job_scores)?;
            if !alert_tasks.is_empty() {
                db::tasks::insert(conn, &alert_tasks)?;
            }
            db::tasks::mark_success(conn, job.task_id, &result)?;
            metrics::counter!("logcanary_tasks_total", "task" => job.task_name, "outcome" => status::SUCCESS).increment(1);
            metrics::counter!("logcanary_entries_scored_total").increment(job_scores.len() as u64);
            metrics::counter!("logcanary_anomalies_flagged_total").increment(anomalies as u64);
            results.push((job.index, Outcome::Done, alerts));
        }
        Ok(results)
    })
}
