//! Postgres storage for logcanary: the diesel schema, models and every query the
//! services run, behind async functions.
//!
//! Diesel is synchronous, so every call checks a connection out of an r2d2 pool and runs
//! the whole unit of work (often one transaction) inside `spawn_blocking`: the async
//! runtime never blocks on the database. This crate knows nothing about HTTP, the broker
//! or scoring.

pub mod alerts;
pub mod api_keys;
pub mod api_tokens;
pub mod dashboard;
pub mod entries;
pub mod incidents;
pub mod migrate;
pub mod models;
pub mod patterns;
pub mod periodic;
pub mod relay;
pub mod retention;
pub mod schema;
pub mod signatures;
pub mod source_levels;
pub mod stats;
pub mod stream_births;
pub mod tasks;
pub mod templates;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use diesel::{
    pg::PgConnection,
    r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection},
    RunQueryDsl,
};

pub use migrate::migrate;

/// Errors from the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had from the pool (database down or pool exhausted).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("database task panicked or was cancelled")]
    Join,
}

impl DbError {
    /// True for failures that may succeed on a later attempt (connection lost, pool
    /// exhausted, serialization failure, deadlock, lock or statement time-out).
    pub fn is_transient(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            DbError::Unavailable(_) | DbError::Join => true,
            DbError::Query(Error::DatabaseError(kind, info)) => {
                matches!(
                    kind,
                    DatabaseErrorKind::SerializationFailure | DatabaseErrorKind::ClosedConnection
                ) || (matches!(kind, DatabaseErrorKind::Unknown)
                    && is_transient_message(info.message()))
            }
            DbError::Query(Error::BrokenTransactionManager) => true,
            _ => false,
        }
    }

    /// True when Postgres cancelled the statement because it ran past the connection's
    /// `statement_timeout` (SQLSTATE 57014; see [`Db::connect_lazy_with`]). Transient too:
    /// the same query may finish in time when the database is less busy.
    pub fn is_statement_timeout(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        matches!(
            self,
            DbError::Query(Error::DatabaseError(DatabaseErrorKind::Unknown, info))
                if info.message().contains("canceling statement due to statement timeout")
        )
    }
}

/// Server errors diesel reports as `Unknown` that a retry can clear: deadlock (SQLSTATE
/// 40P01), lock not available (55P03, `lock_timeout`), query cancelled (57014, a
/// `statement_timeout`), admin shutdown / crash recovery (57P01-57P03). diesel does not
/// expose the SQLSTATE, so these are told by Postgres' message text (`lc_messages` is
/// English unless an administrator changed it).
fn is_transient_message(message: &str) -> bool {
    const TRANSIENT: [&str; 6] = [
        "deadlock detected",
        "could not obtain lock",
        "canceling statement due to lock timeout",
        "canceling statement due to statement timeout",
        "terminating connection due to administrator command",
        "the database system is",
    ];
    TRANSIENT.iter().any(|m| message.contains(m))
}

pub type Conn = PooledConnection<ConnectionManager<PgConnection>>;

/// A cheap-to-clone handle on the connection pool.
#[derive(Clone)]
pub struct Db {
    pool: Pool<ConnectionManager<PgConnection>>,
    /// Set once [`Db::ping`] found every migration of this binary applied (a schema does
    /// not go back, so it is not checked again).
    schema_current: Arc<AtomicBool>,
}

impl Db {
    /// Builds the pool without waiting for the database: connections are opened on
    /// demand, so a service can start (and report not-ready) while Postgres is down.
    pub fn connect_lazy(url: &str, max_size: u32) -> Result<Self, DbError> {
        Self::connect_lazy_with(url, max_size, None)
    }

    /// [`Db::connect_lazy`] whose connections run every statement under
    /// `statement_timeout` (`SET statement_timeout` when a connection is opened; `None` or
    /// zero: the server's default, normally none). A statement still running after it,
    /// waiting for a lock included, is cancelled by Postgres and fails with a
    /// [`DbError`] for which [`DbError::is_statement_timeout`] (and `is_transient`) holds.
    /// A pool of its own with a short time-out keeps slow reads from holding the
    /// connections the writes need.
    pub fn connect_lazy_with(
        url: &str,
        max_size: u32,
        statement_timeout: Option<Duration>,
    ) -> Result<Self, DbError> {
        let manager = ConnectionManager::<PgConnection>::new(url);
        let mut builder = Pool::builder()
            .max_size(max_size)
            .min_idle(Some(0))
            .connection_timeout(Duration::from_secs(5))
            .test_on_check_out(false);
        if let Some(timeout) = statement_timeout.filter(|t| !t.is_zero()) {
            builder = builder.connection_customizer(Box::new(StatementTimeout(timeout)));
        }
        let pool = builder.build_unchecked(manager);
        Ok(Self {
            pool,
            schema_current: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Runs `f` with a pooled connection on the blocking thread pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut PgConnection) -> Result<T, DbError> + Send + 'static,
    {
        self.run_as(f).await
    }

    /// [`Db::run`] for work with an error type of its own (a task's error enum that has a
    /// database variant); pool and join failures arrive as that type's `From<DbError>`.
    pub async fn run_as<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&mut PgConnection) -> Result<T, E> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool
                .get()
                .map_err(|e| E::from(DbError::Unavailable(e.to_string())))?;
            f(&mut conn)
        })
        .await
        .map_err(|_| E::from(DbError::Join))?
    }

    /// Readiness: can we get a connection and run a trivial query, and has the database
    /// every migration this binary was built with? A pod of a new release is not ready
    /// until the `migrate` Job has run, so a rollout waits for it. Also refreshes the pool
    /// gauges, so every binary's readiness probe keeps them current.
    pub async fn ping(&self) -> Result<(), DbError> {
        let (open, idle) = self.pool_state();
        metrics::gauge!("logcanary_db_pool_connections").set(f64::from(open));
        metrics::gauge!("logcanary_db_pool_idle_connections").set(f64::from(idle));
        let schema_current = Arc::clone(&self.schema_current);
        self.run(move |conn| {
            diesel::sql_query("SELECT 1").execute(conn)?;
            if !schema_current.load(Ordering::Relaxed) {
                let missing = migrate::missing(conn)?;
                if !missing.is_empty() {
                    return Err(DbError::Unavailable(format!(
                        "schema not migrated: {} migration(s) pending ({}); run `ingest-api migrate` (the migrate Job)",
                        missing.len(),
                        missing.join(", ")
                    )));
                }
                schema_current.store(true, Ordering::Relaxed);
            }
            Ok(())
        })
        .await
    }

    /// Pool gauges for metrics: (connections open, idle).
    pub fn pool_state(&self) -> (u32, u32) {
        let s = self.pool.state();
        (s.connections, s.idle_connections)
    }
}

/// Sets `statement_timeout` on every connection the pool opens.
#[derive(Debug)]
struct StatementTimeout(Duration);

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for StatementTimeout {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        // A whole number of milliseconds, at least 1 (0 would mean no limit).
        let millis = self.0.as_millis().clamp(1, i32::MAX as u128);
        diesel::sql_query(format!("SET statement_timeout = {millis}"))
            .execute(conn)
            .map(drop)
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// The database clock (the real time, not the transaction start) as a nullable
/// timestamptz, for `started_at`, `finished_at` and the like,
/// so that every timestamp of a task comes from one clock.
pub(crate) fn db_now(
) -> diesel::expression::SqlLiteral<diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>> {
    diesel::dsl::sql("clock_timestamp()")
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// The server's maintenance database: these tests create no tables. Without TLS on
    /// the default loopback server, as `test_support::database_url` explains.
    fn server_db() -> String {
        std::env::var("TEST_DATABASE_SERVER").map_or_else(
            |_| "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable".into(),
            |server| format!("{server}/postgres"),
        )
    }

    #[tokio::test]
    async fn a_statement_past_the_pools_timeout_is_cancelled_as_a_transient_timeout() {
        let db =
            Db::connect_lazy_with(&server_db(), 1, Some(Duration::from_millis(100))).expect("pool");
        let started = Instant::now();
        let err = db
            .run(|c| {
                diesel::sql_query("SELECT pg_sleep(5)").execute(c)?;
                Ok(())
            })
            .await
            .expect_err("pg_sleep(5) outlives a 100 ms statement_timeout");
        assert!(started.elapsed() < Duration::from_secs(3), "not cancelled");
        assert!(err.is_statement_timeout(), "{err}");
        assert!(err.is_transient(), "{err}");
        // The connection stays usable, time-out included, for the next statement.
        let shown: String = db
            .run(|c| {
                #[derive(diesel::QueryableByName)]
                struct Setting {
                    #[diesel(sql_type = diesel::sql_types::Text)]
                    statement_timeout: String,
                }
                let row: Setting = diesel::sql_query("SHOW statement_timeout").get_result(c)?;
                Ok(row.statement_timeout)
            })
            .await
            .expect("SHOW");
        assert_eq!(shown, "100ms");
    }

    #[tokio::test]
    async fn without_a_timeout_the_servers_default_holds() {
        let db = Db::connect_lazy_with(&server_db(), 1, None).expect("pool");
        db.run(|c| {
            diesel::sql_query("SELECT pg_sleep(0.3)").execute(c)?;
            Ok(())
        })
        .await
        .expect("no time-out set");
        let other = DbError::Unavailable("pool exhausted".into());
        assert!(!other.is_statement_timeout());
    }
}
