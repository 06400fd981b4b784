//! Request signatures: which secrets are valid, and the check every write goes through
//! before its body is parsed.
//!
//! Secrets come from `LOGCANARY_HMAC_KEYS` (`id:secret,...`) and the `api_keys` table
//! (re-read every [`DB_KEYS_REFRESH`], so a rotated key takes effect without a restart).
//! Replays of timestamped signatures are refused: a per-process cache answers a replay to
//! the same replica at once, and every new signature is then claimed in the shared
//! `used_signatures` table (batched: one statement for the claims that arrive together),
//! so a replay sent to another replica is refused too. With `LOGCANARY_REPLAY_GUARD=memory`
//! only the per-process cache is used (one replica). Legacy body-only signatures carry no
//! timestamp, so nothing can tell their replays from a client sending the same body again.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix_web::{HttpMessage, HttpRequest};
use chrono::{DateTime, Utc};
use common::signing::Signature;
use tokio::sync::{mpsc, oneshot};

use crate::errors::ApiError;

pub const SIGNATURE_HEADER: &str = "X-HMAC-Signature";
pub const KEY_ID_HEADER: &str = "X-HMAC-Key-Id";
/// (key id, secret) pairs.
type Keys = Vec<(String, Vec<u8>)>;

const DB_KEYS_REFRESH: Duration = Duration::from_secs(15);
const MIN_DB_KEYS_REFRESH: Duration = Duration::from_secs(1);

/// Configured secrets as (key id, secret) pairs.
#[derive(Clone, PartialEq, Eq)]
pub struct HmacKeys(pub Vec<(String, String)>);

/// The key ids only: the settings are `Debug`, and a secret must not reach a log.
impl std::fmt::Debug for HmacKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(id, _)| format!("{id}:[redacted]")))
            .finish()
    }
}

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
    /// Claims of new signatures in `used_signatures`; `None` keeps replay protection to
    /// this process.
    claims: Option<mpsc::Sender<Claim>>,
}

/// Where used signatures are remembered (`LOGCANARY_REPLAY_GUARD`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplayGuard {
    /// In `used_signatures`, shared by every replica (the default).
    Postgres,
    /// In this process only: enough for a single replica.
    Memory,
}

/// One signature to record, and where to say whether it was new.
struct Claim {
    mac: [u8; 32],
    expires_at: DateTime<Utc>,
    reply: oneshot::Sender<Result<bool, String>>,
}

/// Claims that arrive while one statement runs go together in the next one.
const MAX_CLAIMS_PER_STATEMENT: usize = 2000;
/// How often expired rows of `used_signatures` are deleted: all of them, in statements of
/// at most `PRUNE_PER_STATEMENT` rows, at most `PRUNE_MAX_STATEMENTS` per pass (up to
/// 200 000 rows/s, far above the rate requests can add them). A pass runs beside the
/// claims, never in their way.
const PRUNE_EVERY: Duration = Duration::from_secs(5);
const PRUNE_PER_STATEMENT: i64 = 10_000;
const PRUNE_MAX_STATEMENTS: usize = 100;

/// The timestamped signature a request claimed, in the request's extensions: a response
/// of 5xx means nothing was stored (the reply to a stored request goes out after its
/// commit), and the claim is released.
#[derive(Debug, Clone, Copy)]
pub struct ClaimedSignature([u8; 32]);

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
        guard: ReplayGuard,
    ) -> Self {
        let claims = (guard == ReplayGuard::Postgres).then(|| {
            let (tx, rx) = mpsc::channel(MAX_CLAIMS_PER_STATEMENT * 4);
            tokio::spawn(run_claims(db.clone(), rx));
            tx
        });
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
                claims,
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
            let mac: [u8; 32] = mac
                .as_slice()
                .try_into()
                .map_err(|_| ApiError::Unauthorized("Invalid X-HMAC-Signature header.".into()))?;
            self.check_replay(t, mac)?;
            if let Err(error) = self.claim_shared(t, mac).await {
                // Not recorded anywhere: the client may retry with the same signature.
                self.forget(&mac);
                return Err(error);
            }
            // If the request fails later (a 5xx: nothing was stored), the server's
            // middleware gives the claim back with [`Verifier::release`].
            req.extensions_mut().insert(ClaimedSignature(mac));
        }
        Ok(())
    }

    /// Gives back the signature a failed request claimed (see [`ClaimedSignature`]), so
    /// the client's retry of the same request is not refused as a replay.
    pub async fn release(&self, claimed: ClaimedSignature) {
        let mac = claimed.0;
        self.forget(&mac);
        if self.inner.claims.is_some() {
            let released = self
                .inner
                .db
                .run(move |c| db::signatures::release(c, &mac))
                .await;
            if let Err(error) = released {
                tracing::warn!(%error, "Cannot give back the signature of a failed request; its retry will be refused as a replay until the signature expires.");
            }
        }
    }

    /// Records the signature in `used_signatures` (when shared protection is on); a MAC
    /// already there was used through another replica.
    async fn claim_shared(&self, t: i64, mac: [u8; 32]) -> Result<(), ApiError> {
        let Some(claims) = &self.inner.claims else {
            return Ok(());
        };
        let window = chrono::Duration::from_std(self.inner.tolerance).unwrap_or_default();
        let expires_at = DateTime::from_timestamp(t, 0).unwrap_or_else(Utc::now) + window;
        let (reply, answer) = oneshot::channel();
        let unavailable =
            || ApiError::Unavailable("Cannot record the signature; try again shortly.".into());
        claims
            .send(Claim {
                mac,
                expires_at,
                reply,
            })
            .await
            .map_err(|_| unavailable())?;
        match answer.await.map_err(|_| unavailable())? {
            Ok(true) => Ok(()),
            Ok(false) => Err(ApiError::Unauthorized(
                "This signature was already used (replay).".into(),
            )),
            Err(error) => {
                tracing::warn!(%error, "Cannot record a used signature.");
                Err(ApiError::Unavailable(format!(
                    "Cannot record the signature ({error}); try again shortly."
                )))
            }
        }
    }

    fn forget(&self, mac: &[u8; 32]) {
        if let Ok(mut cache) = self.inner.seen.lock() {
            cache.seen.remove(mac);
        }
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

    fn check_replay(&self, t: i64, key: [u8; 32]) -> Result<(), ApiError> {
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

/// Records claimed signatures in `used_signatures`, one statement for all the claims
/// waiting, and deletes expired rows now and then. Ends when the verifier is dropped.
async fn run_claims(db: db::Db, mut rx: mpsc::Receiver<Claim>) {
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let pruning = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    loop {
        let first = tokio::select! {
            claim = rx.recv() => match claim {
                Some(claim) => claim,
                None => return,
            },
            _ = prune.tick() => {
                // One pass at a time, on its own task: claims go on meanwhile.
                if !pruning.swap(true, std::sync::atomic::Ordering::AcqRel) {
                    let (db, pruning) = (db.clone(), pruning.clone());
                    tokio::spawn(async move {
                        let deleted = db
                            .run(|c| {
                                db::signatures::delete_all_expired(
                                    c,
                                    Utc::now(),
                                    PRUNE_PER_STATEMENT,
                                    PRUNE_MAX_STATEMENTS,
                                )
                            })
                            .await;
                        if let Err(error) = deleted {
                            tracing::warn!(%error, "Cannot delete expired used signatures.");
                        }
                        pruning.store(false, std::sync::atomic::Ordering::Release);
                    });
                }
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_CLAIMS_PER_STATEMENT {
            match rx.try_recv() {
                Ok(claim) => batch.push(claim),
                Err(_) => break,
            }
        }
        let rows: Vec<(Vec<u8>, DateTime<Utc>)> = batch
            .iter()
            .map(|c| (c.mac.to_vec(), c.expires_at))
            .collect();
        let result = db.run(move |c| db::signatures::claim(c, &rows)).await;
        match result {
            Ok(new) => {
                let mut new: std::collections::HashSet<Vec<u8>> = new.into_iter().collect();
                for claim in batch {
                    // `remove`: the same MAC twice in one batch is new only once.
                    let _ = claim.reply.send(Ok(new.remove(claim.mac.as_slice())));
                }
            }
            Err(error) => {
                let error = error.to_string();
                for claim in batch {
                    let _ = claim.reply.send(Err(error.clone()));
                }
            }
        }
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
