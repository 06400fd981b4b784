//! Reading a write request's body: content type, size limit, signature, then JSON.
//! The order matters: nothing is parsed before the signature over the raw bytes holds.
//!
//! Handlers take the result as an extractor: [`SignedJson`] for the JSON writes,
//! [`SignedDelete`] for a DELETE (signed, nothing to parse). Either answers with our
//! error bodies (415, 413, 401, 400) before the handler runs.

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use futures::{future::LocalBoxFuture, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{access::app_state, errors::ApiError, validation};

/// Largest body of a signed DELETE: it has nothing to say, so it stays small.
const MAX_DELETE_BODY_BYTES: usize = 64 * 1024;

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
    require_json(&req)?;
    let limit = app_state(&req)?.max_body_bytes;
    if let Some(length) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if length > limit {
            return Err(too_large(limit));
        }
    }
    let body = read_signed(&req, payload, limit, || too_large(limit)).await?;
    let value = validation::parse_json(&body)?;
    serde_json::from_value(value)
        .map(SignedJson)
        .map_err(|e| ApiError::BadRequest(format!("JSON parse error - {e}")))
}

/// A DELETE whose (usually empty) body carries a valid signature: a DELETE has no JSON
/// to parse, but it is a write.
pub struct SignedDelete;

impl FromRequest for SignedDelete {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            read_signed(&req, payload, MAX_DELETE_BODY_BYTES, || {
                ApiError::PayloadTooLarge("A DELETE body must stay small.".into())
            })
            .await
            .map(|_| SignedDelete)
        })
    }
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

/// The whole body, once its signature held; refused with `too_large()` as soon as it
/// passes `limit` bytes.
async fn read_signed(
    req: &HttpRequest,
    payload: Payload,
    limit: usize,
    too_large: impl Fn() -> ApiError,
) -> Result<web::BytesMut, ApiError> {
    let body = read_limited(payload, limit, too_large).await?;
    app_state(req)?.verifier.verify(req, &body).await?;
    Ok(body)
}

/// The whole body, refused with `too_large()` as soon as it passes `limit` bytes.
async fn read_limited(
    mut payload: Payload,
    limit: usize,
    too_large: impl Fn() -> ApiError,
) -> Result<web::BytesMut, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::BadRequest(format!("Could not read the request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn too_large(limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "Request body is larger than the limit of {limit} bytes."
    ))
}
