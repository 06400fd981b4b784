//! Migrations against the real Postgres: concurrent runs (two replicas, a Job and a
//! developer) serialise on the advisory lock and leave one correct schema.

use diesel::{Connection, PgConnection, RunQueryDsl};

fn server() -> String {
    std::env::var("TEST_DATABASE_SERVER")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

#[test]
fn concurrent_migrations_apply_once() {
    let name = format!("logcanary_migrate_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::establish(&format!("{}/postgres", server())).expect("postgres");
    diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .unwrap();
    let url = format!("{}/{name}", server());
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
    diesel::sql_query(format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .execute(&mut admin)
        .unwrap();
}
