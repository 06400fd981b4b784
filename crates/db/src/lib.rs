//! Postgres storage for logcanary: the diesel schema, models and every query the
//! services run, behind async functions.
//!
//! Diesel is synchronous, so every call checks a connection out of an r2d2 pool and runs
//! the whole unit of work (often one transaction) inside `spawn_blocking`: the async
//! runtime never blocks on the database. This crate knows nothing about HTTP, the broker
//! or scoring.

pub mod alerts;
pub mod api_keys;
pub mod dashboard;
pub mod entries;
pub mod migrate;
pub mod models;
pub mod patterns;
pub mod periodic;
pub mod relay;
pub mod retention;
pub mod schema;
pub mod signatures;
pub mod stats;
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
    r2d2::{ConnectionManager, Pool, PooledConnection},
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
        let manager = ConnectionManager::<PgConnection>::new(url);
        let pool = Pool::builder()
            .max_size(max_size)
            .min_idle(Some(0))
            .connection_timeout(Duration::from_secs(5))
            .test_on_check_out(false)
            .build_unchecked(manager);
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
            use diesel::RunQueryDsl;
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

/// The database clock (the real time, not the transaction start) as a nullable
/// timestamptz, for `started_at`, `finished_at` and the like,
/// so that every timestamp of a task comes from one clock.
pub(crate) fn db_now(
) -> diesel::expression::SqlLiteral<diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>> {
    diesel::dsl::sql("clock_timestamp()")
}
