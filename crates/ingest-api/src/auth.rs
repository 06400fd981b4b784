//! Request signatures: which secrets are valid, and the check every write goes through
//! before its body is parsed.
//!
//! Secrets come from `LOGCANARY_HMAC_KEYS` (`id:secret,...`) and the `api_keys` table
//! (re-read every [`DB_KEYS_REFRESH`], so a rotated key takes effect without a restart).
//! Replays of timestamped signatures are refused by a per-process cache of signatures seen
//! inside the tolerance window; with several replicas a replay could reach another one,
//! which is why clients that care should use the timestamped form *and* idempotent data.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix_web::HttpRequest;
use common::signing::Signature;

use crate::errors::ApiError;

pub const SIGNATURE_HEADER: &str = "X-HMAC-Signature";
pub const KEY_ID_HEADER: &str = "X-HMAC-Key-Id";
/// (key id, secret) pairs.
type Keys = Vec<(String, Vec<u8>)>;

const DB_KEYS_REFRESH: Duration = Duration::from_secs(15);
const MIN_DB_KEYS_REFRESH: Duration = Duration::from_secs(1);

/// Configured secrets as (key id, secret) pairs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HmacKeys(pub Vec<(String, String)>);

/// Parses `id1:secret1,id2:secret2`. A bare `secret` gets the id `default`.
pub fn parse_keys(raw: &str) -> Result<HmacKeys, String> {
    let mut keys = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, secret) = part.split_once(':').unwrap_or(("default", part));
        if id.is_empty() || secret.is_empty() {
            return Err(format!(
                "expected id:secret pairs separated by commas, got {part:?}"
            ));
        }
        keys.push((id.to_owned(), secret.to_owned()));
    }
    if keys.is_empty() {
        return Err("at least one id:secret pair is required".into());
    }
    Ok(HmacKeys(keys))
}

#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    config_keys: Vec<(String, Vec<u8>)>,
    db: db::Db,
    db_keys: Mutex<(Option<Instant>, Keys)>,
    legacy_allowed: bool,
    tolerance: Duration,
    seen: Mutex<ReplayCache>,
}

#[derive(Default)]
struct ReplayCache {
    /// MAC -> the signature's timestamp; entries older than the window are pruned.
    /// Fixed-size keys: at thousands of requests per second the window holds millions.
    seen: HashMap<[u8; 32], i64>,
    last_prune: i64,
}

impl Verifier {
    pub fn new(
        config_keys: Vec<(String, String)>,
        db: db::Db,
        legacy_allowed: bool,
        tolerance: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                config_keys: config_keys
                    .into_iter()
                    .map(|(id, s)| (id, s.into_bytes()))
                    .collect(),
                db,
                db_keys: Mutex::new((None, Vec::new())),
                legacy_allowed,
                tolerance,
                seen: Mutex::new(ReplayCache::default()),
            }),
        }
    }

    /// Verifies the request's signature over the raw `body`. Errors are 401s that say
    /// what is wrong without revealing which secrets exist.
    pub async fn verify(&self, req: &HttpRequest, body: &[u8]) -> Result<(), ApiError> {
        let header = req
            .headers()
            .get(SIGNATURE_HEADER)
            .ok_or_else(|| ApiError::Unauthorized("Missing X-HMAC-Signature header.".into()))?
            .to_str()
            .map_err(|_| ApiError::Unauthorized("Invalid X-HMAC-Signature header.".into()))?;
        let signature = Signature::parse(header).map_err(|e| {
            ApiError::Unauthorized(format!("Invalid X-HMAC-Signature header: {e}."))
        })?;
        let key_id = match req.headers().get(KEY_ID_HEADER) {
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| ApiError::Unauthorized("Invalid X-HMAC-Key-Id header.".into()))?
                    .to_owned(),
            ),
            None => None,
        };

        if let Signature::Timestamped { t, .. } = &signature {
            let now = chrono::Utc::now().timestamp();
            if (now - t).unsigned_abs() > self.inner.tolerance.as_secs() {
                return Err(ApiError::Unauthorized(
                    "Signature timestamp is outside the tolerance window.".into(),
                ));
            }
        } else if !self.inner.legacy_allowed {
            return Err(ApiError::Unauthorized(
                "Plain body signatures are disabled; use t=<unix seconds>,v1=<hex>.".into(),
            ));
        }

        // A key added to api_keys moments ago may not be in the cache yet: on a miss, look
        // again with fresh keys (at most once per MIN_DB_KEYS_REFRESH, so a flood of bad
        // requests cannot turn into a flood of queries).
        let mut result = self.check(&signature, key_id.as_deref(), body, false).await;
        if result.is_err() {
            result = self.check(&signature, key_id.as_deref(), body, true).await;
        }
        result?;
        if let Signature::Timestamped { t, mac } = signature {
            self.check_replay(t, mac)?;
        }
        Ok(())
    }

    async fn check(
        &self,
        signature: &Signature,
        key_id: Option<&str>,
        body: &[u8],
        refresh: bool,
    ) -> Result<(), ApiError> {
        let keys = self.keys(refresh).await;
        let candidates: Vec<&Vec<u8>> = match key_id {
            Some(id) => {
                let found: Vec<&Vec<u8>> = keys
                    .iter()
                    .filter(|(kid, _)| kid == id)
                    .map(|(_, s)| s)
                    .collect();
                if found.is_empty() {
                    return Err(ApiError::Unauthorized("Unknown key id.".into()));
                }
                found
            }
            None => keys.iter().map(|(_, s)| s).collect(),
        };
        // Every candidate is checked (no early exit), so timing does not tell which key matched.
        let valid = candidates
            .iter()
            .fold(false, |ok, secret| signature.verify(secret, body) | ok);
        if valid {
            Ok(())
        } else {
            Err(ApiError::Unauthorized("Invalid signature.".into()))
        }
    }

    fn check_replay(&self, t: i64, mac: Vec<u8>) -> Result<(), ApiError> {
        let window = self.inner.tolerance.as_secs() as i64;
        let now = chrono::Utc::now().timestamp();
        let mut cache = self
            .inner
            .seen
            .lock()
            .map_err(|_| ApiError::Internal("replay cache poisoned".into()))?;
        if now - cache.last_prune > 10 {
            cache.seen.retain(|_, ts| now - *ts <= window);
            cache.last_prune = now;
        }
        let key: [u8; 32] = mac
            .as_slice()
            .try_into()
            .map_err(|_| ApiError::Unauthorized("Invalid X-HMAC-Signature header.".into()))?;
        if cache.seen.insert(key, t).is_some() {
            return Err(ApiError::Unauthorized(
                "This signature was already used (replay).".into(),
            ));
        }
        Ok(())
    }

    async fn keys(&self, refresh: bool) -> Vec<(String, Vec<u8>)> {
        let mut keys = self.inner.config_keys.clone();
        let max_age = if refresh {
            MIN_DB_KEYS_REFRESH
        } else {
            DB_KEYS_REFRESH
        };
        let cached = {
            let guard = self.inner.db_keys.lock().ok();
            guard.and_then(|g| match g.0 {
                Some(at) if at.elapsed() < max_age => Some(g.1.clone()),
                _ => None,
            })
        };
        let db_keys = match cached {
            Some(k) => k,
            None => match self.inner.db.run(db::api_keys::active).await {
                Ok(rows) => {
                    let fresh: Vec<(String, Vec<u8>)> = rows
                        .into_iter()
                        .map(|(id, s)| (id, s.into_bytes()))
                        .collect();
                    if let Ok(mut g) = self.inner.db_keys.lock() {
                        *g = (Some(Instant::now()), fresh.clone());
                    }
                    fresh
                }
                Err(error) => {
                    // Keep verifying with the configured keys and the last known ones.
                    tracing::warn!(%error, "Cannot read api_keys; using the last known keys.");
                    self.inner
                        .db_keys
                        .lock()
                        .map(|g| g.1.clone())
                        .unwrap_or_default()
                }
            },
        };
        keys.extend(db_keys);
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::parse_keys;

    #[test]
    fn key_lists() {
        assert_eq!(
            parse_keys("a:1, b:2").unwrap().0,
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert_eq!(
            parse_keys("s3cret").unwrap().0,
            vec![("default".into(), "s3cret".into())]
        );
        assert!(parse_keys("").is_err());
        assert!(parse_keys("a:").is_err());
    }
}
