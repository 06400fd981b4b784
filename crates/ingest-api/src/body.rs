//! Reading a write request's body: content type, size limit, signature, then JSON.
//! The order matters: nothing is parsed before the signature over the raw bytes holds.

use actix_web::{web, HttpRequest};
use futures::StreamExt;
use serde_json::Value;

use crate::{errors::ApiError, startup::AppState, validation};

/// Checks and reads a signed JSON body.
pub async fn signed_json(
    req: &HttpRequest,
    mut payload: web::Payload,
    state: &AppState,
) -> Result<Value, ApiError> {
    let content_type = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Unsupported media type \"{content_type}\" in request; use application/json."
        )));
    }
    let limit = state.max_body_bytes;
    if let Some(length) = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if length > limit {
            return Err(too_large(limit));
        }
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::BadRequest(format!("Could not read the request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    state.verifier.verify(req, &body).await?;
    validation::parse_json(&body)
}

fn too_large(limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "Request body is larger than the limit of {limit} bytes."
    ))
}

/// Optional bearer token for reads (`LOGCANARY_READ_TOKEN`).
pub fn check_read_access(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let Some(expected) = &state.read_token else {
        return Ok(());
    };
    let given = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    use subtle_eq::ct_eq;
    if ct_eq(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "Authentication credentials were not provided or are invalid.".into(),
        ))
    }
}

pub(crate) mod subtle_eq {
    /// Constant-time equality for secrets of possibly different lengths.
    pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
        use sha2::{Digest, Sha256};
        // Comparing fixed-size digests hides the length and the position of a mismatch.
        let (da, db) = (Sha256::digest(a), Sha256::digest(b));
        da.iter()
            .zip(db.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
    }
}
