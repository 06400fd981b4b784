//! The incident sweep: what happens to an alert on Alertmanager or PagerDuty after its
//! first message.
//!
//! An incident is the alerts of one dedup key (kind + template, or pattern kind + source:
//! the cooldown's key) on one channel. The claim opens it, or moves its `last_seen_at`,
//! for every alert of the key, sent or suppressed (`db::incidents::touch`, in the claim's
//! transaction). Every tick, per tracking channel ([`Channel::tracking`]), the sweep
//! leases the incidents that are due (`db::incidents::lease_due`) and
//!
//! - ends those whose key had no alert for `LOGCANARY_INCIDENT_RESOLVE_SECS`:
//!   Alertmanager gets the alert with `endsAt`, PagerDuty a `resolve`;
//! - re-posts the others that were not posted for the channel's re-post interval
//!   (Alertmanager, `LOGCANARY_ALERTMANAGER_REPOST_SECS`), or that must go out again
//!   (an end crossed a new alert of the key).
//!
//! Sends are retried in-process like alert messages ([`RetryPolicy`]); a transient
//! failure leaves the incident for a later tick, a permanent one gives the end up (with
//! the error on the row). The state is in Postgres, so a restarted notifier, or another
//! replica, carries on; the lease keeps two replicas from posting the same incident.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use db::{
    incidents::{self, Due, Failure, Leased},
    DbError,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    alert::AlertItem,
    deliver::{Channel, DeliveryError, IncidentUpdate, RetryPolicy},
};

/// Incidents leased per channel and tick.
const BATCH: i64 = 100;

/// The sweep of every tracking channel; see the module docs.
pub struct Sweeper {
    pub db: db::Db,
    /// Every channel; those without [`Channel::tracking`] are skipped.
    pub channels: Vec<Arc<dyn Channel>>,
    pub resolve_after: Duration,
    pub policy: RetryPolicy,
    /// Time limit of one attempt (for the lease).
    pub timeout: Duration,
    pub every: Duration,
    pub shutdown: CancellationToken,
}

/// What one pass did on a channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub resolved: usize,
    pub reposted: usize,
    pub failed: usize,
}

/// How often to look: a quarter of the shortest interval that matters, within 100 ms and
/// 10 s.
pub fn tick(resolve_after: Duration, channels: &[Arc<dyn Channel>]) -> Duration {
    let shortest = channels
        .iter()
        .filter_map(|c| c.tracking().and_then(|t| t.repost_every))
        .fold(resolve_after, Duration::min);
    (shortest / 4).clamp(Duration::from_millis(100), Duration::from_secs(10))
}

impl Sweeper {
    fn tracking(&self) -> impl Iterator<Item = &Arc<dyn Channel>> {
        self.channels.iter().filter(|c| c.tracking().is_some())
    }

    /// The longest one send with its retries can take, and a margin: no other replica
    /// takes the incidents over before.
    fn lease(&self) -> Duration {
        let pauses: Duration = (1..self.policy.attempts)
            .map(|a| self.policy.delay(a))
            .sum();
        self.timeout * self.policy.attempts + pauses + Duration::from_secs(30)
    }

    /// Sweeps every tracking channel each tick until `shutdown`. Returns at once when no
    /// channel tracks incidents.
    pub async fn run(self) {
        if self.tracking().next().is_none() {
            return;
        }
        tracing::info!(
            every_ms = u64::try_from(self.every.as_millis()).unwrap_or(u64::MAX),
            resolve_secs = self.resolve_after.as_secs(),
            "Incident sweep started."
        );
        let mut ticks = tokio::time::interval(self.every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            for channel in self.tracking() {
                if let Err(error) = self.sweep(channel.as_ref()).await {
                    tracing::warn!(channel = channel.name(), %error, "Incident sweep failed; trying again next tick.");
                }
            }
        }
    }

    /// One pass over `channel`: leases what is due, sends it, records the outcome.
    ///
    /// # Errors
    ///
    /// The database failed (the leases run out and a later pass takes the incidents).
    pub async fn sweep(&self, channel: &dyn Channel) -> Result<Swept, DbError> {
        let Some(tracking) = channel.tracking() else {
            return Ok(Swept::default());
        };
        let due = Due {
            resolve_after: self.resolve_after,
            repost_every: tracking.repost_every,
            lease: self.lease(),
            limit: BATCH,
        };
        let name = channel.name().to_owned();
        let leased = self
            .db
            .run(move |c| incidents::lease_due(c, &name, due))
            .await?;
        let (ending, firing): (Vec<Leased>, Vec<Leased>) =
            leased.into_iter().partition(|l| l.ending);
        let mut swept = Swept::default();
        if !ending.is_empty() {
            self.send(channel, ending, true, &mut swept).await?;
        }
        if !firing.is_empty() {
            self.send(channel, firing, false, &mut swept).await?;
        }
        Ok(swept)
    }

    async fn send(
        &self,
        channel: &dyn Channel,
        leased: Vec<Leased>,
        ending: bool,
        swept: &mut Swept,
    ) -> Result<(), DbError> {
        let action = if ending { "resolve" } else { "repost" };
        let kind = channel.kind();
        let ended_at = ending.then(Utc::now);
        let mut updates = Vec::with_capacity(leased.len());
        let mut ids = Vec::with_capacity(leased.len());
        let mut unreadable = Vec::new();
        for l in &leased {
            match serde_json::from_value::<AlertItem>(l.incident.payload.clone()) {
                Ok(alert) => {
                    ids.push((l.incident.id, l.incident.last_seen_at));
                    updates.push(IncidentUpdate {
                        alert,
                        started_at: l.incident.started_at,
                        ended_at,
                    });
                }
                Err(_) => unreadable.push(l.incident.id),
            }
        }
        if !unreadable.is_empty() {
            tracing::error!(
                channel = channel.name(),
                incidents = unreadable.len(),
                "Incident payload unreadable; giving it up."
            );
            let n = unreadable.len();
            self.db
                .run(move |c| {
                    incidents::failed(
                        c,
                        &unreadable,
                        ending,
                        "unreadable incident payload",
                        Failure::Permanent,
                    )
                })
                .await?;
            swept.failed += n;
        }
        if updates.is_empty() {
            return Ok(());
        }
        let delivery_id = Uuid::new_v4().to_string();
        let span = tracing::info_span!("incident_update", channel = channel.name(), action, incidents = updates.len(), %delivery_id);
        let result = self
            .attempts(channel, &updates, &delivery_id)
            .instrument(span.clone())
            .await;
        let n = updates.len();
        match result {
            Ok(()) if ending => {
                let ended_at = ended_at.unwrap_or_else(Utc::now);
                let closed = self
                    .db
                    .run(move |c| incidents::ended(c, &ids, ended_at))
                    .await?;
                span.in_scope(|| {
                    tracing::info!(resolved = closed, reopened = n - closed, "Incidents ended.")
                });
                metrics::counter!("logcanary_incident_updates_total", "channel" => kind, "action" => action, "outcome" => "sent")
                    .increment(closed as u64);
                swept.resolved += closed;
            }
            Ok(()) => {
                let ids: Vec<i64> = ids.into_iter().map(|(id, _)| id).collect();
                self.db.run(move |c| incidents::posted(c, &ids)).await?;
                span.in_scope(|| tracing::debug!("Open incidents posted again."));
                metrics::counter!("logcanary_incident_updates_total", "channel" => kind, "action" => action, "outcome" => "sent")
                    .increment(n as u64);
                swept.reposted += n;
            }
            Err(error) => {
                let failure = if error.is_retryable() {
                    span.in_scope(
                        || tracing::warn!(%error, "Incident update failed; trying again later."),
                    );
                    Failure::Transient {
                        retry_after: self.policy.backoff_max,
                    }
                } else {
                    span.in_scope(|| {
                        if ending {
                            tracing::error!(%error, "Incident end refused; giving it up.");
                        } else {
                            tracing::warn!(%error, "Incident re-post refused; trying again at the next re-post.");
                        }
                    });
                    Failure::Permanent
                };
                let ids: Vec<i64> = ids.into_iter().map(|(id, _)| id).collect();
                let reason = error.to_string();
                self.db
                    .run(move |c| incidents::failed(c, &ids, ending, &reason, failure))
                    .await?;
                metrics::counter!("logcanary_incident_updates_total", "channel" => kind, "action" => action, "outcome" => "failed")
                    .increment(n as u64);
                swept.failed += n;
            }
        }
        Ok(())
    }

    /// [`Channel::update`] with in-process retries of transient failures; shutdown cuts
    /// the pauses short (the incidents stay due for the next owner).
    async fn attempts(
        &self,
        channel: &dyn Channel,
        updates: &[IncidentUpdate],
        delivery_id: &str,
    ) -> Result<(), DeliveryError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = std::time::Instant::now();
            let result = channel.update(updates, delivery_id).await;
            metrics::histogram!("logcanary_alert_delivery_seconds", "channel" => channel.kind())
                .record(started.elapsed().as_secs_f64());
            match result {
                Ok(()) => return Ok(()),
                Err(e) if e.is_retryable() && attempt < self.policy.attempts => {
                    let pause = self.policy.delay(attempt);
                    tracing::warn!(attempt, retry_in_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                        error = %e, "Incident update failed; retrying.");
                    tokio::select! {
                        () = self.shutdown.cancelled() => return Err(e),
                        () = tokio::time::sleep(pause) => {}
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}
