//! Bearer tokens: the optional read token (`LOGCANARY_READ_TOKEN`) every read goes
//! through, as the [`ReadAccess`] extractor, and the comparison the dashboard's operator
//! token uses too.

use std::future::{ready, Ready};

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{errors::ApiError, state::AppState};

/// Proof that the request may read: the read token matched, or none is configured. A
/// handler taking it answers 401 before anything else is looked at.
pub struct ReadAccess;

impl FromRequest for ReadAccess {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(check_read_access(req))
    }
}

fn check_read_access(req: &HttpRequest) -> Result<ReadAccess, ApiError> {
    let state = app_state(req)?;
    match &state.read_token {
        Some(expected) if !bearer_matches(req, expected.expose()) => Err(ApiError::Unauthorized(
            "Authentication credentials were not provided or are invalid.".into(),
        )),
        _ => Ok(ReadAccess),
    }
}

/// The shared state, for extractors.
pub(crate) fn app_state(req: &HttpRequest) -> Result<&web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal("the app state is not registered".into()))
}

/// Whether the request carries `Authorization: Bearer <expected>`, compared in constant
/// time. The digests of both are compared, so neither the length of the token nor the
/// position of a mismatch shows in the timing.
pub fn bearer_matches(req: &HttpRequest, expected: &str) -> bool {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    Sha256::digest(given.as_bytes())
        .ct_eq(&Sha256::digest(expected.as_bytes()))
        .into()
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
