//! What the notifier does with a micro-batch of alert tasks.
//!
//! The consumer waits up to the grouping window for a batch to fill, so a batch is the
//! alerts that arrived together; each channel gets one message for all of them:
//!
//! 1. a short read: the tasks' states (finished tasks are redeliveries: acked), the log
//!    entries and pattern detections the alerts point at; the tasks are marked STARTED;
//! 2. [`db::alerts::claim`]: one `alerts` row per alert and channel, `pending`, or
//!    `suppressed` when the same alert went out on that channel within the cooldown (a
//!    redelivered task gets its existing rows back); in the same transaction, on channels
//!    that track incidents (Alertmanager, PagerDuty), each alert opens its incident or
//!    keeps it open ([`db::incidents::touch`]; the sweep in `crate::incident` re-posts
//!    and ends them);
//! 3. per channel, concurrently: the pending rows rendered as one message and sent, with
//!    in-process retries and backoff on transient failures; every attempt is counted on
//!    the rows, with its error;
//! 4. per task: any row `failed` -> dead-letter (the task ends FAILURE); any row still
//!    `pending` (shutdown cut the retries short, or the database failed) -> retry through
//!    the broker, which re-sends only what is pending; else SUCCESS and ack.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use contracts::{tasks, v1};
use db::{
    alerts::{self as rows, status as alert_status, Alert, Attempt, Candidate},
    models::{status, LogEntry},
    tasks::StartDecision,
    DbError,
};
use mq::{Delivery, Outcome};
use prost::Message;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use url::Url;
use uuid::Uuid;

use crate::{
    alert::{self, AlertItem},
    deliver::{Channel, RetryPolicy},
    render,
};

/// `alerts.channel` of alerts recorded while no channel is configured.
pub const NO_CHANNEL: &str = "none";

/// The notifier's handler; shared by all in-flight batches.
pub struct NotifierHandler {
    pub db: db::Db,
    pub channels: Vec<Arc<dyn Channel>>,
    pub cooldown: Duration,
    pub policy: RetryPolicy,
    /// Ends with `/`.
    pub dashboard_url: Url,
    /// Cuts backoff pauses short on SIGTERM; the rows stay pending and the broker retries.
    pub shutdown: CancellationToken,
}

/// Why a task did not come to SUCCESS, and whether the broker should deliver it again
/// ([`TaskError::is_retryable`]); converted to an [`Outcome`] at the border.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The message id is not a UUID: a poison message, permanent.
    #[error("message id {0:?} is not a task id")]
    NotATaskId(String),
    /// The body is not the task's protobuf: permanent.
    #[error("undecodable {task}: {reason}")]
    Undecodable {
        task: &'static str,
        reason: prost::DecodeError,
    },
    /// A task this notifier does not know: permanent.
    #[error("task {0} is not handled by notifier {version}", version = env!("CARGO_PKG_VERSION"))]
    UnknownTask(String),
    /// The pattern detection the alert points at is gone: permanent.
    #[error("pattern detection {0} does not exist")]
    PatternMissing(i64),
    /// A channel gave up (retries exhausted or a permanent refusal): permanent.
    #[error("{channel} delivery failed after {attempts} attempt(s): {reason}")]
    DeliveryFailed {
        channel: String,
        attempts: i32,
        reason: String,
    },
    /// A channel's delivery was cut short (shutdown, the database): retryable, the broker
    /// re-sends what is still pending.
    #[error("{channel} delivery not finished: {reason}")]
    DeliveryUnfinished { channel: String, reason: String },
    /// The claim recorded nothing for the task: retryable.
    #[error("no alert rows were recorded")]
    NoRows,
    /// Delivered, but the task row was not updated: retryable (a retry finds the rows sent).
    #[error("recording the task result failed")]
    RecordingResult,
    /// The database failed before delivery: retryable through the broker's backoff.
    #[error(transparent)]
    Database(#[from] DbError),
    /// The batch produced no outcome for this delivery: retryable, so it is never dropped.
    #[error("no outcome recorded")]
    NoOutcome,
}

impl mq::Classify for TaskError {
    fn is_retryable(&self) -> bool {
        TaskError::is_retryable(self)
    }
}

impl TaskError {
    /// The broker should deliver the task again (with backoff, up to its attempt limit).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::NotATaskId(_)
            | Self::Undecodable { .. }
            | Self::UnknownTask(_)
            | Self::PatternMissing(_)
            | Self::DeliveryFailed { .. } => false,
            Self::DeliveryUnfinished { .. }
            | Self::NoRows
            | Self::RecordingResult
            | Self::Database(_)
            | Self::NoOutcome => true,
        }
    }

    /// What the consumer does with the delivery: retry or dead-letter, with the reason.
    pub fn outcome(&self) -> Outcome {
        Outcome::from_error(self)
    }
}

/// How a task's row is updated after delivery.
enum TaskRecord {
    Success(serde_json::Value),
    Retry(String),
}

enum Request {
    Critical(v1::SendCriticalAnomalyAlert),
    Pattern(v1::SendPatternAlert),
}

struct Job {
    index: usize,
    task_id: Uuid,
    request: Request,
}

fn decode(index: usize, delivery: &Delivery) -> Result<Job, TaskError> {
    let task_id = Uuid::parse_str(&delivery.task_id)
        .map_err(|_| TaskError::NotATaskId(delivery.task_id.clone()))?;
    let undecodable = |task| move |reason| TaskError::Undecodable { task, reason };
    let request = match delivery.task_name.as_str() {
        tasks::SEND_CRITICAL_ANOMALY_ALERT => Request::Critical(
            v1::SendCriticalAnomalyAlert::decode(delivery.body.as_slice())
                .map_err(undecodable(tasks::SEND_CRITICAL_ANOMALY_ALERT))?,
        ),
        tasks::SEND_PATTERN_ALERT => Request::Pattern(
            v1::SendPatternAlert::decode(delivery.body.as_slice())
                .map_err(undecodable(tasks::SEND_PATTERN_ALERT))?,
        ),
        other => return Err(TaskError::UnknownTask(other.to_owned())),
    };
    Ok(Job {
        index,
        task_id,
        request,
    })
}

/// What the first read found.
struct Loaded {
    statuses: HashMap<Uuid, String>,
    entries: HashMap<i64, LogEntry>,
    patterns: HashMap<i64, rows::PatternForAlert>,
}

impl NotifierHandler {
    fn channel_names(&self) -> Vec<String> {
        if self.channels.is_empty() {
            vec![NO_CHANNEL.to_owned()]
        } else {
            self.channels.iter().map(|c| c.name().to_owned()).collect()
        }
    }

    async fn load(&self, jobs: &[Job]) -> Result<Loaded, DbError> {
        let task_ids: Vec<Uuid> = jobs.iter().map(|j| j.task_id).collect();
        let entry_ids: Vec<i64> = jobs
            .iter()
            .filter_map(|j| match &j.request {
                Request::Critical(m) => Some(m.log_entry_id),
                Request::Pattern(_) => None,
            })
            .collect();
        let pattern_ids: Vec<i64> = jobs
            .iter()
            .filter_map(|j| match &j.request {
                Request::Pattern(m) => Some(m.pattern_detection_id),
                Request::Critical(_) => None,
            })
            .collect();
        self.db
            .run(move |c| {
                let statuses = db::tasks::statuses(c, &task_ids)?.into_iter().collect();
                let patterns: HashMap<i64, rows::PatternForAlert> =
                    rows::patterns(c, &pattern_ids)?
                        .into_iter()
                        .map(|p| (p.id, p))
                        .collect();
                let mut ids = entry_ids;
                ids.extend(patterns.values().flat_map(alert::sample_ids));
                ids.sort_unstable();
                ids.dedup();
                let entries = db::entries::by_ids(c, &ids)?
                    .into_iter()
                    .map(|e| (e.id, e))
                    .collect();
                Ok(Loaded {
                    statuses,
                    entries,
                    patterns,
                })
            })
            .await
    }

    fn item(&self, job: &Job, loaded: &Loaded) -> Result<AlertItem, TaskError> {
        match &job.request {
            Request::Critical(m) => Ok(alert::critical(
                m.log_entry_id,
                m.anomaly_score,
                &m.summary,
                loaded.entries.get(&m.log_entry_id),
                &self.dashboard_url,
            )),
            Request::Pattern(m) => {
                let p = loaded
                    .patterns
                    .get(&m.pattern_detection_id)
                    .ok_or(TaskError::PatternMissing(m.pattern_detection_id))?;
                let samples: Vec<LogEntry> = alert::sample_ids(p)
                    .filter_map(|id| loaded.entries.get(&id).cloned())
                    .collect();
                Ok(alert::pattern(p, &samples, &self.dashboard_url))
            }
        }
    }

    /// Steps 1 to 4 of the module docs; `Err` when the database failed before delivery.
    async fn process(&self, jobs: Vec<Job>) -> Result<Vec<(usize, Outcome)>, DbError> {
        let loaded = self.load(&jobs).await?;
        let mut results = Vec::with_capacity(jobs.len());
        let mut runnable: Vec<(Job, AlertItem)> = Vec::new();
        for job in jobs {
            match loaded.statuses.get(&job.task_id).map(String::as_str) {
                Some(state @ (status::SUCCESS | status::FAILURE)) => {
                    tracing::info!(task_id = %job.task_id, state, "Redelivered alert task already finished; acknowledging.");
                    results.push((job.index, Outcome::Done));
                    continue;
                }
                None => {
                    // An alert is worth more than the bookkeeping: deliver it anyway.
                    tracing::warn!(task_id = %job.task_id, "Alert task has no record; delivering it anyway.");
                }
                Some(_) => {}
            }
            match self.item(&job, &loaded) {
                Ok(item) => runnable.push((job, item)),
                Err(error) => results.push((job.index, error.outcome())),
            }
        }
        if runnable.is_empty() {
            return Ok(results);
        }

        let task_ids: Vec<Uuid> = runnable.iter().map(|(j, _)| j.task_id).collect();
        let ids = task_ids.clone();
        let finished: HashSet<Uuid> = self
            .db
            .run(move |c| {
                let mut finished = HashSet::new();
                for id in ids {
                    if let StartDecision::AlreadyFinished(_) = db::tasks::start(c, id)? {
                        finished.insert(id);
                    }
                }
                Ok(finished)
            })
            .await?;
        runnable.retain(|(job, _)| {
            let done = finished.contains(&job.task_id);
            if done {
                results.push((job.index, Outcome::Done));
            }
            !done
        });

        let names = self.channel_names();
        let candidates: Vec<Candidate> = runnable
            .iter()
            .flat_map(|(job, item)| {
                let payload = serde_json::to_value(item).unwrap_or_default();
                names.iter().map(move |channel| Candidate {
                    dedup_key: item.dedup_key.clone(),
                    kind: item.kind.clone(),
                    channel: channel.clone(),
                    payload: payload.clone(),
                    log_entry_id: item.log_entry_id,
                    pattern_detection_id: item.pattern_detection_id,
                    task_id: job.task_id,
                })
            })
            .collect();
        let cooldown = self.cooldown;
        let tracked: Vec<String> = self
            .channels
            .iter()
            .filter(|c| c.tracking().is_some())
            .map(|c| c.name().to_owned())
            .collect();
        let claimed = self
            .db
            .run(move |c| db::incidents::claim(c, &candidates, cooldown, &tracked))
            .await?;
        for a in claimed
            .iter()
            .filter(|a| a.status == alert_status::SUPPRESSED && a.attempts == 0)
        {
            tracing::info!(task_id = ?a.task_id, channel = %a.channel, dedup_key = %a.dedup_key,
                suppressed_by = %a.payload["suppressed_by"], "Alert inside its cooldown; recorded, not sent.");
        }

        let mut groups: HashMap<&str, Vec<&Alert>> = HashMap::new();
        for a in claimed.iter().filter(|a| a.status == alert_status::PENDING) {
            groups.entry(a.channel.as_str()).or_default().push(a);
        }
        let sends = groups.into_iter().map(|(name, group)| async move {
            match self.channels.iter().find(|c| c.name() == name) {
                Some(channel) => self.deliver(channel.as_ref(), &group).await,
                None => self.skip(name, &group).await,
            }
        });
        futures::future::join_all(sends).await;

        let ids = task_ids.clone();
        let state = self.db.run(move |c| rows::rows_for_tasks(c, &ids)).await?;
        let mut by_task: HashMap<Uuid, Vec<Alert>> = HashMap::new();
        for a in state {
            if let Some(t) = a.task_id {
                by_task.entry(t).or_default().push(a);
            }
        }
        // What each task comes to; the task rows are then written in one round trip.
        let mut settled = Vec::with_capacity(runnable.len());
        for (job, item) in runnable {
            let mine = by_task.remove(&job.task_id).unwrap_or_default();
            let pending = mine.iter().find(|a| a.status == alert_status::PENDING);
            let settle = if let Some(f) = mine.iter().find(|a| a.status == alert_status::FAILED) {
                Err(TaskError::DeliveryFailed {
                    channel: f.channel.clone(),
                    attempts: f.attempts,
                    reason: f
                        .last_error
                        .as_deref()
                        .unwrap_or("unknown error")
                        .to_owned(),
                })
            } else if let Some(p) = pending {
                Err(TaskError::DeliveryUnfinished {
                    channel: p.channel.clone(),
                    reason: p.last_error.as_deref().unwrap_or("interrupted").to_owned(),
                })
            } else if mine.is_empty() {
                Err(TaskError::NoRows)
            } else {
                Ok(json!({
                    "dedup_key": item.dedup_key,
                    "alerts": mine.iter().map(|a| json!({
                        "id": a.id, "channel": a.channel, "status": a.status, "attempts": a.attempts,
                    })).collect::<Vec<_>>(),
                }))
            };
            settled.push((job.index, job.task_id, task_name(&job.request), settle));
        }
        let writes: Vec<(Uuid, TaskRecord)> = settled
            .iter()
            .filter_map(|(_, id, _, settle)| match settle {
                Ok(result) => Some((*id, TaskRecord::Success(result.clone()))),
                Err(e) if e.is_retryable() => Some((*id, TaskRecord::Retry(e.to_string()))),
                // Failed tasks are marked FAILURE when dead-lettered.
                Err(_) => None,
            })
            .collect();
        let stored = self
            .db
            .run(move |c| {
                for (id, write) in &writes {
                    match write {
                        TaskRecord::Success(result) => db::tasks::mark_success(c, *id, result)?,
                        TaskRecord::Retry(reason) => db::tasks::mark_retry(c, *id, reason)?,
                    }
                }
                Ok(())
            })
            .await;
        if let Err(error) = &stored {
            tracing::warn!(%error, "Could not record the alert tasks' outcomes.");
        }
        for (index, _, task, settle) in settled {
            let outcome = match settle {
                Ok(_) if stored.is_ok() => {
                    metrics::counter!("logcanary_tasks_total", "task" => task, "outcome" => status::SUCCESS).increment(1);
                    Outcome::Done
                }
                // Delivered; the task row is bookkeeping. A retry finds the rows sent.
                Ok(_) => TaskError::RecordingResult.outcome(),
                Err(error) => error.outcome(),
            };
            results.push((index, outcome));
        }
        Ok(results)
    }

    /// Rows of the `none` channel: recorded as suppressed, since nothing can send them.
    async fn skip(&self, name: &str, group: &[&Alert]) {
        let ids: Vec<i64> = group.iter().map(|a| a.id).collect();
        let reason = if name == NO_CHANNEL {
            "no delivery channel configured (LOGCANARY_SMTP_URL, LOGCANARY_WEBHOOK_URLS)".to_owned()
        } else {
            format!("channel {name} is no longer configured")
        };
        let result = self
            .db
            .run(move |c| rows::record_attempt(c, &ids, &Attempt::Skipped(reason)))
            .await;
        if let Err(error) = result {
            tracing::warn!(%error, "Could not record undeliverable alerts.");
        }
        metrics::counter!("logcanary_alerts_total", "channel" => "none", "status" => alert_status::SUPPRESSED)
            .increment(group.len() as u64);
    }

    /// Sends one message for `group` on `channel`, retrying transient failures.
    async fn deliver(&self, channel: &dyn Channel, group: &[&Alert]) {
        let ids: Vec<i64> = group.iter().map(|a| a.id).collect();
        let items: Vec<AlertItem> = group
            .iter()
            .filter_map(|a| serde_json::from_value(a.payload.clone()).ok())
            .collect();
        let rendered = match render::render(&items, self.dashboard_url.as_str()) {
            Ok(rendered) => rendered,
            Err(error) => {
                // Not retryable: every attempt would render the same.
                tracing::error!(channel = channel.name(), %error, "Alert message not rendered; giving up.");
                let record = Attempt::Failed(error.to_string());
                let stored = self
                    .db
                    .run(move |c| rows::record_attempt(c, &ids, &record))
                    .await;
                if let Err(error) = stored {
                    tracing::error!(%error, "Could not record a delivery attempt.");
                }
                metrics::counter!("logcanary_alerts_total", "channel" => channel.kind(), "status" => alert_status::FAILED)
                    .increment(group.len() as u64);
                return;
            }
        };
        let delivery_id = Uuid::new_v4().to_string();
        let kind = channel.kind();
        let span = tracing::info_span!("alert_delivery", channel = channel.name(), alerts = ids.len(), %delivery_id);
        async move {
            // A redelivered group goes on counting from the attempts already made.
            let mut attempt = u32::try_from(group.iter().map(|a| a.attempts).max().unwrap_or(0)).unwrap_or(0);
            loop {
                attempt += 1;
                let started = Instant::now();
                let result = channel.send(&rendered, &delivery_id).await;
                metrics::histogram!("logcanary_alert_delivery_seconds", "channel" => kind)
                    .record(started.elapsed().as_secs_f64());
                let (record, done, outcome) = match &result {
                    Ok(()) => (Attempt::Sent, true, alert_status::SENT),
                    Err(e) if e.is_retryable() && attempt < self.policy.attempts => {
                        (Attempt::WillRetry(e.to_string()), false, "retry")
                    }
                    Err(e) => (Attempt::Failed(e.to_string()), true, alert_status::FAILED),
                };
                metrics::counter!("logcanary_alert_delivery_attempts_total", "channel" => kind, "outcome" => outcome).increment(1);
                let row_ids = ids.clone();
                let stored = self
                    .db
                    .run(move |c| rows::record_attempt(c, &row_ids, &record))
                    .await;
                if let Err(error) = stored {
                    tracing::error!(%error, attempt, "Could not record a delivery attempt.");
                }
                match result {
                    Ok(()) => {
                        tracing::info!(attempt, "Alert message delivered.");
                        metrics::counter!("logcanary_alerts_total", "channel" => kind, "status" => alert_status::SENT)
                            .increment(ids.len() as u64);
                        return;
                    }
                    Err(e) if done => {
                        tracing::error!(attempt, transient = e.is_retryable(), error = %e, "Alert message not delivered; giving up.");
                        metrics::counter!("logcanary_alerts_total", "channel" => kind, "status" => alert_status::FAILED)
                            .increment(ids.len() as u64);
                        return;
                    }
                    Err(e) => {
                        let pause = self.policy.delay(attempt);
                        tracing::warn!(attempt, retry_in_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                            error = %e, "Alert delivery failed; retrying.");
                        tokio::select! {
                            () = self.shutdown.cancelled() => {
                                tracing::info!("Shutting down: the broker retries this alert later.");
                                return;
                            }
                            () = tokio::time::sleep(pause) => {}
                        }
                    }
                }
            }
        }
        .instrument(span)
        .await;
    }
}

fn task_name(r: &Request) -> &'static str {
    match r {
        Request::Critical(_) => tasks::SEND_CRITICAL_ANOMALY_ALERT,
        Request::Pattern(_) => tasks::SEND_PATTERN_ALERT,
    }
}

#[async_trait::async_trait]
impl mq::Handler for NotifierHandler {
    async fn handle(&self, batch: &[Delivery]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = (0..batch.len()).map(|_| None).collect();
        let mut jobs = Vec::new();
        for (index, delivery) in batch.iter().enumerate() {
            match decode(index, delivery) {
                Ok(job) => jobs.push(job),
                Err(error) => outcomes[index] = Some(error.outcome()),
            }
        }
        if !jobs.is_empty() {
            let ids: Vec<Uuid> = jobs.iter().map(|j| j.task_id).collect();
            match self.process(jobs).await {
                Ok(done) => {
                    for (index, outcome) in done {
                        outcomes[index] = Some(outcome);
                    }
                }
                Err(error) => {
                    // The broker retries with backoff, then dead-letters: never dropped.
                    let error = TaskError::from(error);
                    let reason = error.to_string();
                    tracing::warn!(error = %reason, "Alert batch failed before delivery; retrying.");
                    let r = reason.clone();
                    let marked = self
                        .db
                        .run(move |c| {
                            for id in ids {
                                db::tasks::mark_retry(c, id, &r)?;
                            }
                            Ok(())
                        })
                        .await;
                    if let Err(e) = marked {
                        tracing::debug!(error = %e, "Could not mark the alert tasks RETRY.");
                    }
                    for o in outcomes.iter_mut().filter(|o| o.is_none()) {
                        *o = Some(error.outcome());
                    }
                }
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| TaskError::NoOutcome.outcome()))
            .collect()
    }

    async fn dead_lettered(&self, delivery: &Delivery, error: &str) {
        tracing::error!(task_id = %delivery.task_id, task = %delivery.task_name, %error, "Alert task dead-lettered.");
        let Ok(id) = Uuid::parse_str(&delivery.task_id) else {
            return;
        };
        let error = error.to_owned();
        let result = self
            .db
            .run(move |c| {
                // Rows left pending (retries exhausted through the broker) end failed too.
                rows::fail_pending(c, id, &error)?;
                db::tasks::mark_failed(c, id, &error)
            })
            .await;
        if let Err(e) = result {
            tracing::error!(task_id = %id, error = %e, "Could not mark the dead-lettered alert task FAILURE.");
        }
        metrics::counter!("logcanary_tasks_total", "task" => delivery.task_name.clone(), "outcome" => status::FAILURE).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_errors_dead_letter_and_retryable_ones_retry() {
        assert_eq!(
            TaskError::PatternMissing(7).outcome(),
            Outcome::Fail("pattern detection 7 does not exist".into())
        );
        assert_eq!(
            TaskError::DeliveryFailed {
                channel: "email".into(),
                attempts: 3,
                reason: "SMTP: 554".into()
            }
            .outcome(),
            Outcome::Fail("email delivery failed after 3 attempt(s): SMTP: 554".into())
        );
        assert_eq!(
            TaskError::DeliveryUnfinished {
                channel: "email".into(),
                reason: "interrupted".into()
            }
            .outcome(),
            Outcome::Retry("email delivery not finished: interrupted".into())
        );
        for delivery in [
            Delivery::new(
                "notifications",
                "logs.tasks.nope",
                Uuid::new_v4().to_string(),
                vec![],
            ),
            Delivery::new(
                "notifications",
                tasks::SEND_PATTERN_ALERT,
                "not-a-uuid",
                vec![],
            ),
            Delivery::new(
                "notifications",
                tasks::SEND_PATTERN_ALERT,
                Uuid::new_v4().to_string(),
                vec![0xff, 0xff],
            ),
        ] {
            let Err(error) = decode(0, &delivery) else {
                panic!("{delivery:?} decoded");
            };
            assert!(matches!(error.outcome(), Outcome::Fail(_)), "{error}");
        }
        assert!(TaskError::NoRows.is_retryable() && TaskError::NoOutcome.is_retryable());
    }
}
