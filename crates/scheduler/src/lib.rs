//! The scheduler: fires the periodic tasks stored in Postgres (`periodic_tasks`, interval
//! or cron) and runs the outbox relay that re-publishes tasks which never reached a
//! worker. Only the replica holding the Postgres advisory lock ([`leader`]) does either;
//! the others wait and take over within a tick when the leader goes away.
//!
//! Firing is exactly once per due time: the task row and the move of `next_run_at` commit
//! together ([`db::periodic::fire_due`]), and publishing happens after the commit; a
//! publish that fails (or never happens because the process died) is the relay's job.
//!
//! It links neither ONNX Runtime nor the detector, and serves no HTTP beyond its admin
//! port.

pub mod config;
pub mod leader;
pub mod messages;

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use chrono::{DateTime, Utc};
use common::admin::{AdminServer, ReadinessFn};
use contracts::Task;
use db::{periodic::FireReport, relay::RelayPolicy, DbError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    config::Settings,
    leader::{LeaderLock, LEADER_LOCK_KEY},
};

/// Most periodic tasks fired in one pass.
const FIRE_BATCH: i64 = 100;

/// How long one publish (connect included) may take before it counts as failed.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the leader looks for tables whose planner statistics are stale.
const STATISTICS_EVERY: Duration = Duration::from_secs(15);

/// Rows changed since the last `ANALYZE` below which a table is left alone.
const STATISTICS_MIN_CHANGED: i64 = 10_000;

/// What one relay pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RelayReport {
    /// Tasks published again.
    pub published: usize,
    /// Publish attempts that failed (broker down); retried on a later pass.
    pub failed: usize,
    /// Tasks marked FAILURE: attempts used up, or their message cannot be rebuilt.
    pub given_up: usize,
}

/// Firing and relaying, given a database and a publisher; the leader's work, separate
/// from the loop and the clock so tests can drive it with any `now`.
#[derive(Clone)]
pub struct Scheduler {
    pub db: db::Db,
    pub publisher: mq::Publisher,
    /// Publishes through `publisher` and records outcomes on the task rows.
    pub outbox: outbox::Outbox,
    pub relay_policy: RelayPolicy,
}

/// Outcome of publishing a set of tasks.
#[derive(Debug, Default)]
struct Published {
    ok: usize,
    failed: usize,
    unbuildable: usize,
}

impl Scheduler {
    /// A scheduler whose publisher connects on first use, so it starts while the broker
    /// is down.
    pub fn new(
        db: db::Db,
        amqp_url: &str,
        topology: mq::Topology,
        relay_policy: RelayPolicy,
    ) -> Self {
        let publisher = mq::Publisher::lazy(
            amqp_url,
            topology,
            "scheduler",
            mq::PublisherConfig {
                timeout: PUBLISH_TIMEOUT,
                app_id: "scheduler".into(),
                ..mq::PublisherConfig::default()
            },
        );
        Self {
            outbox: outbox::Outbox::new(db.clone(), publisher.clone()),
            db,
            publisher,
            relay_policy,
        }
    }

    /// Fires every periodic task due at `now` and publishes the new tasks.
    ///
    /// # Errors
    ///
    /// The database could not be read or written; nothing fired then. Publish failures
    /// are not errors: those tasks stay for the relay.
    pub async fn fire(&self, now: DateTime<Utc>) -> Result<FireReport, DbError> {
        let report = self
            .db
            .run(move |c| {
                db::periodic::fire_due(c, now, FIRE_BATCH, &|task| {
                    contracts::tasks::queue_for(task)
                        .map(str::to_owned)
                        .ok_or_else(|| format!("unknown task name {task:?}"))
                })
            })
            .await?;
        for skipped in &report.skipped {
            tracing::error!(periodic_task = %skipped.name, error = %skipped.error, "Periodic task disabled: it cannot fire.");
        }
        let mut items = Vec::with_capacity(report.fired.len());
        for fired in &report.fired {
            let lag = (fired.fired_at - fired.due_at).num_milliseconds().max(0) as f64 / 1000.0;
            metrics::histogram!("logcanary_scheduler_lag_seconds").record(lag);
            metrics::counter!("logcanary_scheduler_fired_total", "task" => task_label(&fired.task_name)).increment(1);
            tracing::info!(periodic_task = %fired.name, task = %fired.task_name, task_id = %fired.task_id, lag, "Periodic task fired.");
            items.push((
                fired.task_id,
                messages::build(&fired.task_name, fired.task_id, &fired.args, &[]),
            ));
        }
        self.publish(items, now).await;
        Ok(report)
    }

    /// Analyses the tables whose planner statistics are stale
    /// ([`db::stats::refresh_planner_statistics`]); failures are logged, not fatal.
    pub async fn refresh_statistics(&self) {
        match self
            .db
            .run(|c| db::stats::refresh_planner_statistics(c, STATISTICS_MIN_CHANGED))
            .await
        {
            Ok(tables) if !tables.is_empty() => {
                tracing::info!(?tables, "Planner statistics refreshed.");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "Could not refresh planner statistics."),
        }
    }

    /// One relay pass as of `now`: fails the tasks out of attempts, then claims and
    /// publishes the tasks that never reached a worker.
    ///
    /// # Errors
    ///
    /// The database could not be read or written.
    pub async fn relay(&self, now: DateTime<Utc>) -> Result<RelayReport, DbError> {
        let policy = self.relay_policy.clone();
        let given_up = self
            .db
            .run(move |c| db::relay::give_up(c, now, &policy))
            .await?;
        for id in &given_up {
            tracing::warn!(task_id = %id, "Task never reached a worker; marked FAILURE.");
        }
        // Stuck published tasks are re-published only from queues the broker shows empty
        // (nothing ready or retrying): there the message is lost, not waiting. When the
        // broker cannot be read, only never-published tasks are due.
        let empty_queues: Vec<String> = match self.publisher.queue_depths().await {
            Ok(depths) => depths
                .iter()
                .filter(|d| d.ready == 0 && d.retrying == 0)
                .map(|d| d.queue.to_owned())
                .collect(),
            Err(error) => {
                tracing::debug!(%error, "Cannot read the queue depths; only never-published tasks are relayed.");
                Vec::new()
            }
        };
        let policy = self.relay_policy.clone();
        let claimed = self
            .db
            .run(move |c| db::relay::claim(c, now, &policy, &empty_queues))
            .await?;
        let items = claimed
            .iter()
            .map(|c| {
                (
                    c.task.id,
                    messages::build(&c.task.task_name, c.task.id, &c.task.args, &c.entry_ids),
                )
            })
            .collect();
        let published = self.publish(items, now).await;
        let report = RelayReport {
            published: published.ok,
            failed: published.failed,
            given_up: given_up.len() + published.unbuildable,
        };
        metrics::counter!("logcanary_relay_republished_total").increment(report.published as u64);
        metrics::counter!("logcanary_relay_publish_failures_total").increment(report.failed as u64);
        metrics::counter!("logcanary_relay_given_up_total").increment(report.given_up as u64);
        if report != RelayReport::default() {
            tracing::info!(
                published = report.published,
                failed = report.failed,
                given_up = report.given_up,
                "Relay pass."
            );
        }
        if let Ok(backlog) = self.db.run(db::relay::backlog).await {
            metrics::gauge!("logcanary_relay_backlog").set(backlog as f64);
        }
        Ok(report)
    }

    /// Publishes each buildable message through the outbox, which records the outcome on
    /// its task row; a task whose message cannot be rebuilt is marked FAILURE. After the
    /// first broker failure the rest are left alone ([`outbox::Outbox::relay`]).
    async fn publish(
        &self,
        items: Vec<(Uuid, Result<Task, String>)>,
        now: DateTime<Utc>,
    ) -> Published {
        let mut outcome = Published::default();
        let mut buildable = Vec::with_capacity(items.len());
        for (id, message) in items {
            match message {
                Ok(task) => buildable.push((id, task)),
                Err(error) => {
                    tracing::error!(task_id = %id, %error, "Task message cannot be rebuilt; marked FAILURE.");
                    let error = format!("cannot publish: {error}");
                    if let Err(e) = self
                        .db
                        .run(move |c| db::relay::fail_unbuildable(c, id, &error))
                        .await
                    {
                        tracing::warn!(task_id = %id, error = %e, "Could not mark the task FAILURE.");
                    }
                    outcome.unbuildable += 1;
                }
            }
        }
        let relayed = self.outbox.relay(buildable, now).await;
        outcome.ok = relayed.published;
        outcome.failed = relayed.failed;
        outcome
    }
}

/// Task names are a closed set; anything else is grouped, to keep labels bounded.
fn task_label(name: &str) -> &'static str {
    contracts::tasks::ALL
        .iter()
        .find(|n| **n == name)
        .copied()
        .unwrap_or("other")
}

/// Runs the scheduler until `shutdown` fires, then releases leadership and returns.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let db = db::Db::connect_lazy(
        settings.service.database_url(),
        settings.service.db_pool_size,
    )
    .context("creating the database pool (DATABASE_URL)")?;
    let scheduler = Scheduler::new(
        db.clone(),
        settings.service.amqp_url(),
        mq::Topology::new(settings.service.amqp_prefix.clone())
            .with_quorum_queues(settings.service.amqp_quorum),
        settings.relay_policy(),
    );
    let lock = LeaderLock::new(settings.service.database_url(), LEADER_LOCK_KEY);

    let readiness_db = db.clone();
    let readiness_pub = scheduler.publisher.clone();
    let readiness: ReadinessFn = Arc::new(move || {
        let db = readiness_db.clone();
        let publisher = readiness_pub.clone();
        // A standby is ready too (it is waiting by design); the broker is not required,
        // fired tasks wait in the outbox.
        Box::pin(async move {
            let connected = publisher.is_connected();
            metrics::gauge!("logcanary_amqp_connected").set(if connected { 1.0 } else { 0.0 });
            vec![("database", db.ping().await.map_err(|e| e.to_string()))]
        })
    });
    let admin = AdminServer::bind(settings.admin_addr, readiness)?;
    tracing::info!(
        admin_port = admin.addr.port(),
        tick_ms = settings.tick_ms,
        "Scheduler starting."
    );

    let mut tick = tokio::time::interval(settings.tick());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_relay: Option<tokio::time::Instant> = None;
    let mut last_statistics: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let leader = lock.ensure().await;
        metrics::gauge!("logcanary_scheduler_leader").set(if leader { 1.0 } else { 0.0 });
        if !leader {
            continue;
        }
        if let Err(error) = scheduler.fire(Utc::now()).await {
            tracing::warn!(%error, "Could not fire periodic tasks; retrying next tick.");
        }
        if last_relay.is_none_or(|t| t.elapsed() >= settings.relay_every()) {
            last_relay = Some(tokio::time::Instant::now());
            if let Err(error) = scheduler.relay(Utc::now()).await {
                tracing::warn!(%error, "Relay pass failed; retrying.");
            }
        }
        if last_statistics.is_none_or(|t| t.elapsed() >= STATISTICS_EVERY) {
            last_statistics = Some(tokio::time::Instant::now());
            scheduler.refresh_statistics().await;
        }
    }
    lock.release().await;
    metrics::gauge!("logcanary_scheduler_leader").set(0.0);
    scheduler.publisher.close().await;
    admin.stop().await;
    tracing::info!("Scheduler stopped cleanly.");
    Ok(())
}
