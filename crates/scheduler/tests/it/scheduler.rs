//! The scheduler against the real Postgres and RabbitMQ, driven with a controlled clock:
//! firing at the right times, exactly once per due time (two schedulers at once
//! included), missed runs firing once, leadership, and the outbox relay.

use std::time::Duration;

use chrono::{DateTime, Utc};
use contracts::{tasks, Task};
use db::{
    models::{NewLogEntry, NewTask},
    periodic::{PeriodicFields, Schedule},
    relay::RelayPolicy,
};
use logcanary_scheduler::{
    leader::{LeaderLock, LEADER_LOCK_KEY},
    Scheduler,
};
use mq::lapin::options::BasicGetOptions;
use serde_json::{json, Value};
use test_support::TestDb;
use uuid::Uuid;

/// A closed port: every publish fails as when the broker is down.
const DEAD_BROKER: &str = "amqp://guest:guest@127.0.0.1:1/%2f";

struct Env {
    db: TestDb,
    prefix: String,
}

impl Env {
    async fn new() -> Self {
        let db = TestDb::new().await;
        // The seeded schedules would fire at the first pass; tests add their own.
        db.db
            .run(|c| {
                use diesel::RunQueryDsl;
                diesel::sql_query("DELETE FROM periodic_tasks").execute(c)?;
                Ok(())
            })
            .await
            .expect("clearing the seeded schedules");
        Self {
            db,
            prefix: test_support::queue_prefix(),
        }
    }

    fn scheduler(&self, amqp_url: &str) -> Scheduler {
        let db = db::Db::connect_lazy(&self.db.url, 4).expect("pool");
        Scheduler::new(
            db,
            amqp_url,
            mq::Topology::new(self.prefix.clone()),
            RelayPolicy::default(),
        )
    }

    async fn add(
        &self,
        name: &str,
        task: &str,
        args: Value,
        schedule: (&str, &str),
        next: Option<DateTime<Utc>>,
    ) -> i64 {
        let (kind, spec) = schedule;
        let mut fields = PeriodicFields {
            name: name.into(),
            task: task.into(),
            args,
            interval_every: None,
            interval_period: None,
            cron: None,
            timezone: "UTC".into(),
            enabled: true,
            next_run_at: next,
        };
        match kind {
            "interval" => {
                let (every, period) = spec.split_once(' ').expect("\"<every> <period>\"");
                fields.interval_every = Some(every.parse().expect("every"));
                fields.interval_period = Some(period.into());
            }
            _ => fields.cron = Some(spec.into()),
        }
        self.db
            .db
            .run(move |c| db::periodic::insert(c, &fields))
            .await
            .expect("inserting a periodic task")
            .id
    }

    async fn periodic(&self, id: i64) -> db::periodic::PeriodicTask {
        self.db
            .db
            .run(move |c| db::periodic::get(c, id))
            .await
            .expect("reading")
            .expect("the periodic task exists")
    }

    async fn tasks_named(&self, name: &str) -> i64 {
        self.db
            .count(&format!(
                "SELECT count(*) FROM tasks WHERE task_name = '{name}'"
            ))
            .await
    }

    /// Takes every message waiting in a work queue.
    async fn drain(&self, queue: &str) -> Vec<Task> {
        let conn = mq::connect(&test_support::amqp_url(), "scheduler-test")
            .await
            .expect("broker");
        let channel = conn.create_channel().await.expect("channel");
        let topology = mq::Topology::new(self.prefix.clone());
        topology.declare(&channel).await.expect("topology");
        let mut out = Vec::new();
        while let Some(msg) = channel
            .basic_get(
                topology.queue(queue).as_str().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .expect("basic.get")
        {
            let kind = msg
                .delivery
                .properties
                .kind()
                .as_ref()
                .map(|k| k.to_string())
                .unwrap_or_default();
            out.push(Task::decode(&kind, &msg.delivery.data).expect("a task message"));
        }
        let _ = conn.close(200, "bye".into()).await;
        out
    }

    async fn cleanup(self) {
        test_support::delete_queues(&self.prefix).await;
    }
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

#[tokio::test]
async fn an_interval_task_fires_at_its_times_and_its_message_is_published() {
    let env = Env::new().await;
    let s = env.scheduler(&test_support::amqp_url());
    let t0 = t("2026-03-01T10:00:00Z");
    let id = env
        .add(
            "patterns",
            tasks::DETECT_ANOMALY_PATTERNS,
            json!([6]),
            ("interval", "10 seconds"),
            Some(t0),
        )
        .await;

    assert!(
        s.fire(t0 - secs(1)).await.unwrap().fired.is_empty(),
        "not due yet"
    );
    let first = s.fire(t0).await.unwrap();
    assert_eq!(first.fired.len(), 1);
    assert_eq!(first.fired[0].due_at, t0);
    assert!(
        s.fire(t0 + secs(1)).await.unwrap().fired.is_empty(),
        "fired once per due time"
    );
    assert!(s.fire(t0 + secs(9)).await.unwrap().fired.is_empty());
    assert_eq!(s.fire(t0 + secs(10)).await.unwrap().fired.len(), 1);

    let row = env.periodic(id).await;
    assert_eq!(row.total_run_count, 2);
    assert_eq!(row.last_run_at, Some(t0 + secs(10)));
    assert_eq!(row.next_run_at, Some(t0 + secs(20)));
    assert_eq!(env.tasks_named(tasks::DETECT_ANOMALY_PATTERNS).await, 2);
    assert_eq!(
        env.db
            .count(
                "SELECT count(*) FROM tasks WHERE published_at IS NOT NULL AND queue = 'analysis'"
            )
            .await,
        2,
        "both runs published and recorded"
    );
    let messages = env.drain("analysis").await;
    assert_eq!(messages.len(), 2);
    for m in messages {
        match m {
            Task::DetectAnomalyPatterns(m) => assert_eq!(m.time_window_hours, 6),
            other => panic!("unexpected message {other:?}"),
        }
    }
    env.cleanup().await;
}

#[tokio::test]
async fn missed_runs_after_downtime_fire_once() {
    let env = Env::new().await;
    let s = env.scheduler(&test_support::amqp_url());
    let t0 = t("2026-03-01T10:00:00Z");
    let id = env
        .add(
            "cleanup",
            tasks::CLEANUP_OLD_RESULTS,
            json!([]),
            ("interval", "1 minutes"),
            Some(t0),
        )
        .await;
    // Down for an hour and a half: sixty-odd slots missed.
    let back = t0 + secs(90 * 60 + 20);
    assert_eq!(s.fire(back).await.unwrap().fired.len(), 1);
    assert!(s.fire(back + secs(1)).await.unwrap().fired.is_empty());
    let row = env.periodic(id).await;
    assert_eq!(row.total_run_count, 1);
    // The next slot keeps the minute phase.
    assert_eq!(row.next_run_at, Some(t0 + secs(91 * 60)));
    assert_eq!(env.tasks_named(tasks::CLEANUP_OLD_RESULTS).await, 1);
    assert_eq!(env.drain("maintenance").await.len(), 1);
    env.cleanup().await;
}

#[tokio::test]
async fn a_cron_task_fires_at_the_matching_times_in_its_zone() {
    let env = Env::new().await;
    let s = env.scheduler(&test_support::amqp_url());
    // Every day at 02:30 in Paris: 01:30 UTC in winter.
    let schedule = Schedule::cron("30 2 * * *", "Europe/Paris").unwrap();
    let start = t("2026-01-10T12:00:00Z");
    let first = schedule.first_due(start);
    assert_eq!(first, t("2026-01-11T01:30:00Z"));
    let id = env
        .add(
            "nightly",
            tasks::CLEANUP_OLD_RESULTS,
            json!([]),
            ("cron", "30 2 * * *"),
            Some(first),
        )
        .await;
    env.db
        .db
        .run(move |c| {
            use db::schema::periodic_tasks::dsl;
            use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};
            diesel::update(dsl::periodic_tasks.find(id))
                .set(dsl::timezone.eq("Europe/Paris"))
                .execute(c)?;
            Ok(())
        })
        .await
        .unwrap();

    assert!(s
        .fire(t("2026-01-11T01:29:59Z"))
        .await
        .unwrap()
        .fired
        .is_empty());
    assert_eq!(
        s.fire(t("2026-01-11T01:30:00Z")).await.unwrap().fired.len(),
        1
    );
    assert!(s
        .fire(t("2026-01-11T13:00:00Z"))
        .await
        .unwrap()
        .fired
        .is_empty());
    assert_eq!(
        env.periodic(id).await.next_run_at,
        Some(t("2026-01-12T01:30:00Z"))
    );
    env.cleanup().await;
}

#[tokio::test]
async fn a_schedule_without_next_run_fires_at_once_for_an_interval_and_waits_for_cron() {
    let env = Env::new().await;
    let s = env.scheduler(&test_support::amqp_url());
    let now = t("2026-03-01T10:00:07Z");
    let interval = env
        .add(
            "every hour",
            tasks::CLEANUP_OLD_RESULTS,
            json!([]),
            ("interval", "1 hours"),
            None,
        )
        .await;
    let cron = env
        .add(
            "on the hour",
            tasks::CLEANUP_OLD_RESULTS,
            json!([]),
            ("cron", "0 * * * *"),
            None,
        )
        .await;
    let fired = s.fire(now).await.unwrap().fired;
    assert_eq!(
        fired.iter().map(|f| f.periodic_id).collect::<Vec<_>>(),
        vec![interval]
    );
    assert_eq!(
        env.periodic(cron).await.next_run_at,
        Some(t("2026-03-01T11:00:00Z"))
    );
    assert_eq!(
        env.periodic(interval).await.next_run_at,
        Some(t("2026-03-01T11:00:07Z"))
    );
    env.cleanup().await;
}

#[tokio::test]
async fn a_stored_task_with_an_unknown_name_is_disabled_not_fired_forever() {
    let env = Env::new().await;
    let s = env.scheduler(&test_support::amqp_url());
    let now = t("2026-03-01T10:00:00Z");
    let id = env
        .add(
            "typo",
            "logs.tasks.no_such_task",
            json!([]),
            ("interval", "1 seconds"),
            Some(now),
        )
        .await;
    let report = s.fire(now).await.unwrap();
    assert!(report.fired.is_empty());
    assert_eq!(report.skipped.len(), 1);
    assert!(!env.periodic(id).await.enabled);
    assert_eq!(env.db.count("SELECT count(*) FROM tasks").await, 0);
    env.cleanup().await;
}

#[tokio::test]
async fn two_schedulers_at_once_never_fire_a_due_time_twice() {
    let env = Env::new().await;
    let t0 = t("2026-03-01T10:00:00Z");
    for i in 0..5 {
        env.add(
            &format!("p{i}"),
            tasks::CLEANUP_OLD_RESULTS,
            json!([]),
            ("interval", "1 seconds"),
            Some(t0),
        )
        .await;
    }
    let ticks = 40;
    let (a, b) = (
        env.scheduler(&test_support::amqp_url()),
        env.scheduler(&test_support::amqp_url()),
    );
    let mut all: Vec<(i64, DateTime<Utc>)> = Vec::new();
    // Both see every due time at the same moment: the worst case for double firing.
    for i in 0..ticks {
        let now = t0 + secs(i);
        let (ra, rb) = tokio::join!(a.fire(now), b.fire(now));
        for report in [ra.expect("fire"), rb.expect("fire")] {
            all.extend(report.fired.into_iter().map(|f| (f.periodic_id, f.due_at)));
        }
    }
    let fired = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), fired, "a due time fired twice");
    assert_eq!(
        env.db.count("SELECT count(*) FROM tasks").await,
        fired as i64
    );
    assert_eq!(
        env.db
            .count("SELECT sum(total_run_count) FROM periodic_tasks")
            .await,
        fired as i64
    );
    // Every tick's due time fired (by one or the other), none skipped.
    assert_eq!(fired, 5 * ticks as usize);
    env.cleanup().await;
}

#[tokio::test]
async fn one_leader_at_a_time_and_a_standby_takes_over_on_release() {
    let env = Env::new().await;
    let a = LeaderLock::new(&env.db.url, LEADER_LOCK_KEY);
    let b = LeaderLock::new(&env.db.url, LEADER_LOCK_KEY);
    assert!(a.ensure().await);
    assert!(!b.ensure().await, "the lock is taken");
    assert!(a.ensure().await, "the leader keeps it");
    a.release().await;
    assert!(b.ensure().await, "the standby takes over");
    assert!(!a.ensure().await);
    // The leader's session dies (as when its process is killed): Postgres frees the lock.
    env.db
        .db
        .run(|c| {
            use diesel::RunQueryDsl;
            diesel::sql_query(
                "SELECT pg_terminate_backend(pid) FROM pg_locks \
                 WHERE locktype = 'advisory' AND granted AND database = \
                 (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .execute(c)?;
            Ok(())
        })
        .await
        .unwrap();
    test_support::eventually(
        "the standby to take over",
        Duration::from_secs(10),
        || async { a.ensure().await.then_some(()) },
    )
    .await;
    assert!(
        !b.ensure().await,
        "the old leader noticed it lost its session"
    );
    a.release().await;
    env.cleanup().await;
}

/// Stores an entry and its analysis task as the API does, without publishing.
async fn stored_entry(env: &Env) -> (Uuid, i64) {
    let task_id = Uuid::new_v4();
    let ids = env
        .db
        .db
        .run(move |c| {
            db::entries::insert_with_tasks(
                c,
                &[NewTask {
                    id: task_id,
                    task_name: tasks::ANALYZE_LOG_ENTRY.into(),
                    queue: "analysis".into(),
                    args: json!({}),
                }],
                &[NewLogEntry {
                    logged_at: Utc::now(),
                    severity: "ERROR".into(),
                    message: "disk full on /var".into(),
                    source: None,
                }],
                &[task_id],
            )
        })
        .await
        .expect("storing an entry");
    (task_id, ids[0])
}

#[tokio::test]
async fn the_relay_publishes_what_the_broker_missed_after_the_grace_period() {
    let env = Env::new().await;
    let (task_id, entry_id) = stored_entry(&env).await;
    let s = env.scheduler(&test_support::amqp_url());
    let now = Utc::now();

    let report = s.relay(now).await.unwrap();
    assert_eq!(report.published, 0, "a just-stored task is left to the API");
    let report = s.relay(now + secs(11)).await.unwrap();
    assert_eq!(report.published, 1);
    let task = env
        .db
        .db
        .run(move |c| db::tasks::get(c, task_id))
        .await
        .unwrap()
        .unwrap();
    assert!(task.published_at.is_some());
    assert_eq!(task.publish_attempts, 1);
    let messages = env.drain("analysis").await;
    match messages.as_slice() {
        [Task::AnalyzeLogEntry(m)] => {
            assert_eq!(m.task_id, task_id.to_string());
            assert_eq!(m.log_entry_id, entry_id);
        }
        other => panic!("expected one analyze message, got {other:?}"),
    }
    // Published and not yet stuck: left alone.
    assert_eq!(s.relay(now + secs(60)).await.unwrap().published, 0);
    // Published but never started for longer than the timeout, and its queue is empty
    // (drained above: the broker lost it): published again.
    assert_eq!(s.relay(now + secs(11 * 60)).await.unwrap().published, 1);
    // Stuck again, but its message is waiting in the queue (a backlog, not a loss): not
    // published a third time.
    assert_eq!(s.relay(now + secs(22 * 60)).await.unwrap().published, 0);
    assert_eq!(env.drain("analysis").await.len(), 1, "one copy, not two");
    env.cleanup().await;
}

#[tokio::test]
async fn a_fired_task_whose_publish_failed_is_relayed_and_attempts_are_capped() {
    let env = Env::new().await;
    let now = Utc::now();
    env.add(
        "patterns",
        tasks::DETECT_ANOMALY_PATTERNS,
        json!([24]),
        ("interval", "1 hours"),
        Some(now),
    )
    .await;
    let down = env.scheduler(DEAD_BROKER);
    assert_eq!(down.fire(now).await.unwrap().fired.len(), 1);
    let stuck = env
        .db
        .count("SELECT count(*) FROM tasks WHERE published_at IS NULL AND publish_error IS NOT NULL AND status = 'PENDING'")
        .await;
    assert_eq!(stuck, 1, "fired, stored, not published");
    // The relay with the broker still down counts an attempt per pass, spaced out.
    let r = down.relay(now + secs(11)).await.unwrap();
    assert_eq!((r.published, r.failed), (0, 1));
    assert_eq!(
        down.relay(now + secs(12)).await.unwrap().failed,
        0,
        "spacing between attempts"
    );
    // The broker is back.
    let up = env.scheduler(&test_support::amqp_url());
    assert_eq!(up.relay(now + secs(40)).await.unwrap().published, 1);
    assert_eq!(env.drain("analysis").await.len(), 1);

    // A task that used up its attempts is failed with a reason, not retried forever.
    env.db
        .db
        .run(|c| {
            use diesel::RunQueryDsl;
            diesel::sql_query("UPDATE tasks SET published_at = NULL, publish_attempts = 10")
                .execute(c)?;
            Ok(())
        })
        .await
        .unwrap();
    let r = up.relay(now + secs(120)).await.unwrap();
    assert_eq!((r.published, r.given_up), (0, 1));
    assert_eq!(
        env.db
            .count("SELECT count(*) FROM tasks WHERE status = 'FAILURE' AND error LIKE 'not delivered%'")
            .await,
        1
    );
    env.cleanup().await;
}

#[tokio::test]
async fn a_task_the_broker_confirmed_is_never_failed_by_the_relay() {
    // A worker outage or backlog longer than the relay's patience: the task was
    // confirmed published long ago, never started, and has used up its attempts.
    let env = Env::new().await;
    let (task_id, _) = stored_entry(&env).await;
    let s = env.scheduler(&test_support::amqp_url());
    let now = Utc::now();
    assert_eq!(s.relay(now + secs(11)).await.unwrap().published, 1);
    env.db
        .db
        .run(|c| {
            use diesel::RunQueryDsl;
            diesel::sql_query("UPDATE tasks SET publish_attempts = 10").execute(c)?;
            Ok(())
        })
        .await
        .unwrap();
    let r = s.relay(now + secs(3 * 3600)).await.unwrap();
    assert_eq!(
        (r.published, r.given_up),
        (0, 0),
        "neither re-published nor failed"
    );
    let task = env
        .db
        .db
        .run(move |c| db::tasks::get(c, task_id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        task.status, "PENDING",
        "still waiting for a worker: {task:?}"
    );
    assert_eq!(
        env.drain("analysis").await.len(),
        1,
        "the one confirmed message"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn a_task_whose_entries_are_gone_is_failed_not_published() {
    let env = Env::new().await;
    let (task_id, _) = stored_entry(&env).await;
    env.db
        .db
        .run(|c| {
            use diesel::RunQueryDsl;
            diesel::sql_query("DELETE FROM log_entries").execute(c)?;
            Ok(())
        })
        .await
        .unwrap();
    let s = env.scheduler(&test_support::amqp_url());
    let r = s.relay(Utc::now() + secs(11)).await.unwrap();
    assert_eq!((r.published, r.given_up), (0, 1));
    let task = env
        .db
        .db
        .run(move |c| db::tasks::get(c, task_id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(task.status, "FAILURE");
    assert!(task.error.unwrap_or_default().contains("no longer exists"));
    env.cleanup().await;
}

/// The leader keeps the planner's statistics current when many rows changed (autovacuum
/// never analyses the partitioned `log_entries` parent, and may be off): a table with
/// enough changed rows is analysed, one with few is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_planner_statistics_are_refreshed() {
    let env = Env::new().await;
    let scheduler = env.scheduler(DEAD_BROKER);
    let analysed_at = |table: &'static str| {
        let db = env.db.db.clone();
        async move {
            db.run(move |c| {
                use diesel::RunQueryDsl;
                #[derive(diesel::QueryableByName)]
                struct A {
                    #[diesel(sql_type = diesel::sql_types::Bool)]
                    analysed: bool,
                }
                let rows: Vec<A> = diesel::sql_query(format!(
                    "SELECT last_analyze IS NOT NULL AS analysed FROM pg_stat_user_tables WHERE relname = '{table}'"
                ))
                .load(c)?;
                Ok(rows.first().is_some_and(|r| r.analysed))
            })
            .await
            .expect("reading pg_stat_user_tables")
        }
    };
    env.db
        .db
        .run(|c| {
            use diesel::RunQueryDsl;
            diesel::sql_query(
                "INSERT INTO tasks (id, task_name, queue, args) \
                 SELECT gen_random_uuid(), 'logs.tasks.analyze_log_entry', 'analysis', '{}'::jsonb \
                 FROM generate_series(1, 12000)",
            )
            .execute(c)?;
            Ok(())
        })
        .await
        .expect("inserting tasks");
    // The statistics collector reports changes asynchronously.
    let mut analysed = false;
    for _ in 0..50 {
        scheduler.refresh_statistics().await;
        if analysed_at("tasks").await {
            analysed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        analysed,
        "12 000 new task rows get the tasks table analysed"
    );
    assert!(
        !analysed_at("templates").await,
        "an unchanged table is left alone"
    );
}
