//! Who may do what: the credentials a request can present, the scopes each grants, and
//! the signature check every signed request goes through as its body arrives.
//!
//! Credentials (API.md, "Authentication"):
//! - HMAC keys, from `LOGCANARY_HMAC_KEYS` (`id@scope+scope:secret,...`) and the
//!   `api_keys` table (re-read every [`DB_KEYS_REFRESH`], so a rotated key takes effect
//!   without a restart), each with its [`Scopes`];
//! - bearer tokens: `LOGCANARY_READ_TOKEN` (`read`) and `LOGCANARY_DASHBOARD_TOKEN`
//!   (`read` + `operate`), see [`crate::access`].
//!
//! Signatures ([`common::signing`]): the request-bound `t=..,v2=..` is accepted
//! everywhere; the old clients' forms (body-only legacy, and `t=..,v1=..`) only on the old
//! API's POST endpoints ([`WritePolicy::old_api`]), legacy only while
//! `LOGCANARY_HMAC_LEGACY` is on. The header is checked before a byte of the body is
//! read, and the MAC is computed as the body streams in ([`PendingCheck::update`]).
//!
//! Replays of timestamped signatures are refused: a per-process cache answers a replay to
//! the same replica at once, and every new signature is then claimed in the shared
//! `used_signatures` table (batched: one statement for the claims that arrive together),
//! so a replay sent to another replica is refused too. With `LOGCANARY_REPLAY_GUARD=memory`
//! only the per-process cache is used (one replica). Legacy body-only signatures carry no
//! timestamp, so nothing can tell their replays from a client sending the same body again.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix_web::{HttpMessage, HttpRequest};
use chrono::{DateTime, Utc};
use common::signing::{MacState, RequestLine, Signature};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{mpsc, oneshot};

use crate::{config::weak_secret, errors::ApiError};

pub const SIGNATURE_HEADER: &str = "X-HMAC-Signature";
pub const KEY_ID_HEADER: &str = "X-HMAC-Key-Id";

const DB_KEYS_REFRESH: Duration = Duration::from_secs(15);
const MIN_DB_KEYS_REFRESH: Duration = Duration::from_secs(1);

/// What a credential may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The old API's POST endpoints: entries, batches, pattern and real-time analysis.
    Ingest,
    /// Every GET under `/api/` and the dashboard's panels.
    Read,
    /// Feedback, template labels, periodic tasks, triggering analysis.
    Operate,
    /// Keys (`GET /api/keys/`).
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Ingest, Scope::Read, Scope::Operate, Scope::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Operate => "operate",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(raw: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.name() == raw)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of [`Scope`]s.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes(u8);

impl Scopes {
    pub const NONE: Scopes = Scopes(0);

    pub fn of(scopes: &[Scope]) -> Self {
        Scopes(scopes.iter().fold(0, |bits, s| bits | s.bit()))
    }

    pub fn all() -> Self {
        Self::of(&Scope::ALL)
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Whether any scope of `other` is in this set.
    pub fn intersects(self, other: Scopes) -> bool {
        self.0 & other.0 != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// `ingest+read`, as in `LOGCANARY_HMAC_KEYS`.
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Scope::name).collect()
    }

    /// Parses `ingest+read` (or `ingest,read`, as the database stores a list).
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut scopes = Scopes::NONE;
        for name in names {
            let name = name.trim();
            let scope = Scope::parse(name).ok_or_else(|| {
                format!("unknown scope {name:?}; the scopes are ingest, read, operate and admin")
            })?;
            scopes.0 |= scope.bit();
        }
        if scopes == Scopes::NONE {
            return Err("a key needs at least one scope".into());
        }
        Ok(scopes)
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join("+"))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One HMAC key: its id, its secret (never shown) and what it may do.
#[derive(Clone)]
pub struct HmacKey {
    pub id: String,
    pub secret: SecretString,
    pub scopes: Scopes,
}

impl HmacKey {
    pub fn new(id: impl Into<String>, secret: &str, scopes: Scopes) -> Self {
        Self {
            id: id.into(),
            secret: SecretString::from(secret.to_owned()),
            scopes,
        }
    }
}

/// The key id and scopes only: the settings are `Debug`, and a secret must not reach a log.
impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}:[redacted]", self.id, self.scopes)
    }
}

/// Configured keys (`LOGCANARY_HMAC_KEYS`).
#[derive(Clone, Debug)]
pub struct HmacKeys(pub Vec<HmacKey>);

/// The scopes of a configured key that names none (`id:secret`, the old form): the old
/// API's POST endpoints, which is all the old clients did with it.
pub const DEFAULT_KEY_SCOPES: [Scope; 1] = [Scope::Ingest];

/// Parses `id@scope+scope:secret,...`: `id:secret` (no scopes) gets
/// [`DEFAULT_KEY_SCOPES`], a bare `secret` the id `default`. The secret may contain `:`
/// and `@`; the error never repeats it.
pub fn parse_keys(raw: &str) -> Result<HmacKeys, String> {
    let mut keys = Vec::new();
    for (n, part) in raw
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .enumerate()
    {
        let n = n + 1;
        let (name, secret) = part.split_once(':').unwrap_or(("default", part));
        let (id, scopes) = match name.split_once('@') {
            Some((id, scopes)) => (
                id,
                Scopes::parse(scopes.split('+')).map_err(|e| format!("key {n} ({id}): {e}"))?,
            ),
            None => (name, Scopes::of(&DEFAULT_KEY_SCOPES)),
        };
        if id.is_empty() || secret.is_empty() {
            return Err(format!(
                "key {n} has an empty id or secret; expected id@scope+scope:secret pairs separated by commas"
            ));
        }
        keys.push(HmacKey::new(id, secret, scopes));
    }
    if keys.is_empty() {
        return Err("at least one id@scope+scope:secret pair is required".into());
    }
    Ok(HmacKeys(keys))
}

/// How a signed endpoint is reached: who may call it, which signature forms it takes,
/// and how large its body may be. Registered on each resource as app data.
#[derive(Clone, Copy, Debug)]
pub struct WritePolicy {
    /// Any one of these scopes is enough.
    pub scopes: &'static [Scope],
    /// One of the old API's POST endpoints: the old clients' body-only signatures are
    /// accepted here (legacy only while `LOGCANARY_HMAC_LEGACY` is on).
    pub old_api: bool,
    /// Largest body, in bytes; `None`: `LOGCANARY_MAX_BODY_BYTES`.
    pub max_body: Option<usize>,
}

impl WritePolicy {
    /// An endpoint added by logcanary: request-bound signatures only.
    pub const fn bound(scopes: &'static [Scope], max_body: usize) -> Self {
        Self {
            scopes,
            old_api: false,
            max_body: Some(max_body),
        }
    }

    /// One of the old API's POST endpoints.
    pub const fn old_api(scopes: &'static [Scope], max_body: Option<usize>) -> Self {
        Self {
            scopes,
            old_api: true,
            max_body,
        }
    }
}

/// Who made a request, once their credential held.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The key id, or `read-token` / `dashboard-token` for a bearer token, or
    /// `anonymous` for an open read in development.
    pub id: String,
    pub scopes: Scopes,
}

impl Caller {
    /// 403 unless the caller holds one of `needed`.
    pub fn require(&self, needed: &[Scope]) -> Result<(), ApiError> {
        if self.scopes.intersects(Scopes::of(needed)) {
            return Ok(());
        }
        let needed: Vec<&str> = needed.iter().map(|s| s.name()).collect();
        Err(ApiError::Forbidden(format!(
            "The credential \"{}\" may not do this: it needs the {} scope (it has {}).",
            self.id,
            needed.join(" or "),
            self.scopes
        )))
    }
}

#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    config_keys: Vec<HmacKey>,
    db: db::Db,
    /// Keys of `api_keys`, and when they were read.
    db_keys: Mutex<(Option<Instant>, Arc<Vec<HmacKey>>)>,
    legacy_allowed: bool,
    production: bool,
    /// Stored keys refused for a weak secret, already warned about.
    weak_warned: Mutex<HashSet<String>>,
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

/// A signature whose header held, being checked against the body as it arrives: one MAC
/// per candidate key (the key the request names, or every key).
pub struct PendingCheck {
    signature: Signature,
    keys: Arc<Vec<HmacKey>>,
    /// Indexes into `keys` with their MAC so far.
    macs: Vec<(usize, MacState)>,
    key_id: Option<String>,
}

impl PendingCheck {
    /// Feeds the next chunk of the body to every candidate MAC.
    pub fn update(&mut self, chunk: &[u8]) {
        for (_, mac) in &mut self.macs {
            mac.update(chunk);
        }
    }

    /// The key whose MAC matched. Every candidate is compared (no early exit), so the
    /// timing does not tell which key matched.
    fn matched(&self) -> Option<HmacKey> {
        let expected = self.signature.mac();
        self.macs.iter().fold(None, |found, (i, mac)| {
            let ok = mac.matches(expected);
            if ok && found.is_none() {
                Some(self.keys[*i].clone())
            } else {
                found
            }
        })
    }
}

/// The method, path and query of `req`, as a v2 signature binds them.
pub fn request_line(req: &HttpRequest) -> RequestLine<'_> {
    RequestLine {
        method: req.method().as_str(),
        path: req.path(),
        query: req.query_string(),
    }
}

/// The single answer for a signature that does not hold, whatever the reason (unknown key
/// id, wrong secret, wrong body): it must not tell which key ids exist.
fn invalid_signature() -> ApiError {
    ApiError::Unauthorized("Invalid signature.".into())
}

impl Verifier {
    pub fn new(
        config_keys: Vec<HmacKey>,
        db: db::Db,
        legacy_allowed: bool,
        production: bool,
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
                config_keys,
                db,
                db_keys: Mutex::new((None, Arc::new(Vec::new()))),
                legacy_allowed,
                production,
                weak_warned: Mutex::new(HashSet::new()),
                tolerance,
                seen: Mutex::new(ReplayCache::default()),
                claims,
            }),
        }
    }

    /// Whether the request carries a signature header at all.
    pub fn is_signed(req: &HttpRequest) -> bool {
        req.headers().contains_key(SIGNATURE_HEADER)
    }

    /// Checks the signature header before the body is read: present, well formed, a form
    /// this endpoint takes, a timestamp inside the window. Then prepares one MAC per
    /// candidate key, to be fed the body. Errors are 401s that say what is wrong without
    /// revealing which keys exist.
    pub async fn begin(&self, req: &HttpRequest, old_api: bool) -> Result<PendingCheck, ApiError> {
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
        match &signature {
            Signature::Bound { .. } => {}
            _ if !old_api => {
                return Err(ApiError::Unauthorized(
                    "This endpoint needs a request-bound signature: t=<unix seconds>,v2=<hex> (see API.md).".into(),
                ))
            }
            Signature::Legacy { .. } if !self.inner.legacy_allowed => {
                return Err(ApiError::Unauthorized(
                    "Plain body signatures are disabled; use t=<unix seconds>,v2=<hex>.".into(),
                ))
            }
            _ => {}
        }
        if let Some(t) = signature.timestamp() {
            let now = chrono::Utc::now().timestamp();
            if (now - t).unsigned_abs() > self.inner.tolerance.as_secs() {
                return Err(ApiError::Unauthorized(
                    "Signature timestamp is outside the tolerance window.".into(),
                ));
            }
        }
        let keys = self.keys(false).await;
        Ok(self.pending(req, signature, keys, key_id))
    }

    fn pending(
        &self,
        req: &HttpRequest,
        signature: Signature,
        keys: Arc<Vec<HmacKey>>,
        key_id: Option<String>,
    ) -> PendingCheck {
        let line = request_line(req);
        let macs = keys
            .iter()
            .enumerate()
            .filter(|(_, k)| key_id.as_deref().is_none_or(|id| k.id == id))
            .map(|(i, k)| {
                (
                    i,
                    signature.start(k.secret.expose_secret().as_bytes(), line),
                )
            })
            .collect();
        PendingCheck {
            signature,
            keys,
            macs,
            key_id,
        }
    }

    /// Ends the check once the whole `body` has been fed to `pending`: the key that
    /// matched (401 if none), its scope (403), then the replay guard (401). On success the
    /// caller is also put in the request's extensions.
    pub async fn finish(
        &self,
        req: &HttpRequest,
        pending: PendingCheck,
        body: &[u8],
        needed: &[Scope],
    ) -> Result<Caller, ApiError> {
        let key = match pending.matched() {
            Some(key) => key,
            None => {
                // A key added to api_keys moments ago may not be in the cache yet: look
                // again with fresh keys (at most once per MIN_DB_KEYS_REFRESH, so a flood
                // of bad requests cannot turn into a flood of queries), over the body
                // already read.
                let keys = self.keys(true).await;
                if Arc::ptr_eq(&keys, &pending.keys) {
                    return Err(invalid_signature());
                }
                let mut again = self.pending(req, pending.signature.clone(), keys, pending.key_id);
                again.update(body);
                again.matched().ok_or_else(invalid_signature)?
            }
        };
        let caller = Caller {
            id: key.id.clone(),
            scopes: key.scopes,
        };
        caller.require(needed)?;
        if let Some(t) = pending.signature.timestamp() {
            let mac: [u8; 32] =
                pending.signature.mac().try_into().map_err(|_| {
                    ApiError::Unauthorized("Invalid X-HMAC-Signature header.".into())
                })?;
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
        req.extensions_mut().insert(caller.clone());
        Ok(caller)
    }

    /// The configured and stored keys, for `GET /api/keys/`.
    pub async fn all_keys(&self) -> Arc<Vec<HmacKey>> {
        self.keys(false).await
    }

    /// How many keys come from configuration (they are first in [`Verifier::all_keys`]).
    pub fn config_key_count(&self) -> usize {
        self.inner.config_keys.len()
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

    /// Configured keys first, then the stored ones (cached for `DB_KEYS_REFRESH`, or
    /// `MIN_DB_KEYS_REFRESH` when `refresh`). The same `Arc` comes back while nothing
    /// was re-read.
    async fn keys(&self, refresh: bool) -> Arc<Vec<HmacKey>> {
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
        if let Some(keys) = cached {
            return keys;
        }
        match self.inner.db.run(db::api_keys::active).await {
            Ok(rows) => {
                let mut keys = self.inner.config_keys.clone();
                keys.extend(rows.into_iter().filter_map(|row| self.stored_key(row)));
                let keys = Arc::new(keys);
                if let Ok(mut g) = self.inner.db_keys.lock() {
                    *g = (Some(Instant::now()), keys.clone());
                }
                keys
            }
            Err(error) => {
                // Keep verifying with the configured keys and the last known ones.
                tracing::warn!(%error, "Cannot read api_keys; using the last known keys.");
                let last = self.inner.db_keys.lock().map(|g| g.1.clone()).ok();
                match last {
                    Some(keys) if !keys.is_empty() => keys,
                    _ => Arc::new(self.inner.config_keys.clone()),
                }
            }
        }
    }

    /// A row of `api_keys` as a key, unless its scopes are unknown or (in production) its
    /// secret is weak: such a row is skipped with a warning naming only its id.
    fn stored_key(&self, row: db::api_keys::StoredKey) -> Option<HmacKey> {
        let problem = match Scopes::parse(row.scopes.iter().map(String::as_str)) {
            Err(e) => Some(e),
            Ok(_) if self.inner.production => weak_secret(&row.secret).map(str::to_owned),
            Ok(_) => None,
        };
        if let Some(problem) = problem {
            let first = self
                .inner
                .weak_warned
                .lock()
                .map(|mut w| w.insert(row.key_id.clone()))
                .unwrap_or(false);
            if first {
                tracing::warn!(key_id = %row.key_id, %problem, "Ignoring a key of api_keys.");
            }
            return None;
        }
        let scopes = Scopes::parse(row.scopes.iter().map(String::as_str)).ok()?;
        Some(HmacKey::new(row.key_id, &row.secret, scopes))
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
    use super::*;

    fn summary(raw: &str) -> Vec<(String, String, Scopes)> {
        parse_keys(raw)
            .unwrap()
            .0
            .into_iter()
            .map(|k| (k.id, k.secret.expose_secret().to_owned(), k.scopes))
            .collect()
    }

    #[test]
    fn key_lists_with_and_without_scopes() {
        assert_eq!(
            summary("a:1, b@read+operate:2:with:colons"),
            vec![
                ("a".into(), "1".into(), Scopes::of(&[Scope::Ingest])),
                (
                    "b".into(),
                    "2:with:colons".into(),
                    Scopes::of(&[Scope::Read, Scope::Operate])
                ),
            ]
        );
        assert_eq!(
            summary("s3cret"),
            vec![(
                "default".into(),
                "s3cret".into(),
                Scopes::of(&[Scope::Ingest])
            )]
        );
        assert!(parse_keys("").is_err());
        assert!(parse_keys("a:").is_err());
        assert!(parse_keys("a@root:x").is_err());
    }

    #[test]
    fn parse_errors_never_repeat_the_secret() {
        for raw in [
            "good:fine,:topsecret-value",
            "a@nonsense:topsecret-value",
            "a@:topsecret-value",
        ] {
            let error = parse_keys(raw).unwrap_err();
            assert!(!error.contains("topsecret"), "{error}");
        }
    }

    #[test]
    fn debug_shows_ids_and_scopes_only() {
        let keys = parse_keys("ops@read+operate:very-secret-value").unwrap();
        let shown = format!("{keys:?}");
        assert!(shown.contains("ops@read+operate"), "{shown}");
        assert!(!shown.contains("very-secret-value"), "{shown}");
    }

    #[test]
    fn a_caller_needs_one_of_the_scopes() {
        let caller = Caller {
            id: "shipper".into(),
            scopes: Scopes::of(&[Scope::Ingest]),
        };
        assert!(caller.require(&[Scope::Ingest, Scope::Operate]).is_ok());
        let error = caller.require(&[Scope::Operate]).unwrap_err();
        assert!(matches!(error, ApiError::Forbidden(_)));
        assert!(error.to_string().contains("operate"), "{error}");
    }
}
