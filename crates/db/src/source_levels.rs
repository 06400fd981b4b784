//! Lines per source and those of them at WARNING or above, counted by every scoring
//! worker (`source_levels`): what the detector judges "this source marks its trouble by
//! level" by, so that each replica judges a source by every replica's lines. Workers add
//! their written lines with [`add`] in the transaction that stores the scores, and read
//! the counts back with [`load`] when they pull the shared templates.

use diesel::{
    pg::PgConnection,
    prelude::*,
    sql_types::{Array, BigInt, Text},
};

use crate::DbError;

/// The source of the row that counts the whole stream.
pub const STREAM: &str = "";

/// One source's counts.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct SourceLevels {
    /// The entries' `source`; [`STREAM`] for every line.
    #[diesel(sql_type = Text)]
    pub source: String,
    #[diesel(sql_type = BigInt)]
    pub lines: i64,
    /// Lines at WARNING or above.
    #[diesel(sql_type = BigInt)]
    pub trouble: i64,
}

/// Adds `counts` to the stored ones (rows in source order, one lock order for every
/// worker). Counts only grow, so replicas adding in any order end with the same totals.
pub fn add(conn: &mut PgConnection, counts: &[SourceLevels]) -> Result<(), DbError> {
    if counts.is_empty() {
        return Ok(());
    }
    let mut sorted: Vec<&SourceLevels> = counts.iter().collect();
    sorted.sort_by(|a, b| a.source.cmp(&b.source));
    let sources: Vec<&str> = sorted.iter().map(|c| c.source.as_str()).collect();
    let lines: Vec<i64> = sorted.iter().map(|c| c.lines).collect();
    let trouble: Vec<i64> = sorted.iter().map(|c| c.trouble).collect();
    diesel::sql_query(
        "INSERT INTO source_levels AS s (source, lines, trouble) \
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[]) \
         ON CONFLICT (source) DO UPDATE \
         SET lines = s.lines + EXCLUDED.lines, trouble = s.trouble + EXCLUDED.trouble",
    )
    .bind::<Array<Text>, _>(&sources)
    .bind::<Array<BigInt>, _>(&lines)
    .bind::<Array<BigInt>, _>(&trouble)
    .execute(conn)?;
    Ok(())
}

/// The whole stream's counts and those of the `limit` sources with the most lines.
pub fn load(conn: &mut PgConnection, limit: i64) -> Result<Vec<SourceLevels>, DbError> {
    Ok(diesel::sql_query(
        "(SELECT source, lines, trouble FROM source_levels WHERE source = '') \
         UNION ALL \
         (SELECT source, lines, trouble FROM source_levels WHERE source <> '' \
          ORDER BY lines DESC, source LIMIT $1)",
    )
    .bind::<BigInt, _>(limit)
    .load(conn)?)
}
