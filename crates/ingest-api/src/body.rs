//! Reading a request's body within bounds, and a signed write's body with its signature.
//!
//! Every body is read through [`read_body`]: at most the endpoint's limit (413), within
//! `LOGCANARY_BODY_TIMEOUT_SECS` (408), and only while the bytes all requests hold
//! together stay under `LOGCANARY_MAX_INFLIGHT_BODY_BYTES` (503 with `Retry-After`), so
//! no number of slow or bogus uploads can grow the process past that budget.
//!
//! A signed write is checked in this order, nothing parsed before its signature holds:
//! content type (415), declared length (413), signature header (401, before a byte of the
//! body is read), the body itself fed to the MAC as it arrives (413, 408, 503), the MAC
//! (401), the key's scope (403), replay (401), then JSON (400). Handlers take the result as
//! an extractor: [`SignedJson`] for the JSON writes, [`SignedDelete`] for a DELETE (signed,
//! nothing to parse). Which scopes, signature forms and body limit apply is the
//! resource's [`WritePolicy`], registered with it.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpMessage, HttpRequest};
use futures::{future::LocalBoxFuture, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    access::app_state,
    auth::{Caller, WritePolicy},
    errors::ApiError,
    validation,
};

/// Body limit of the small writes (a DELETE, feedback, periodic tasks, a pattern run).
pub const SMALL_BODY_BYTES: usize = 64 * 1024;
/// Body limit of `POST /api/logs/`: one entry of at most 65 536 characters, even with
/// every character JSON-escaped (`\uXXXX`), fits.
pub const ENTRY_BODY_BYTES: usize = 512 * 1024;
/// Body limit of `POST /api/real-time-analysis/`: 10 000 ids.
pub const IDS_BODY_BYTES: usize = 1024 * 1024;

/// A JSON body whose signature held, parsed as `T` (by default the raw [`Value`], which
/// the handler validates field by field with [`crate::validation`]).
pub struct SignedJson<T = Value>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for SignedJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        Box::pin(signed_json(req.clone(), payload.take()))
    }
}

async fn signed_json<T: DeserializeOwned>(
    req: HttpRequest,
    payload: Payload,
) -> Result<SignedJson<T>, ApiError> {
    let policy = write_policy(&req)?;
    require_json(&req)?;
    let (body, _) = read_signed(&req, payload, policy).await?;
    let value = validation::parse_json(&body)?;
    serde_json::from_value(value)
        .map(SignedJson)
        .map_err(|e| ApiError::BadRequest(format!("JSON parse error - {e}")))
}

/// A DELETE whose (usually empty) body carries a valid request-bound signature: a DELETE
/// has no JSON to parse, but it is a write.
pub struct SignedDelete;

impl FromRequest for SignedDelete {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let policy = write_policy(&req)?;
            read_signed(&req, payload, policy)
                .await
                .map(|_| SignedDelete)
        })
    }
}

/// The resource's [`WritePolicy`]; a signed extractor on a resource without one is a
/// programming error.
fn write_policy(req: &HttpRequest) -> Result<WritePolicy, ApiError> {
    req.app_data::<WritePolicy>()
        .copied()
        .ok_or_else(|| ApiError::Internal(format!("no write policy on {}", req.path())))
}

/// Refuses (415) a body that is not declared `application/json`.
pub fn require_json(req: &HttpRequest) -> Result<(), ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "Unsupported media type \"{content_type}\" in request; use application/json."
        )))
    }
}

/// The whole body, once its signature held and its key has one of the policy's scopes.
pub async fn read_signed(
    req: &HttpRequest,
    payload: Payload,
    policy: WritePolicy,
) -> Result<(web::BytesMut, Caller), ApiError> {
    let state = app_state(req)?;
    let limit = policy.max_body.unwrap_or(state.max_body_bytes);
    // A declared length past the limit is refused before the signature is looked at.
    check_declared_length(req, limit)?;
    let mut pending = state.verifier.begin(req, policy.old_api).await?;
    let body = read_body(req, payload, limit, |chunk| pending.update(chunk)).await?;
    let caller = state
        .verifier
        .finish(req, pending, &body, policy.scopes)
        .await?;
    Ok((body, caller))
}

fn declared_length(req: &HttpRequest) -> Option<usize> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}

fn check_declared_length(req: &HttpRequest, limit: usize) -> Result<(), ApiError> {
    match declared_length(req) {
        Some(length) if length > limit => Err(too_large(limit)),
        _ => Ok(()),
    }
}

/// The whole body, each chunk passed to `on_chunk` as it arrives: refused with 413 past
/// `limit` bytes, 408 past the body time-out, 503 when the in-flight budget cannot hold
/// it. The bytes stay counted against the budget until the request is dropped.
pub async fn read_body(
    req: &HttpRequest,
    mut payload: Payload,
    limit: usize,
    mut on_chunk: impl FnMut(&[u8]),
) -> Result<web::BytesMut, ApiError> {
    let state = app_state(req)?;
    check_declared_length(req, limit)?;
    let mut permit = state.body_budget.permit();
    if let Some(length) = declared_length(req) {
        permit.grow_to(length)?;
    }
    let deadline = tokio::time::Instant::now() + state.body_timeout;
    let mut body = web::BytesMut::new();
    loop {
        let next = tokio::time::timeout_at(deadline, payload.next())
            .await
            .map_err(|_| {
                ApiError::RequestTimeout(format!(
                    "The request body did not arrive within {} s.",
                    state.body_timeout.as_secs()
                ))
            })?;
        let Some(chunk) = next else { break };
        let chunk = chunk
            .map_err(|e| ApiError::BadRequest(format!("Could not read the request body: {e}")))?;
        let length = body.len() + chunk.len();
        if length > limit {
            return Err(too_large(limit));
        }
        permit.grow_to(length)?;
        on_chunk(&chunk);
        body.extend_from_slice(&chunk);
    }
    req.extensions_mut().insert(permit);
    Ok(body)
}

fn too_large(limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "Request body is larger than the limit of {limit} bytes."
    ))
}

/// Request-body bytes all requests together may hold (`LOGCANARY_MAX_INFLIGHT_BODY_BYTES`).
#[derive(Clone)]
pub struct BodyBudget {
    limit: usize,
    used: Arc<AtomicUsize>,
}

impl BodyBudget {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            used: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    fn permit(&self) -> BodyPermit {
        BodyPermit {
            budget: self.clone(),
            held: 0,
        }
    }
}

/// Bytes one request holds of the [`BodyBudget`]; given back when dropped.
pub struct BodyPermit {
    budget: BodyBudget,
    held: usize,
}

impl BodyPermit {
    /// Holds `total` bytes in all (no-op when it already does), or answers 503.
    pub fn grow_to(&mut self, total: usize) -> Result<(), ApiError> {
        if total <= self.held {
            return Ok(());
        }
        let more = total - self.held;
        let limit = self.budget.limit;
        self.budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + more <= limit).then_some(used + more)
            })
            .map_err(|_| {
                metrics::counter!("logcanary_http_body_budget_refusals_total").increment(1);
                ApiError::Busy(
                    "The server is receiving too many request bodies at once; retry shortly."
                        .into(),
                )
            })?;
        self.held = total;
        metrics::gauge!("logcanary_http_inflight_body_bytes").set(self.budget.used() as f64);
        Ok(())
    }
}

impl Drop for BodyPermit {
    fn drop(&mut self) {
        if self.held > 0 {
            self.budget.used.fetch_sub(self.held, Ordering::AcqRel);
            metrics::gauge!("logcanary_http_inflight_body_bytes").set(self.budget.used() as f64);
        }
    }
}

/// The time-out of [`read_body`] (`LOGCANARY_BODY_TIMEOUT_SECS`).
pub fn body_timeout(secs: u64) -> Duration {
    Duration::from_secs(secs.max(1))
}
