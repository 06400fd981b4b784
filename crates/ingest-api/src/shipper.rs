//! The write path of the shipper protocols (`/v1/logs`, `/loki/api/v1/push`, `/_bulk`):
//! an API token with the `ingest` scope instead of a body signature, then the body within
//! the same bounds as every other body, then `Content-Encoding` undone within
//! `LOGCANARY_MAX_BODY_BYTES`, and the decoded lines stored like a batch.
//!
//! Order of checks, nothing read before the credential holds: a token (401), its scope
//! (403), the declared length (413), the body (413, 408, 503), the decompressed size
//! (413), the encoding (415); each route then decodes its protocol (400 or per-record
//! rejections).

use actix_web::{dev::Payload, HttpMessage, HttpRequest};
use shippers::{DecodeError, ShippedEntry};

use crate::{
    access::app_state,
    auth::{Caller, Scope},
    body::{read_body, BodyPermit},
    errors::ApiError,
    ingest::{Committed, Submission},
    tokens,
};

/// The caller of a shipper request, or the 401/403 that refuses it.
pub async fn shipper_caller(req: &HttpRequest) -> Result<Caller, ApiError> {
    let state = app_state(req)?;
    let candidates = tokens::presented(req);
    if candidates.is_empty() {
        return Err(ApiError::Unauthorized(
            "This endpoint needs an API token: Authorization: Bearer <token>, or basic auth with the token as the password (ingest-api create-token makes one).".into(),
        ));
    }
    let caller = state
        .api_tokens
        .find(&candidates)
        .await
        .ok_or_else(|| ApiError::Unauthorized("Invalid API token.".into()))?;
    caller.require(&[Scope::Ingest])?;
    req.extensions_mut().insert(caller.clone());
    Ok(caller)
}

/// The body of an authorised shipper request, `Content-Encoding` undone.
pub async fn read_shipped(req: &HttpRequest, payload: Payload) -> Result<Vec<u8>, ApiError> {
    let state = app_state(req)?;
    let limit = state.max_body_bytes;
    let raw = read_body(req, payload, limit, |_| {}).await?;
    let encoding = req
        .headers()
        .get(actix_web::http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    if encoding.is_none_or(|e| e.trim().eq_ignore_ascii_case("identity")) {
        return Ok(Vec::from(raw));
    }
    let body = shippers::decompress(encoding, &raw, limit).map_err(decode_error)?;
    // The inflated copy counts against the in-flight budget as well.
    if let Some(permit) = req.extensions_mut().get_mut::<BodyPermit>() {
        permit.grow_to(raw.len() + body.len())?;
    }
    Ok(body)
}

/// A decoding failure as the answer it gets.
pub fn decode_error(error: DecodeError) -> ApiError {
    match error {
        DecodeError::Malformed(m) => ApiError::BadRequest(m),
        DecodeError::UnsupportedMediaType(m) | DecodeError::UnsupportedEncoding(m) => {
            ApiError::UnsupportedMediaType(m)
        }
        DecodeError::TooLarge(m) => ApiError::PayloadTooLarge(m),
    }
}

/// Stores decoded lines (one transaction, batch tasks of at most 10 000) and returns
/// their ids in order. Nothing to store: no transaction, no ids.
pub async fn store(
    req: &HttpRequest,
    protocol: &'static str,
    entries: Vec<ShippedEntry>,
) -> Result<Committed, ApiError> {
    if entries.is_empty() {
        return Ok(Committed {
            entry_ids: Vec::new(),
        });
    }
    let state = app_state(req)?;
    let (rows, attributes): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .map(|e| {
            let attributes = (!e.attributes.is_empty()).then(|| {
                let mut value = serde_json::Value::Object(e.attributes);
                strip_nul(&mut value);
                value
            });
            let row = db::models::NewLogEntry {
                logged_at: e.timestamp,
                severity: e.severity.to_owned(),
                message: e.message,
                source: e.source,
            };
            (row, attributes)
        })
        .unzip();
    let count = rows.len();
    let committed = state
        .ingestor
        .submit(Submission::shipped(rows, attributes))
        .await?;
    metrics::counter!("logcanary_shipper_entries_total", "protocol" => protocol)
        .increment(count as u64);
    Ok(committed)
}

/// Removes NUL characters from every string of `value`, keys included: Postgres `jsonb`
/// refuses them, and one would fail the whole transaction.
fn strip_nul(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) if s.contains('\0') => s.retain(|c| c != '\0'),
        Value::Array(items) => items.iter_mut().for_each(strip_nul),
        Value::Object(map) if map.keys().any(|k| k.contains('\0')) => {
            let cleaned = std::mem::take(map)
                .into_iter()
                .map(|(k, mut v)| {
                    strip_nul(&mut v);
                    (k.replace('\0', ""), v)
                })
                .collect();
            *map = cleaned;
        }
        Value::Object(map) => map.values_mut().for_each(strip_nul),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::strip_nul;

    #[test]
    fn nul_characters_leave_every_string_and_key() {
        let mut v = json!({"a\0b": ["x\0", {"k": "v\0w"}], "n": 1});
        strip_nul(&mut v);
        assert_eq!(v, json!({"ab": ["x", {"k": "vw"}], "n": 1}));
    }

    /// The shippers store a level word as one of the five levels; the detector reads level
    /// words of `make eval` files and stored entries itself. The two lists must agree, or a
    /// line would weigh differently by the way it came in.
    #[test]
    fn shippers_and_the_detector_read_level_words_alike() {
        let words = [
            "trace",
            "debug",
            "fine",
            "finer",
            "finest",
            "info",
            "information",
            "notice",
            "warn",
            "warning",
            "err",
            "error",
            "severe",
            "fatal",
            "failure",
            "critical",
            "crit",
            "alert",
            "emerg",
            "emergency",
            "panic",
            "verbose",
            "",
            "nonsense",
        ];
        for word in words {
            for spelled in [word.to_owned(), word.to_uppercase()] {
                assert_eq!(
                    shippers::severity_from(None, Some(&spelled)),
                    detector::scorer::Severity::parse(&spelled).as_str(),
                    "{spelled:?}"
                );
            }
        }
    }
}
