//! HMAC secrets stored in the database, beside those from configuration, each with the
//! scopes it grants (`ingest`, `read`, `operate`, `admin`; see API.md).

use diesel::{pg::PgConnection, prelude::*};

use crate::{schema::api_keys, DbError};

/// An active, unexpired key.
#[derive(Queryable, Clone)]
pub struct StoredKey {
    pub key_id: String,
    pub secret: String,
    pub scopes: Vec<String>,
}

/// The key id and scopes only: a secret must not reach a log.
impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("key_id", &self.key_id)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// Active, unexpired keys.
pub fn active(conn: &mut PgConnection) -> Result<Vec<StoredKey>, DbError> {
    Ok(api_keys::table
        .filter(api_keys::active.eq(true))
        .filter(
            api_keys::expires_at
                .is_null()
                .or(api_keys::expires_at.gt(diesel::dsl::now)),
        )
        .select((api_keys::key_id, api_keys::secret, api_keys::scopes))
        .load(conn)?)
}

/// Adds or replaces a key with the `ingest` scope only (used by operators' scripts and
/// tests); [`upsert_scoped`] says the scopes.
pub fn upsert(
    conn: &mut PgConnection,
    key_id: &str,
    secret: &str,
    active: bool,
) -> Result<(), DbError> {
    upsert_scoped(conn, key_id, secret, active, &["ingest"])
}

/// Adds or replaces a key with `scopes` (each of `ingest`, `read`, `operate`, `admin`;
/// the table refuses others).
pub fn upsert_scoped(
    conn: &mut PgConnection,
    key_id: &str,
    secret: &str,
    active: bool,
    scopes: &[&str],
) -> Result<(), DbError> {
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    diesel::insert_into(api_keys::table)
        .values((
            api_keys::key_id.eq(key_id),
            api_keys::secret.eq(secret),
            api_keys::active.eq(active),
            api_keys::scopes.eq(&scopes),
        ))
        .on_conflict(api_keys::key_id)
        .do_update()
        .set((
            api_keys::secret.eq(secret),
            api_keys::active.eq(active),
            api_keys::scopes.eq(&scopes),
        ))
        .execute(conn)?;
    Ok(())
}
