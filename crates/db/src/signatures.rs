//! Request signatures already used (replay protection shared by every ingest-api
//! replica). Raw SQL: the table is written in batches with `unnest`, which diesel's query
//! builder does not express.

use chrono::{DateTime, Utc};
use diesel::{
    pg::PgConnection,
    sql_types::{Array, Bytea, Timestamptz},
    Connection, QueryableByName, RunQueryDsl,
};

use crate::DbError;

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = Bytea)]
    mac: Vec<u8>,
}

/// Records each `(mac, expires_at)` unless that MAC is already recorded, and returns the
/// MACs that were new: a MAC missing from the answer was used before (a replay). One
/// statement for the whole batch; concurrent callers are serialised by the primary key,
/// so of two replicas claiming the same MAC exactly one gets it.
pub fn claim(
    conn: &mut PgConnection,
    claims: &[(Vec<u8>, DateTime<Utc>)],
) -> Result<Vec<Vec<u8>>, DbError> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let (macs, expiries): (Vec<Vec<u8>>, Vec<DateTime<Utc>>) = claims.iter().cloned().unzip();
    let rows: Vec<Claimed> = conn.transaction(|conn| {
        // No WAL flush of its own: the request's entries commit after the claim (with a
        // flush), and a flush writes out every earlier commit, so a claim is durable
        // whenever anything it let in is. A crash can only lose claims of requests that
        // were never answered, which their clients retry anyway.
        diesel::sql_query("SET LOCAL synchronous_commit TO OFF").execute(conn)?;
        diesel::sql_query(
            "INSERT INTO used_signatures (mac, expires_at) \
             SELECT * FROM unnest($1::bytea[], $2::timestamptz[]) \
             ON CONFLICT (mac) DO NOTHING \
             RETURNING mac",
        )
        .bind::<Array<Bytea>, _>(macs)
        .bind::<Array<Timestamptz>, _>(expiries)
        .load(conn)
    })?;
    Ok(rows.into_iter().map(|r| r.mac).collect())
}

/// Gives a claimed MAC back: the request it let in failed before anything was stored, so
/// the client's retry with the same signature must not be refused as a replay.
pub fn release(conn: &mut PgConnection, mac: &[u8]) -> Result<usize, DbError> {
    Ok(
        diesel::sql_query("DELETE FROM used_signatures WHERE mac = $1")
            .bind::<Bytea, _>(mac)
            .execute(conn)?,
    )
}

/// Deletes up to `limit` rows whose signatures can no longer be replayed (their timestamp
/// left the tolerance window before `now`); returns how many went.
pub fn delete_expired(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<usize, DbError> {
    Ok(diesel::sql_query(
        "DELETE FROM used_signatures WHERE mac IN \
         (SELECT mac FROM used_signatures WHERE expires_at < $1 LIMIT $2)",
    )
    .bind::<Timestamptz, _>(now)
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .execute(conn)?)
}

/// Deletes every expired row, `per_statement` at a time (short statements, short locks),
/// in at most `max_statements` statements; returns how many went. Pruning must keep up
/// with the request rate: one bounded statement per pass could not.
pub fn delete_all_expired(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    per_statement: i64,
    max_statements: usize,
) -> Result<usize, DbError> {
    let mut total = 0;
    for _ in 0..max_statements {
        let deleted = delete_expired(conn, now, per_statement)?;
        total += deleted;
        if i64::try_from(deleted).unwrap_or(i64::MAX) < per_statement {
            break;
        }
    }
    Ok(total)
}
