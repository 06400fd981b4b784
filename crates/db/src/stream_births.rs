//! How settled the whole stream is, counted by every scoring worker (`stream_births`): the
//! lines scored and which of the latest started a template, what the detector's
//! `settled` rule reads. Workers add the lines they scored with [`add`] after a batch's
//! write, and take the count back with [`load`] when they pull the shared templates.

use diesel::{
    pg::PgConnection,
    prelude::*,
    sql_types::{Array, BigInt},
};

use crate::DbError;

/// The stream's count.
#[derive(Debug, Clone, PartialEq, Eq, Default, QueryableByName)]
pub struct StreamBirths {
    /// Lines scored by every worker.
    #[diesel(sql_type = BigInt)]
    pub lines: i64,
    /// Positions (from 0) of the lines that started a template, among the latest ones
    /// (those within the largest `horizon` any [`add`] kept), ascending.
    #[diesel(sql_type = Array<BigInt>)]
    pub births: Vec<i64>,
}

/// Appends `lines` scored lines, of which those at `births` (offsets from 0, the first
/// of them) started a template, keeping the births among the latest `horizon` lines.
/// One statement on one row: workers adding at once queue on its lock for a moment.
pub fn add(
    conn: &mut PgConnection,
    lines: i64,
    births: &[i64],
    horizon: i64,
) -> Result<(), DbError> {
    if lines <= 0 {
        return Ok(());
    }
    diesel::sql_query(
        "INSERT INTO stream_births AS s (id, lines, births) \
         VALUES (TRUE, $1, ARRAY(SELECT b FROM unnest($2::bigint[]) b \
                                WHERE b >= $1 - $3 ORDER BY b)) \
         ON CONFLICT (id) DO UPDATE SET \
         lines = s.lines + EXCLUDED.lines, \
         births = ARRAY(SELECT p FROM ( \
             SELECT p FROM unnest(s.births) p \
             UNION ALL SELECT s.lines + b FROM unnest($2::bigint[]) b) kept \
           WHERE p >= s.lines + $1 - $3 ORDER BY p)",
    )
    .bind::<BigInt, _>(lines)
    .bind::<Array<BigInt>, _>(births)
    .bind::<BigInt, _>(horizon)
    .execute(conn)?;
    Ok(())
}

/// The stream's count (nothing scored yet: zero lines).
pub fn load(conn: &mut PgConnection) -> Result<StreamBirths, DbError> {
    Ok(
        diesel::sql_query("SELECT lines, births FROM stream_births WHERE id")
            .load::<StreamBirths>(conn)?
            .pop()
            .unwrap_or_default(),
    )
}
