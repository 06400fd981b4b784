//! Template counts shared by every worker replica.

use chrono::{DateTime, Utc};
use diesel::{
    pg::PgConnection,
    prelude::*,
    sql_types::{Array, BigInt, Text, Timestamptz},
};

use crate::DbError;

/// One template seen `count` times in a batch, last at `last_seen`.
#[derive(Debug, Clone)]
pub struct Observation {
    pub key: String,
    pub template: String,
    pub count: i64,
    pub last_seen: DateTime<Utc>,
}

/// A template's id and how often it had been seen before this batch.
#[derive(Debug, Clone, QueryableByName)]
pub struct Observed {
    #[diesel(sql_type = Text)]
    pub key: String,
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub seen_before: i64,
    #[diesel(sql_type = BigInt)]
    pub total_templates: i64,
}

/// Adds a batch's observations to the shared counts (keys must be distinct) and returns,
/// per key, the template id and the count before this batch. Atomic per row, so
/// concurrent workers never lose an increment.
pub fn observe(conn: &mut PgConnection, batch: &[Observation]) -> Result<Vec<Observed>, DbError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<&str> = batch.iter().map(|o| o.key.as_str()).collect();
    let texts: Vec<&str> = batch.iter().map(|o| o.template.as_str()).collect();
    let counts: Vec<i64> = batch.iter().map(|o| o.count).collect();
    let seen: Vec<DateTime<Utc>> = batch.iter().map(|o| o.last_seen).collect();
    Ok(diesel::sql_query(
        "WITH up AS ( \
           INSERT INTO templates (template_key, template, count, first_seen, last_seen) \
           SELECT k, t, c, s, s FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[]) AS u(k, t, c, s) \
           ON CONFLICT (template_key) DO UPDATE \
             SET count = templates.count + EXCLUDED.count, \
                 last_seen = GREATEST(templates.last_seen, EXCLUDED.last_seen) \
           RETURNING template_key, id, count \
         ) \
         SELECT up.template_key AS key, up.id, up.count - u.c AS seen_before, \
                (SELECT count(*) FROM templates) AS total_templates \
         FROM up JOIN unnest($1::text[], $3::bigint[]) AS u(k, c) ON u.k = up.template_key",
    )
    .bind::<Array<Text>, _>(&keys)
    .bind::<Array<Text>, _>(&texts)
    .bind::<Array<BigInt>, _>(&counts)
    .bind::<Array<Timestamptz>, _>(&seen)
    .load(conn)?)
}
