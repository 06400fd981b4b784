//! Schema migrations, embedded in the binary and run by the `migrate` command.

use diesel::{pg::PgConnection, Connection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::DbError;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Advisory lock key, so that two `migrate` runs (two replicas, a Job and a developer)
/// never apply the same migration concurrently.
const MIGRATION_LOCK: i64 = 0x6c6f_6763_616e_6172; // "logcanar"

/// Days of `log_entries` partitions kept ready ahead of today.
pub const PARTITION_DAYS_AHEAD: i32 = 7;

/// Applies pending migrations under an advisory lock and makes sure the daily partitions
/// of `log_entries` exist from yesterday to a week ahead. Returns the migrations applied.
/// Blocking: call from a blocking context.
pub fn migrate(database_url: &str) -> Result<Vec<String>, DbError> {
    let mut conn = PgConnection::establish(database_url).map_err(|e| {
        DbError::Unavailable(format!(
            "cannot connect ({e}); is Postgres up and the database created? `make setup` does both"
        ))
    })?;
    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})")).execute(&mut conn)?;
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|versions| versions.iter().map(|v| v.to_string()).collect::<Vec<_>>())
        .map_err(|e| DbError::Migration(e.to_string()));
    let partitions = applied.as_ref().ok().map(|_| ensure_partitions(&mut conn));
    diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})")).execute(&mut conn)?;
    if let Some(result) = partitions {
        result?;
    }
    applied
}

/// Versions of this binary's migrations that the database has not applied (all of them
/// when it was never migrated). Only reads: unlike diesel's own harness, it never creates
/// the bookkeeping table, so a readiness probe can call it.
pub fn missing(conn: &mut PgConnection) -> Result<Vec<String>, DbError> {
    use diesel::{migration::MigrationSource, pg::Pg, sql_types::Text, QueryableByName};

    #[derive(QueryableByName)]
    struct Version {
        #[diesel(sql_type = Text)]
        version: String,
    }

    let known: Vec<String> = MigrationSource::<Pg>::migrations(&MIGRATIONS)
        .map_err(|e| DbError::Migration(e.to_string()))?
        .iter()
        .map(|m| m.name().version().to_string())
        .collect();
    let applied: Vec<String> = diesel::sql_query("SELECT version FROM __diesel_schema_migrations")
        .load::<Version>(conn)
        .or_else(|e| match e {
            // Never migrated: the table does not exist.
            diesel::result::Error::DatabaseError(_, ref info)
                if info.message().contains("does not exist") =>
            {
                Ok(Vec::new())
            }
            other => Err(other),
        })?
        .into_iter()
        .map(|v| v.version)
        .collect();
    Ok(known.into_iter().filter(|v| !applied.contains(v)).collect())
}

/// Creates missing daily partitions of `log_entries` around today.
pub fn ensure_partitions(conn: &mut PgConnection) -> Result<(), DbError> {
    diesel::sql_query(format!(
        "SELECT logcanary_ensure_partitions((now() AT TIME ZONE 'UTC')::date - 1, {})",
        PARTITION_DAYS_AHEAD + 2
    ))
    .execute(conn)?;
    Ok(())
}
