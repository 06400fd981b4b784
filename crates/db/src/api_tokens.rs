//! Shipper tokens (`Authorization: Bearer`, basic auth, `ApiKey`), stored as the SHA-256
//! of the token only; see the `api_tokens` migration for why a fast hash is right here.

use diesel::{pg::PgConnection, prelude::*};

use crate::{schema::api_tokens, DbError};

/// An active (not revoked) token: its name, the digest and the scopes it grants.
#[derive(Queryable, Clone, Debug)]
pub struct StoredToken {
    pub name: String,
    pub token_sha256: Vec<u8>,
    pub scopes: Vec<String>,
}

/// Tokens not revoked.
pub fn active(conn: &mut PgConnection) -> Result<Vec<StoredToken>, DbError> {
    Ok(api_tokens::table
        .filter(api_tokens::revoked_at.is_null())
        .select((
            api_tokens::name,
            api_tokens::token_sha256,
            api_tokens::scopes,
        ))
        .load(conn)?)
}

/// Adds the token `name` (its digest) with `scopes`, or replaces the digest and scopes of
/// a token of that name and un-revokes it: creating a token again under a name rotates it.
pub fn upsert(
    conn: &mut PgConnection,
    name: &str,
    token_sha256: &[u8; 32],
    scopes: &[&str],
) -> Result<(), DbError> {
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    diesel::insert_into(api_tokens::table)
        .values((
            api_tokens::name.eq(name),
            api_tokens::token_sha256.eq(&token_sha256[..]),
            api_tokens::scopes.eq(&scopes),
        ))
        .on_conflict(api_tokens::name)
        .do_update()
        .set((
            api_tokens::token_sha256.eq(&token_sha256[..]),
            api_tokens::scopes.eq(&scopes),
            api_tokens::revoked_at.eq(None::<chrono::DateTime<chrono::Utc>>),
        ))
        .execute(conn)?;
    Ok(())
}

/// Revokes the token `name`; whether one was active.
pub fn revoke(conn: &mut PgConnection, name: &str) -> Result<bool, DbError> {
    let n = diesel::update(
        api_tokens::table
            .filter(api_tokens::name.eq(name))
            .filter(api_tokens::revoked_at.is_null()),
    )
    .set(api_tokens::revoked_at.eq(diesel::dsl::now))
    .execute(conn)?;
    Ok(n > 0)
}
