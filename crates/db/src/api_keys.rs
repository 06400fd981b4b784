//! HMAC secrets stored in the database, beside those from configuration.

use diesel::{pg::PgConnection, prelude::*};

use crate::{schema::api_keys, DbError};

/// Active, unexpired keys as (key id, secret).
pub fn active(conn: &mut PgConnection) -> Result<Vec<(String, String)>, DbError> {
    Ok(api_keys::table
        .filter(api_keys::active.eq(true))
        .filter(
            api_keys::expires_at
                .is_null()
                .or(api_keys::expires_at.gt(diesel::dsl::now)),
        )
        .select((api_keys::key_id, api_keys::secret))
        .load(conn)?)
}

/// Adds or replaces a key (used by operators' scripts and tests).
pub fn upsert(
    conn: &mut PgConnection,
    key_id: &str,
    secret: &str,
    active: bool,
) -> Result<(), DbError> {
    diesel::insert_into(api_keys::table)
        .values((
            api_keys::key_id.eq(key_id),
            api_keys::secret.eq(secret),
            api_keys::active.eq(active),
        ))
        .on_conflict(api_keys::key_id)
        .do_update()
        .set((api_keys::secret.eq(secret), api_keys::active.eq(active)))
        .execute(conn)?;
    Ok(())
}
