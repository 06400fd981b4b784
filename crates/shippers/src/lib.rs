//! Decoding what common log shippers send into one neutral entry type, [`ShippedEntry`],
//! so the ingest routes can take OpenTelemetry (OTLP/HTTP `POST /v1/logs`), Loki
//! (`POST /loki/api/v1/push`) and Elasticsearch bulk (`POST /_bulk`) clients as they are.
//!
//! Everything here is a pure function over bytes: this crate must not do I/O and must not
//! depend on an HTTP framework, the database, the queue or any other logcanary crate. The
//! routes in `ingest-api` read the body within their own limit, call [`format_of`] and
//! [`decompress`], then one of [`otlp::decode`], [`loki::decode`] or
//! [`elastic::decode_bulk`], store the entries and answer with the protocol's response
//! ([`otlp::response`], [`elastic::bulk_response`]).
//!
//! One bad record never fails a request: it is reported in [`Decoded::rejected`] (or as a
//! bulk item error) with the reason, and the rest are taken. A [`DecodeError`] means the
//! request as a whole cannot be read (its framing, media type, encoding or size).
//!
//! The limits match `ingest-api`'s validation: a message of more than
//! [`MAX_MESSAGE_CHARS`] characters rejects that record, a source longer than
//! [`MAX_SOURCE_CHARS`] is cut, and attributes are kept to [`MAX_ATTRIBUTES`] per entry of
//! at most [`MAX_ATTRIBUTE_JSON_BYTES`] each (the rest dropped). No other hidden limit
//! applies: how many records a request holds is bounded by the caller's body limit.

mod compression;
pub mod elastic;
mod entry;
pub mod loki;
pub mod otlp;
mod severity;

pub use compression::decompress;
pub use severity::{severity_from, severity_from_syslog};

/// The longest message taken, in characters (the same as `ingest-api`'s validation).
pub const MAX_MESSAGE_CHARS: usize = 65_536;
/// The longest source kept, in characters; a longer one is cut on a character boundary.
pub const MAX_SOURCE_CHARS: usize = 255;
/// At most this many attributes are kept per entry; the rest are dropped.
pub const MAX_ATTRIBUTES: usize = 64;
/// An attribute whose value takes more than this many bytes as JSON is dropped.
pub const MAX_ATTRIBUTE_JSON_BYTES: usize = 4096;

/// One log record as logcanary stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct ShippedEntry {
    pub timestamp: chrono::DateTime<chrono::Utc>,
    /// One of `"DEBUG"`, `"INFO"`, `"WARNING"`, `"ERROR"`, `"CRITICAL"`.
    pub severity: &'static str,
    /// Never blank, at most [`MAX_MESSAGE_CHARS`] characters, no NUL character.
    pub message: String,
    /// At most [`MAX_SOURCE_CHARS`] characters, never empty, no NUL character.
    pub source: Option<String>,
    /// Resource, stream and record attributes, flattened `"key" -> value`, bounded by
    /// [`MAX_ATTRIBUTES`] and [`MAX_ATTRIBUTE_JSON_BYTES`].
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// A record that could not be taken, with why (index = position in the request, as the
/// protocol counts it: OTLP and Loki count records across all resources/streams from 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub index: usize,
    pub reason: String,
}

/// What a request held: the entries taken and the records rejected.
#[derive(Debug, Default)]
pub struct Decoded {
    pub entries: Vec<ShippedEntry>,
    pub rejected: Vec<Rejected>,
}

/// Why a request as a whole cannot be read. The message is written for the client and
/// never echoes more than about 200 bytes of its input.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    /// Broken framing: not protobuf, not JSON, a bulk action line without its source. HTTP 400.
    #[error("{0}")]
    Malformed(String),
    /// A Content-Type this crate does not read. HTTP 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A Content-Encoding this crate does not undo. HTTP 415.
    #[error("{0}")]
    UnsupportedEncoding(String),
    /// The decompressed body would exceed the caller's limit. HTTP 413.
    #[error("{0}")]
    TooLarge(String),
}

/// The two body encodings the protocols use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

/// The [`Format`] of a Content-Type header value (`"application/x-protobuf"`,
/// `"application/json; charset=utf-8"`, ...). Parameters and case are ignored.
///
/// Protobuf: `application/x-protobuf`, `application/protobuf`,
/// `application/vnd.google.protobuf`. JSON: `application/json`, `application/x-ndjson`,
/// `text/json`, and any `application/*+json` or `application/*+x-ndjson` (the
/// Elasticsearch clients send `application/vnd.elasticsearch+json; compatible-with=8`).
///
/// # Errors
///
/// [`DecodeError::UnsupportedMediaType`] for a missing header or any other media type.
pub fn format_of(content_type: Option<&str>) -> Result<Format, DecodeError> {
    let Some(value) = content_type else {
        return Err(DecodeError::UnsupportedMediaType(
            "missing Content-Type: use application/x-protobuf or application/json".into(),
        ));
    };
    let media = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/x-protobuf" | "application/protobuf" | "application/vnd.google.protobuf" => {
            Ok(Format::Protobuf)
        }
        "application/json" | "application/x-ndjson" | "text/json" => Ok(Format::Json),
        m if m.starts_with("application/")
            && (m.ends_with("+json") || m.ends_with("+x-ndjson")) =>
        {
            Ok(Format::Json)
        }
        _ => Err(DecodeError::UnsupportedMediaType(format!(
            "unsupported Content-Type '{}': use application/x-protobuf or application/json",
            entry::clip(value, 100)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_map_to_their_format() {
        let cases = [
            ("application/x-protobuf", Format::Protobuf),
            ("application/protobuf", Format::Protobuf),
            ("Application/X-Protobuf; charset=binary", Format::Protobuf),
            ("application/json", Format::Json),
            ("application/json; charset=utf-8", Format::Json),
            ("application/x-ndjson", Format::Json),
            (
                "application/vnd.elasticsearch+json; compatible-with=8",
                Format::Json,
            ),
            (
                "application/vnd.elasticsearch+x-ndjson; compatible-with=8",
                Format::Json,
            ),
        ];
        for (header, format) in cases {
            assert_eq!(format_of(Some(header)), Ok(format), "{header}");
        }
    }

    #[test]
    fn a_missing_or_unknown_content_type_is_unsupported() {
        for header in [None, Some("text/plain"), Some("application/xml"), Some("")] {
            assert!(matches!(
                format_of(header),
                Err(DecodeError::UnsupportedMediaType(_))
            ));
        }
    }
}
