//! Leadership through a Postgres session-level advisory lock.
//!
//! The lock lives as long as the session that took it, on a connection of its own (not
//! from the pool, where it would be handed to other queries). Every tick the holder
//! checks that its session is alive; if the connection broke, Postgres has released the
//! lock and the holder steps down. A standby tries the lock every tick, so it takes over
//! within a tick of the leader's session ending: at once on a clean shutdown (explicit
//! unlock), or when Postgres notices a dead leader's connection is gone.

use std::sync::{Arc, Mutex};

use diesel::{pg::PgConnection, sql_types::Bool, Connection, QueryableByName, RunQueryDsl};

/// Advisory lock key of the scheduler leader ("lcsched" in ASCII); per database.
pub const LEADER_LOCK_KEY: i64 = 0x006c_6373_6368_6564;

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

#[derive(Default)]
struct State {
    conn: Option<PgConnection>,
    leader: bool,
}

/// The leader lock of one scheduler process. Cheap to clone.
#[derive(Clone)]
pub struct LeaderLock {
    url: String,
    key: i64,
    state: Arc<Mutex<State>>,
}

impl LeaderLock {
    pub fn new(database_url: &str, key: i64) -> Self {
        Self {
            url: database_url.to_owned(),
            key,
            state: Arc::default(),
        }
    }

    /// Takes leadership if free, or confirms this process still holds it. Never waits
    /// for the lock; on any database error the answer is "not leader" (and the session
    /// is dropped, which releases the lock if it was held).
    pub async fn ensure(&self) -> bool {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.ensure_blocking())
            .await
            .unwrap_or(false)
    }

    fn ensure_blocking(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.conn.is_none() {
            match PgConnection::establish(&self.url) {
                Ok(conn) => state.conn = Some(conn),
                Err(error) => {
                    tracing::debug!(%error, "Cannot connect for the leader lock.");
                    state.leader = false;
                    return false;
                }
            }
        }
        let was_leader = state.leader;
        let Some(conn) = state.conn.as_mut() else {
            return false;
        };
        let result = if was_leader {
            diesel::sql_query("SELECT true AS locked").get_result::<Locked>(conn)
        } else {
            diesel::sql_query(format!(
                "SELECT pg_try_advisory_lock({}) AS locked",
                self.key
            ))
            .get_result::<Locked>(conn)
        };
        match result {
            Ok(Locked { locked }) => {
                if locked && !state.leader {
                    tracing::info!(
                        "Leadership taken: this scheduler fires periodic tasks and relays."
                    );
                }
                state.leader = locked;
            }
            Err(error) => {
                if state.leader {
                    tracing::warn!(%error, "Lost the leader lock's session; stepping down.");
                }
                state.conn = None;
                state.leader = false;
            }
        }
        state.leader
    }

    /// Releases leadership (if held) and closes the lock's session, so a standby takes
    /// over at its next tick.
    pub async fn release(&self) {
        let this = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut state = this.state.lock().unwrap_or_else(|p| p.into_inner());
            if let (true, Some(conn)) = (state.leader, state.conn.as_mut()) {
                let _ = diesel::sql_query(format!("SELECT pg_advisory_unlock({})", this.key))
                    .execute(conn);
                tracing::info!("Leadership released.");
            }
            state.leader = false;
            state.conn = None;
        })
        .await;
    }

    /// Whether the last check found this process the leader.
    pub fn is_leader(&self) -> bool {
        self.state.lock().map(|s| s.leader).unwrap_or(false)
    }
}
