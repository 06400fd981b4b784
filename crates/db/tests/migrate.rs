//! Migrations against the real Postgres: concurrent runs (two replicas, a Job and a
//! developer) serialise on the advisory lock and leave one correct schema.

use diesel::{Connection, PgConnection, RunQueryDsl};

/// Database `name` on the test server; without TLS on the default loopback server, as
/// `test_support::database_url` explains (this crate's tests cannot use test-support).
fn database_url(name: &str) -> String {
    std::env::var("TEST_DATABASE_SERVER").map_or_else(
        |_| format!("postgres://postgres@127.0.0.1:5432/{name}?sslmode=disable"),
        |server| format!("{server}/{name}"),
    )
}

/// An empty database of the test's own, dropped when the value is (a failing test too).
struct ScratchDb {
    admin: PgConnection,
    name: String,
    url: String,
}

impl ScratchDb {
    fn new(tag: &str) -> Self {
        let name = format!("logcanary_{tag}_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::establish(&database_url("postgres")).expect("postgres");
        diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .unwrap();
        let url = database_url(&name);
        Self { admin, name, url }
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let _ = diesel::sql_query(format!("DROP DATABASE \"{}\" WITH (FORCE)", self.name))
            .execute(&mut self.admin);
    }
}

#[test]
fn concurrent_migrations_apply_once() {
    let scratch = ScratchDb::new("migrate");
    let url = scratch.url.clone();
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || logcanary_db::migrate(&url))
        })
        .collect();
    let applied: Vec<usize> = runs
        .into_iter()
        .map(|h| h.join().unwrap().expect("migrate").len())
        .collect();
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().is_dir()))
        .count();
    assert_eq!(
        applied.iter().sum::<usize>(),
        migrations,
        "each migration applied exactly once: {applied:?}"
    );
    // Daily partitions exist around today, and the seeded schedules are there once.
    let mut conn = PgConnection::establish(&url).unwrap();
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let partitions: Vec<N> = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_inherits WHERE inhparent = 'log_entries'::regclass",
    )
    .load(&mut conn)
    .unwrap();
    assert!(
        partitions[0].n >= 8,
        "default + daily partitions, got {}",
        partitions[0].n
    );
    let seeded: Vec<N> = diesel::sql_query("SELECT count(*) AS n FROM periodic_tasks")
        .load(&mut conn)
        .unwrap();
    assert_eq!(seeded[0].n, 2);
    drop(conn);
    drop(scratch);
}

/// Readiness (`Db::ping`) refuses a database that lacks this binary's migrations, naming
/// them, and passes once `migrate` has run: a new release's pods wait for the Job.
#[test]
fn ping_is_not_ready_until_every_migration_is_applied() {
    let scratch = ScratchDb::new("ping");
    let url = scratch.url.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = logcanary_db::Db::connect_lazy(&url, 2).unwrap();

    let never = runtime
        .block_on(db.ping())
        .expect_err("an empty database is not ready");
    let text = never.to_string();
    assert!(text.contains("schema not migrated"), "{text}");
    assert!(
        text.contains("20261124000001"),
        "names the first migration: {text}"
    );

    // Applied but one short: the last migration is still named.
    logcanary_db::migrate(&url).expect("migrate");
    let mut conn = PgConnection::establish(&url).unwrap();
    for sql in [
        "CREATE TABLE forgotten AS SELECT * FROM __diesel_schema_migrations \
         WHERE version = (SELECT max(version) FROM __diesel_schema_migrations)",
        "DELETE FROM __diesel_schema_migrations WHERE version IN (SELECT version FROM forgotten)",
    ] {
        diesel::sql_query(sql).execute(&mut conn).unwrap();
    }
    let short = runtime
        .block_on(db.ping())
        .expect_err("one migration short");
    assert!(
        short.to_string().contains("1 migration(s) pending"),
        "{short}"
    );

    diesel::sql_query("INSERT INTO __diesel_schema_migrations SELECT * FROM forgotten")
        .execute(&mut conn)
        .unwrap();
    runtime.block_on(db.ping()).expect("ready once migrated");
    drop(conn);
    drop(db);
    drop(scratch);
}

/// `used_signatures`: a MAC is new once, duplicates in one batch and later batches are
/// not, and expired rows are deleted in bounded steps.
#[test]
fn used_signatures_are_claimed_once_and_expire() {
    use logcanary_db::signatures::{claim, delete_expired};

    let scratch = ScratchDb::new("sigs");
    let url = scratch.url.clone();
    logcanary_db::migrate(&url).expect("migrate");
    let mut conn = PgConnection::establish(&url).unwrap();

    let now = chrono::Utc::now();
    let old = now - chrono::Duration::minutes(10);
    let later = now + chrono::Duration::minutes(5);
    let first = claim(
        &mut conn,
        &[
            (vec![1; 32], later),
            (vec![2; 32], old),
            (vec![3; 32], old),
            (vec![1; 32], later),
        ],
    )
    .unwrap();
    let mut first_sorted = first.clone();
    first_sorted.sort();
    assert_eq!(first_sorted, vec![vec![1; 32], vec![2; 32], vec![3; 32]]);
    let again = claim(&mut conn, &[(vec![1; 32], later), (vec![4; 32], later)]).unwrap();
    assert_eq!(again, vec![vec![4; 32]], "a used MAC is not new again");

    assert_eq!(delete_expired(&mut conn, now, 1).unwrap(), 1, "bounded");
    assert_eq!(delete_expired(&mut conn, now, 100).unwrap(), 1);
    assert_eq!(delete_expired(&mut conn, now, 100).unwrap(), 0);
    // Unexpired ones stay, and stay used.
    assert!(claim(&mut conn, &[(vec![4; 32], later)])
        .unwrap()
        .is_empty());
    // Many expired rows go in one pass of several short statements.
    let many: Vec<(Vec<u8>, chrono::DateTime<chrono::Utc>)> =
        (0..25u8).map(|i| (vec![100 + i; 32], old)).collect();
    assert_eq!(claim(&mut conn, &many).unwrap().len(), 25);
    assert_eq!(
        logcanary_db::signatures::delete_all_expired(&mut conn, now, 10, 100).unwrap(),
        25,
        "in 3 statements"
    );
    assert_eq!(delete_expired(&mut conn, now, 100).unwrap(), 0);
    drop(conn);
    drop(scratch);
}

/// A template's presence tally (`windows`, `max_window_lines`, `episodes`, ...): each
/// upsert is handed the row's tally before its batch (none for a new row) and stores the
/// tally it returns, while counts add up; rows written before the tally columns have
/// none.
#[test]
fn template_presence_is_counted_on_from_the_stored_tally() {
    use logcanary_db::templates::{changed_since, upsert, StoredPresence, TemplateDelta};

    let scratch = ScratchDb::new("presence");
    let url = scratch.url.clone();
    logcanary_db::migrate(&url).expect("migrate");
    let mut conn = PgConnection::establish(&url).unwrap();

    let t0 = chrono::DateTime::from_timestamp(1_767_225_600, 0).unwrap();
    let minutes = |m: i64| t0 + chrono::Duration::minutes(m);
    let delta = |count: i64, first: i64, last: i64| TemplateDelta {
        key: "k1".into(),
        template: "job <*> done".into(),
        count,
        first_seen: minutes(first),
        last_seen: minutes(last),
        embedding: None,
        new_after_warmup: true,
        novelty: 0.25,
        born_settled: 0.5,
    };
    let mut seen = Vec::new();
    // A new row: no tally before.
    upsert(&mut conn, &[delta(3, 0, 20)], |d, before| {
        seen.push((d.key.clone(), before));
        StoredPresence {
            lines: 3,
            first_seen: None,
            last_seen: Some(minutes(20)),
            windows: 3,
            window: Some(2),
            window_lines: 1,
            max_window_lines: 1,
            episodes: 3,
            level_episodes: 0,
            level_last_seen: None,
            window_bits: 0b111,
            arrivals: vec![0, 0, 600_000, 600_000, 1_200_000, 1_200_000],
            level_arrivals: Vec::new(),
        }
    })
    .unwrap();
    assert_eq!(seen, vec![("k1".to_owned(), None)]);
    // Another replica's batch is handed that tally, its last line and its line count.
    upsert(&mut conn, &[delta(2, 25, 26)], |_, before| {
        let before = before.expect("the row's tally");
        assert_eq!(
            (
                before.lines,
                before.last_seen,
                before.windows,
                before.window
            ),
            (3, Some(minutes(20)), 3, Some(2))
        );
        StoredPresence {
            lines: 5,
            last_seen: Some(minutes(26)),
            window_lines: 3,
            max_window_lines: 3,
            episodes: 4,
            level_episodes: 1,
            level_last_seen: Some(minutes(26)),
            level_arrivals: vec![1_560_000, 1_560_000],
            ..before
        }
    })
    .unwrap();
    let (rows, _) = changed_since(&mut conn, None).unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(
        (
            r.count,
            r.windows,
            r.max_window_lines,
            r.episodes,
            r.level_episodes
        ),
        (5, 3, 3, 4, 1)
    );
    assert_eq!((r.presence_window, r.window_lines), (Some(2), 3));
    assert_eq!((r.first_seen, r.last_seen), (minutes(0), minutes(26)));
    assert_eq!(r.level_last_seen, Some(minutes(26)));
    assert_eq!(
        (r.window_bits, r.level_arrivals.clone()),
        (0b111, vec![1_560_000, 1_560_000])
    );
    assert_eq!(r.arrivals.len(), 6);
    // How it was first seen is the first writer's.
    assert!(r.new_after_warmup);
    assert!((r.novelty - 0.25).abs() < 1e-6);
    assert!(
        (r.born_settled - 0.5).abs() < 1e-6,
        "how settled the stream was is stored with a new row"
    );

    diesel::sql_query(
        "INSERT INTO templates (template_key, template, count) VALUES ('old', 'old', 7)",
    )
    .execute(&mut conn)
    .unwrap();
    let (rows, _) = changed_since(&mut conn, None).unwrap();
    let old = rows.iter().find(|r| r.template_key == "old").unwrap();
    assert_eq!(
        (
            old.windows,
            old.max_window_lines,
            old.episodes,
            old.level_episodes,
            old.presence_window,
            old.new_after_warmup
        ),
        (0, 0, 0, 0, None, false)
    );
    drop(conn);
    drop(scratch);
}

/// Two transactions locking the same rows in opposite orders: Postgres aborts one with
/// "deadlock detected" (40P01), and that error must be retryable, never a permanent
/// failure that dead-letters the work.
#[test]
fn a_deadlock_is_a_transient_error() {
    let scratch = ScratchDb::new("deadlock");
    let url = scratch.url.clone();
    let mut setup = PgConnection::establish(&url).unwrap();
    diesel::sql_query("CREATE TABLE t (id int PRIMARY KEY, v int)")
        .execute(&mut setup)
        .unwrap();
    diesel::sql_query("INSERT INTO t VALUES (1, 0), (2, 0)")
        .execute(&mut setup)
        .unwrap();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let run = |first: i32, second: i32| {
        let (url, barrier) = (url.clone(), barrier.clone());
        std::thread::spawn(move || {
            let mut conn = PgConnection::establish(&url).unwrap();
            conn.transaction::<_, diesel::result::Error, _>(|c| {
                diesel::sql_query(format!("UPDATE t SET v = v + 1 WHERE id = {first}"))
                    .execute(c)?;
                barrier.wait();
                diesel::sql_query(format!("UPDATE t SET v = v + 1 WHERE id = {second}"))
                    .execute(c)?;
                Ok(())
            })
            .map_err(logcanary_db::DbError::from)
        })
    };
    let (a, b) = (run(1, 2), run(2, 1));
    let results = [a.join().unwrap(), b.join().unwrap()];
    let errors: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(
        errors.len(),
        1,
        "exactly one side is chosen as the victim: {results:?}"
    );
    assert!(
        errors[0].to_string().contains("deadlock detected"),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].is_transient(),
        "a deadlock must be retried: {}",
        errors[0]
    );
    drop(setup);
    drop(scratch);
}

/// A commit group of 20 000 single-entry requests (20 000 task rows, 80 000 bound
/// parameters if sent as one VALUES list) is stored whole, in one transaction.
#[test]
fn a_commit_group_larger_than_the_bound_parameter_limit_is_stored() {
    use logcanary_db::models::{NewLogEntry, NewTask};

    let scratch = ScratchDb::new("group");
    let url = scratch.url.clone();
    logcanary_db::migrate(&url).expect("migrate");
    let mut conn = PgConnection::establish(&url).unwrap();
    let n = 20_000;
    let task_ids: Vec<uuid::Uuid> = (0..n).map(|_| uuid::Uuid::new_v4()).collect();
    let tasks: Vec<NewTask> = task_ids
        .iter()
        .map(|id| NewTask {
            id: *id,
            task_name: "logs.tasks.analyze_log_entry".into(),
            queue: "analysis".into(),
            args: serde_json::json!({}),
        })
        .collect();
    let entries: Vec<NewLogEntry> = (0..n)
        .map(|i| NewLogEntry {
            logged_at: chrono::Utc::now(),
            severity: "INFO".into(),
            message: format!("request {i} served"),
            source: None,
        })
        .collect();
    let ids = logcanary_db::entries::insert_with_tasks(&mut conn, &tasks, &entries, &task_ids)
        .expect("one group, stored whole");
    assert_eq!(ids.len(), n);
    let mut count = |sql: &str| -> i64 {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        diesel::sql_query(sql).get_result::<N>(&mut conn).unwrap().n
    };
    assert_eq!(count("SELECT count(*) AS n FROM tasks"), n as i64);
    assert_eq!(count("SELECT count(*) AS n FROM log_entries"), n as i64);
    drop(conn);
    drop(scratch);
}

/// The set-based task lifecycle a worker uses for a micro-batch: one decision per task
/// (started, finished before, or unknown), attempts counted once, and every result written
/// by one statement.
#[test]
fn tasks_of_a_batch_start_and_succeed_together() {
    use logcanary_db::{
        models::NewTask,
        tasks::{get, insert, mark_success, mark_success_many, start_many, StartDecision},
    };

    let scratch = ScratchDb::new("start_many");
    let url = scratch.url.clone();
    logcanary_db::migrate(&url).expect("migrate");
    let mut conn = PgConnection::establish(&url).unwrap();
    let task = |id| NewTask {
        id,
        task_name: "logs.tasks.analyze_log_entry".into(),
        queue: "analysis".into(),
        args: serde_json::json!({}),
    };
    let (a, b, done, unknown) = (
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    );
    insert(&mut conn, &[task(a), task(b), task(done)]).unwrap();
    mark_success(&mut conn, done, &serde_json::json!({"earlier": true})).unwrap();

    let decisions = start_many(&mut conn, &[b, done, unknown, a]).unwrap();
    let ids: Vec<_> = decisions.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [b, done, unknown, a], "decisions in the order asked");
    assert!(matches!(&decisions[0].1, StartDecision::Run(t) if t.id == b && t.attempts == 1));
    assert_eq!(
        decisions[1].1,
        StartDecision::AlreadyFinished("SUCCESS".into())
    );
    assert_eq!(decisions[2].1, StartDecision::Unknown);
    assert!(matches!(&decisions[3].1, StartDecision::Run(t) if t.id == a && t.status == "STARTED"));

    mark_success_many(
        &mut conn,
        &[
            (a, serde_json::json!({"n": 1})),
            (b, serde_json::json!({"n": 2})),
        ],
    )
    .unwrap();
    for (id, n) in [(a, 1), (b, 2)] {
        let t = get(&mut conn, id).unwrap().unwrap();
        assert_eq!(t.status, "SUCCESS");
        assert_eq!(t.result, Some(serde_json::json!({"n": n})));
        assert!(t.finished_at.is_some());
    }
    // A finished task is not started again.
    let again = start_many(&mut conn, &[a]).unwrap();
    assert_eq!(again[0].1, StartDecision::AlreadyFinished("SUCCESS".into()));
    drop(conn);
    drop(scratch);
}

/// `2026-12-07-000001_embedding_text`: the model reads a template from its first word, so
/// the stored embeddings of templates that start with values are cleared (the workers
/// embed them again); the others are kept.
#[test]
fn embeddings_of_templates_starting_with_values_are_cleared() {
    let kept = embedded_after_migrating_again(
        "embtext",
        "20261207000001",
        &[
            ("a", "failures on node <HOST>"),
            ("b", "<NUM> failures on node <HOST>"),
            ("c", "- <NUM> <TS> RAS KERNEL INFO parity error"),
            ("d", "<*> started"),
            ("e", "jk2_init() Found child <NUM>"),
            ("f", "<HOST>: open through proxy"),
        ],
    );
    assert_eq!(kept, ["a", "e"]);
}

/// `2026-12-07-000002_embedding_header`: the miner and the model read a line's message, its
/// line header left out, so the stored embeddings of templates with a `<TS>` or a level
/// word among their first 8 words are cleared; the others are kept.
#[test]
fn embeddings_of_templates_with_a_line_header_are_cleared() {
    let kept = embedded_after_migrating_again(
        "embheader",
        "20261207000002",
        &[
            ("a", "Failed password for <*> from <IP>"),
            ("b", "<TS> LabSZ sshd[<NUM>]: Failed password for <*>"),
            (
                "c",
                "<NUM> INFO dfs.FSNamesystem: BLOCK* ask <IP> to delete <ID>",
            ),
            (
                "d",
                "[<TS>] [error] mod_jk child workerEnv in error state <NUM>",
            ),
            // Its level word is past the 8th word: not a header.
            (
                "e",
                "connection refused by peer after eight retries said ERROR",
            ),
        ],
    );
    assert_eq!(kept, ["a", "e"]);
}

/// Stores `templates` (key, text), each with an embedding, in a migrated scratch database,
/// runs migration `version` again on them as an upgrade would, and returns the keys of
/// those that kept their embedding, in order.
fn embedded_after_migrating_again(
    name: &str,
    version: &str,
    templates: &[(&str, &str)],
) -> Vec<String> {
    let scratch = ScratchDb::new(name);
    let url = scratch.url.clone();
    logcanary_db::migrate(&url).expect("migrate");
    let mut conn = PgConnection::establish(&url).unwrap();
    for (key, text) in templates {
        diesel::sql_query(
            "INSERT INTO templates (template_key, template, count, first_seen, last_seen, embedding, updated_at) \
             VALUES ($1, $2, 1, now(), now(), ARRAY[0.5, 0.5]::real[], now())",
        )
        .bind::<diesel::sql_types::Text, _>(key)
        .bind::<diesel::sql_types::Text, _>(text)
        .execute(&mut conn)
        .unwrap();
    }
    diesel::sql_query("DELETE FROM __diesel_schema_migrations WHERE version = $1")
        .bind::<diesel::sql_types::Text, _>(version)
        .execute(&mut conn)
        .unwrap();
    logcanary_db::migrate(&url).expect("migrate again");

    #[derive(diesel::QueryableByName)]
    struct Key {
        #[diesel(sql_type = diesel::sql_types::Text)]
        template_key: String,
    }
    let kept = diesel::sql_query(
        "SELECT template_key FROM templates WHERE embedding IS NOT NULL ORDER BY template_key",
    )
    .load::<Key>(&mut conn)
    .unwrap()
    .into_iter()
    .map(|k| k.template_key)
    .collect();
    drop(conn);
    drop(scratch);
    kept
}

#[test]
fn source_level_counts_add_up_and_load_the_stream_and_the_busiest_sources() {
    use logcanary_db::source_levels::{add, load, SourceLevels, STREAM};

    let scratch = ScratchDb::new("levels");
    let url = scratch.url.clone();
    logcanary_db::migrate(&url).expect("migrate");
    let mut conn = PgConnection::establish(&url).unwrap();
    let counts = |source: &str, lines: i64, trouble: i64| SourceLevels {
        source: source.to_owned(),
        lines,
        trouble,
    };
    assert!(
        load(&mut conn, 10).unwrap().is_empty(),
        "nothing written yet"
    );
    add(&mut conn, &[]).unwrap();
    // Two workers' batches, in either order.
    add(
        &mut conn,
        &[
            counts("hdfs", 40, 4),
            counts(STREAM, 50, 4),
            counts("sshd", 10, 0),
        ],
    )
    .unwrap();
    add(&mut conn, &[counts(STREAM, 30, 1), counts("hdfs", 30, 1)]).unwrap();
    assert_eq!(
        load(&mut conn, 10).unwrap(),
        vec![
            counts(STREAM, 80, 5),
            counts("hdfs", 70, 5),
            counts("sshd", 10, 0)
        ]
    );
    assert_eq!(
        load(&mut conn, 1).unwrap(),
        vec![counts(STREAM, 80, 5), counts("hdfs", 70, 5)],
        "the stream and the busiest source"
    );
    drop(conn);
    drop(scratch);
}

#[test]
fn the_stream_births_count_adds_every_workers_lines_and_keeps_the_latest() {
    use logcanary_db::stream_births::{add, load, StreamBirths};

    let scratch = ScratchDb::new("births");
    let url = scratch.url.clone();
    logcanary_db::migrate(&url).expect("migrate");
    let mut conn = PgConnection::establish(&url).unwrap();
    assert_eq!(
        load(&mut conn).unwrap(),
        StreamBirths::default(),
        "nothing scored yet"
    );
    add(&mut conn, 0, &[], 10).unwrap();
    assert_eq!(load(&mut conn).unwrap(), StreamBirths::default());
    // One worker's 8 lines (births at 1 and 6), another's 5 (a birth at its 3rd line),
    // keeping the births among the latest 10 lines.
    add(&mut conn, 8, &[1, 6], 10).unwrap();
    assert_eq!(
        load(&mut conn).unwrap(),
        StreamBirths {
            lines: 8,
            births: vec![1, 6]
        }
    );
    add(&mut conn, 5, &[2], 10).unwrap();
    assert_eq!(
        load(&mut conn).unwrap(),
        StreamBirths {
            lines: 13,
            births: vec![6, 10]
        },
        "line 1 is no longer among the latest 10"
    );
    // A first add keeps only the latest `horizon` of its own lines too.
    let other = ScratchDb::new("births_first");
    logcanary_db::migrate(&other.url).expect("migrate");
    let mut fresh = PgConnection::establish(&other.url).unwrap();
    add(&mut fresh, 20, &[0, 15], 10).unwrap();
    assert_eq!(
        load(&mut fresh).unwrap(),
        StreamBirths {
            lines: 20,
            births: vec![15]
        }
    );
    drop((conn, fresh));
    drop((scratch, other));
}
