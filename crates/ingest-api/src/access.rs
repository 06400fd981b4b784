//! Reads and the bearer tokens: the [`ReadAccess`] and [`AdminAccess`] extractors every
//! GET under `/api/` goes through, and the token comparison the dashboard's feedback
//! uses too.
//!
//! A GET is let through with, in this order: a bearer token (`LOGCANARY_READ_TOKEN`:
//! `read`; `LOGCANARY_DASHBOARD_TOKEN`: `read` + `operate`; or an API token with its
//! scopes, [`crate::tokens`]), else a request-bound HMAC
//! signature (`t=..,v2=..`) of a key with the scope, else nothing at all, but only for
//! reads in development with no read token set ([`AppState::reads_open`]). A credential
//! that does not hold answers 401; one that holds without the scope, 403.

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpMessage, HttpRequest};
use futures::future::LocalBoxFuture;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{
    auth::{Caller, Scope, Scopes, Verifier},
    body::{read_body, SMALL_BODY_BYTES},
    config::Secret,
    errors::ApiError,
    state::AppState,
};

/// Proof that the request may read (the `read` scope). A handler taking it answers
/// 401/403 before anything else is looked at.
pub struct ReadAccess;

impl FromRequest for ReadAccess {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let (req, payload) = (req.clone(), payload.take());
        Box::pin(async move {
            authorize(&req, payload, Scope::Read)
                .await
                .map(|_| ReadAccess)
        })
    }
}

/// Proof that the request holds the `admin` scope (an HMAC key's; no bearer token has it).
pub struct AdminAccess(pub Caller);

impl FromRequest for AdminAccess {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let (req, payload) = (req.clone(), payload.take());
        Box::pin(async move {
            authorize(&req, payload, Scope::Admin)
                .await
                .map(AdminAccess)
        })
    }
}

fn not_authenticated() -> ApiError {
    ApiError::Unauthorized("Authentication credentials were not provided or are invalid.".into())
}

async fn authorize(req: &HttpRequest, payload: Payload, needed: Scope) -> Result<Caller, ApiError> {
    let state = app_state(req)?;
    if let Some(given) = bearer(req) {
        let caller = match state.tokens.find(given) {
            Some(caller) => caller,
            // An API token (`ingest-api create-token --scopes read`) reads too.
            None => state
                .api_tokens
                .find(&[given.to_owned()])
                .await
                .ok_or_else(not_authenticated)?,
        };
        caller.require(&[needed])?;
        req.extensions_mut().insert(caller.clone());
        return Ok(caller);
    }
    if Verifier::is_signed(req) {
        let mut pending = state.verifier.begin(req, false).await?;
        let body = read_body(req, payload, SMALL_BODY_BYTES, |c| pending.update(c)).await?;
        return state.verifier.finish(req, pending, &body, &[needed]).await;
    }
    if needed == Scope::Read && state.reads_open {
        return Ok(Caller {
            id: "anonymous".into(),
            scopes: Scopes::of(&[Scope::Read]),
        });
    }
    Err(not_authenticated())
}

/// The shared state, for extractors.
pub(crate) fn app_state(req: &HttpRequest) -> Result<&web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal("the app state is not registered".into()))
}

/// The token of `Authorization: Bearer <token>`, if the request has one.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// The bearer tokens and the caller each stands for.
#[derive(Default)]
pub struct BearerTokens(Vec<(Secret, Caller)>);

impl BearerTokens {
    /// `LOGCANARY_READ_TOKEN` (`read`) and `LOGCANARY_DASHBOARD_TOKEN` (`read` +
    /// `operate`), where set and not empty.
    pub fn new(read_token: Option<Secret>, dashboard_token: Option<Secret>) -> Self {
        let mut tokens = Vec::new();
        let set = |t: Option<Secret>| t.filter(|t| !t.expose().trim().is_empty());
        if let Some(token) = set(read_token) {
            let caller = Caller {
                id: "read-token".into(),
                scopes: Scopes::of(&[Scope::Read]),
            };
            tokens.push((token, caller));
        }
        if let Some(token) = set(dashboard_token) {
            let caller = Caller {
                id: "dashboard-token".into(),
                scopes: Scopes::of(&[Scope::Read, Scope::Operate]),
            };
            tokens.push((token, caller));
        }
        Self(tokens)
    }

    /// The caller whose token is `given`. Every token is compared (in constant time), so
    /// the timing tells nothing about which matched or how much of one did.
    pub fn find(&self, given: &str) -> Option<Caller> {
        self.0.iter().fold(None, |found, (token, caller)| {
            let ok = token_matches(given, token.expose());
            if ok && found.is_none() {
                Some(caller.clone())
            } else {
                found
            }
        })
    }

    /// Whether any token grants `scope`.
    pub fn grants(&self, scope: Scope) -> bool {
        self.0.iter().any(|(_, c)| c.scopes.contains(scope))
    }

    /// Whether any token grants `read`.
    pub fn any_read(&self) -> bool {
        self.grants(Scope::Read)
    }
}

/// `given == expected`, compared in constant time. The digests of both are compared, so
/// neither the length of the token nor the position of a mismatch shows in the timing.
pub fn token_matches(given: &str, expected: &str) -> bool {
    Sha256::digest(given.as_bytes())
        .ct_eq(&Sha256::digest(expected.as_bytes()))
        .into()
}

/// Whether the request carries `Authorization: Bearer <expected>`, compared in constant
/// time.
pub fn bearer_matches(req: &HttpRequest, expected: &str) -> bool {
    token_matches(bearer(req).unwrap_or(""), expected)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn only_the_exact_bearer_token_matches() {
        let with = |value: &str| {
            TestRequest::default()
                .insert_header((header::AUTHORIZATION, value))
                .to_http_request()
        };
        assert!(bearer_matches(&with("Bearer s3cret"), "s3cret"));
        for wrong in [
            "Bearer s3cre",
            "Bearer s3cret ",
            "bearer s3cret",
            "s3cret",
            "",
        ] {
            assert!(!bearer_matches(&with(wrong), "s3cret"), "{wrong:?}");
        }
        assert!(!bearer_matches(
            &TestRequest::default().to_http_request(),
            "s3cret"
        ));
    }
}
