//! API tokens: the credential a log shipper can send. OpenTelemetry exporters, Loki
//! clients, Elasticsearch clients and syslog-ng cannot compute our HMAC over each body,
//! but every one of them can send a fixed secret in a header.
//!
//! A token is 256 random bits (`lc_` + 43 base64url characters) made by
//! `ingest-api create-token`, which prints it once. Only its SHA-256 is kept, in the
//! `api_tokens` table or in `LOGCANARY_API_TOKENS` (`name@scope+scope:<sha256 hex>`), so
//! neither the database nor the Kubernetes secret holds a usable credential. A request is
//! matched by the digest of what it sent: one map lookup, whose timing depends on the
//! digest and not on how much of a real token the sender guessed.
//!
//! Accepted forms, all with the same token ([`presented`]): `Authorization: Bearer <t>`
//! (OTLP exporters, syslog-ng, Vector), `Authorization: Basic base64(<user>:<t>)` (Loki
//! clients, Promtail, Fluent Bit; the user name is not checked), `Authorization: ApiKey
//! <t>` or `ApiKey base64(<id>:<t>)` (Elasticsearch clients and Beats).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix_web::{http::header, HttpRequest};
use base64::{engine::general_purpose, Engine as _};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::auth::{Caller, Scope, Scopes};

/// Prefix of every token, so a leaked one is easy to recognise (secret scanners).
pub const TOKEN_PREFIX: &str = "lc_";

/// The development token of `make run` (its digest is refused in production).
pub const DEV_TOKEN: &str = "lc_dev-shipper-token";

/// A new random token.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!(
        "{TOKEN_PREFIX}{}",
        general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The digest under which a token is stored.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// One configured token: a name, the digest, the scopes.
#[derive(Clone, Debug)]
pub struct ConfiguredToken {
    pub name: String,
    pub sha256: [u8; 32],
    pub scopes: Scopes,
}

/// `LOGCANARY_API_TOKENS`, parsed.
#[derive(Clone, Debug, Default)]
pub struct ConfiguredTokens(pub Vec<ConfiguredToken>);

/// Parses `name@scope+scope:<sha256 hex>,...` (`name:<hex>` gets `ingest` only). Only
/// digests are accepted: a token itself in the configuration is refused, with a hint.
pub fn parse_tokens(raw: &str) -> Result<ConfiguredTokens, String> {
    let mut tokens = Vec::new();
    for (n, part) in raw
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .enumerate()
    {
        let n = n + 1;
        let Some((name, hash)) = part.split_once(':') else {
            return Err(format!(
                "token {n}: expected name@scope+scope:<sha256 hex> (see `ingest-api create-token`)"
            ));
        };
        let (name, scopes) = match name.split_once('@') {
            Some((name, scopes)) => (
                name,
                Scopes::parse(scopes.split('+')).map_err(|e| format!("token {n} ({name}): {e}"))?,
            ),
            None => (name, Scopes::of(&[Scope::Ingest])),
        };
        let hash = hash.trim().strip_prefix("sha256:").unwrap_or(hash.trim());
        let sha256: [u8; 32] = hex::decode(hash)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                format!(
                    "token {n} ({name}): the part after ':' must be the SHA-256 of the token as 64 hex digits, not the token itself (`ingest-api create-token --no-store` prints it)"
                )
            })?;
        if name.is_empty() {
            return Err(format!("token {n} has an empty name"));
        }
        tokens.push(ConfiguredToken {
            name: name.to_owned(),
            sha256,
            scopes,
        });
    }
    Ok(ConfiguredTokens(tokens))
}

/// The token candidates a request presents (none: no usable `Authorization` header).
/// `ApiKey base64(id:key)` yields both the raw value and the key.
pub fn presented(req: &HttpRequest) -> Vec<String> {
    let Some(value) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Vec::new();
    };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    let decoded = || {
        general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        vec![rest.to_owned()]
    } else if scheme.eq_ignore_ascii_case("basic") {
        // Clients put the token as the password; some (and curl -u token:) as the user.
        match decoded().and_then(|d| d.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned()))) {
            Some((user, pass)) if pass.is_empty() => vec![user],
            Some((_, pass)) => vec![pass],
            None => Vec::new(),
        }
    } else if scheme.eq_ignore_ascii_case("apikey") {
        let mut out = vec![rest.to_owned()];
        if let Some((_, key)) = decoded().as_deref().and_then(|d| d.split_once(':')) {
            out.push(key.to_owned());
        }
        out
    } else {
        Vec::new()
    }
}

/// How long the stored tokens are used before they are read again.
const REFRESH: Duration = Duration::from_secs(10);
/// A token not found is looked up in the database again at most this often, so a flood
/// of wrong tokens cannot become a flood of queries.
const MIN_REFRESH: Duration = Duration::from_secs(1);

type ByDigest = HashMap<[u8; 32], Caller>;

/// The tokens of the configuration and of `api_tokens`, by digest.
#[derive(Clone)]
pub struct ApiTokens {
    configured: Arc<ByDigest>,
    db: db::Db,
    stored: Arc<Mutex<(Option<Instant>, Arc<ByDigest>)>>,
    refreshing: Arc<tokio::sync::Mutex<()>>,
}

impl ApiTokens {
    pub fn new(configured: ConfiguredTokens, db: db::Db) -> Self {
        let configured = configured
            .0
            .into_iter()
            .map(|t| {
                let caller = Caller {
                    id: t.name,
                    scopes: t.scopes,
                };
                (t.sha256, caller)
            })
            .collect();
        Self {
            configured: Arc::new(configured),
            db,
            stored: Arc::new(Mutex::new((None, Arc::new(HashMap::new())))),
            refreshing: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The caller whose token is one of `candidates`, if any.
    pub async fn find(&self, candidates: &[String]) -> Option<Caller> {
        let digests: Vec<[u8; 32]> = candidates
            .iter()
            .filter(|c| !c.is_empty())
            .map(|c| digest(c))
            .collect();
        if digests.is_empty() {
            return None;
        }
        if let Some(found) = digests.iter().find_map(|d| self.configured.get(d)) {
            return Some(found.clone());
        }
        let stored = self.stored(REFRESH).await;
        if let Some(found) = digests.iter().find_map(|d| stored.get(d)) {
            return Some(found.clone());
        }
        // Created moments ago? Look once more with fresh rows.
        let fresh = self.stored(MIN_REFRESH).await;
        digests.iter().find_map(|d| fresh.get(d)).cloned()
    }

    async fn stored(&self, max_age: Duration) -> Arc<ByDigest> {
        if let Some(cached) = self.cached(max_age) {
            return cached;
        }
        // One reader at a time; the others use what it read.
        let _one = self.refreshing.lock().await;
        if let Some(cached) = self.cached(max_age) {
            return cached;
        }
        let rows = self.db.run(db::api_tokens::active).await;
        let last = self.stored.lock().map(|g| g.1.clone()).unwrap_or_default();
        let map = match rows {
            Ok(rows) => Arc::new(
                rows.into_iter()
                    .filter_map(|row| {
                        let sha: [u8; 32] = row.token_sha256.try_into().ok()?;
                        let scopes = Scopes::parse(row.scopes.iter().map(String::as_str)).ok()?;
                        Some((
                            sha,
                            Caller {
                                id: row.name,
                                scopes,
                            },
                        ))
                    })
                    .collect(),
            ),
            Err(error) => {
                tracing::warn!(%error, "Cannot read api_tokens; using the last known tokens.");
                last
            }
        };
        if let Ok(mut g) = self.stored.lock() {
            *g = (Some(Instant::now()), map.clone());
        }
        map
    }

    fn cached(&self, max_age: Duration) -> Option<Arc<ByDigest>> {
        let g = self.stored.lock().ok()?;
        match g.0 {
            Some(at) if at.elapsed() < max_age => Some(g.1.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn with(value: &str) -> Vec<String> {
        presented(
            &TestRequest::default()
                .insert_header((header::AUTHORIZATION, value))
                .to_http_request(),
        )
    }

    #[test]
    fn every_shipper_form_presents_the_token() {
        let b64 = |s: &str| general_purpose::STANDARD.encode(s);
        assert_eq!(with("Bearer lc_x"), ["lc_x"]);
        assert_eq!(with(&format!("Basic {}", b64("loki:lc_x"))), ["lc_x"]);
        assert_eq!(with(&format!("Basic {}", b64("lc_x:"))), ["lc_x"]);
        assert_eq!(with("ApiKey lc_x"), ["lc_x"]);
        let encoded = b64("shipper:lc_x");
        assert_eq!(
            with(&format!("ApiKey {encoded}")),
            [encoded.clone(), "lc_x".to_owned()]
        );
        assert!(with("Digest lc_x").is_empty());
        assert!(with("Basic !!!").is_empty());
        assert!(presented(&TestRequest::default().to_http_request()).is_empty());
    }

    #[test]
    fn generated_tokens_are_long_random_and_prefixed() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
    }

    #[test]
    fn configuration_takes_digests_only_and_never_echoes_a_token() {
        let hash = hex::encode(digest("lc_secret"));
        let parsed = parse_tokens(&format!("otel@ingest+read:{hash},loki:sha256:{hash}")).unwrap();
        assert_eq!(parsed.0.len(), 2);
        assert_eq!(parsed.0[0].name, "otel");
        assert!(parsed.0[0].scopes.contains(Scope::Read));
        assert!(!parsed.0[1].scopes.contains(Scope::Read));
        assert_eq!(parsed.0[1].sha256, digest("lc_secret"));
        let error = parse_tokens("otel:lc_secret").unwrap_err();
        assert!(!error.contains("lc_secret"), "{error}");
        assert!(error.contains("SHA-256"), "{error}");
        assert!(parse_tokens("otel@nope:00").is_err());
    }
}
