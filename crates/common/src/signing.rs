//! HMAC-SHA256 request signatures, shared by the ingest API (verifying) and the notifier
//! and clients (signing).
//!
//! Three header forms exist (see API.md):
//! - legacy: `X-HMAC-Signature: <hex>` or `sha256=<hex>`, the MAC of the raw body;
//! - v1: `X-HMAC-Signature: t=<unix seconds>,v1=<hex>`, the MAC of `"<t>.<body>"`, which
//!   lets the server reject stale and replayed requests;
//! - v2, bound to the request: `X-HMAC-Signature: t=<unix seconds>,v2=<hex>`, the MAC of
//!   `"v2\n<METHOD>\n<path>\n<query>\n<t>\n"` followed by the body, so a signature made
//!   for one method, path or query string is worth nothing on another.
//!
//! Every form is a MAC over a short prefix followed by the raw body, so a verifier can
//! feed the body to [`MacState`] as it arrives. Comparison is constant-time
//! (`Mac::verify_slice`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// A parsed `X-HMAC-Signature` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// MAC of the raw body (the old clients' form).
    Legacy { mac: Vec<u8> },
    /// MAC of `"<t>.<body>"`.
    Timestamped { t: i64, mac: Vec<u8> },
    /// MAC of the [`RequestLine`] and `t` (see [`v2_prefix`]) followed by the body.
    Bound { t: i64, mac: Vec<u8> },
}

/// What a v2 signature binds besides the body: the request's method, its path and its
/// query string, exactly as they are on the request line (the path still
/// percent-encoded, the query without its `?`, empty when there is none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLine<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
}

/// Why a header could not be read as a signature.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureParseError {
    #[error("the signature is not valid hex")]
    NotHex,
    #[error("the signature has the wrong length (expected 64 hex digits)")]
    WrongLength,
    #[error("a timestamped signature must look like t=<unix seconds>,v2=<hex>")]
    Malformed,
}

impl Signature {
    /// Parses any of the accepted header forms. With both `v1=` and `v2=` parts the
    /// request-bound `v2` is the one checked.
    pub fn parse(header: &str) -> Result<Self, SignatureParseError> {
        let header = header.trim();
        if header.starts_with("t=") {
            let mut t = None;
            let mut v1 = None;
            let mut v2 = None;
            for part in header.split(',') {
                match part.trim().split_once('=') {
                    Some(("t", value)) => {
                        t = Some(
                            value
                                .parse::<i64>()
                                .map_err(|_| SignatureParseError::Malformed)?,
                        )
                    }
                    Some(("v1", value)) => v1 = Some(decode_mac(value)?),
                    Some(("v2", value)) => v2 = Some(decode_mac(value)?),
                    // Unknown schemes (v0, a future v3) are ignored, as Stripe-style clients expect.
                    Some(_) => {}
                    None => return Err(SignatureParseError::Malformed),
                }
            }
            match (t, v2, v1) {
                (Some(t), Some(mac), _) => Ok(Signature::Bound { t, mac }),
                (Some(t), None, Some(mac)) => Ok(Signature::Timestamped { t, mac }),
                _ => Err(SignatureParseError::Malformed),
            }
        } else {
            let hex_part = header.strip_prefix("sha256=").unwrap_or(header);
            Ok(Signature::Legacy {
                mac: decode_mac(hex_part)?,
            })
        }
    }

    /// The signature's timestamp; `None` for the legacy form.
    pub fn timestamp(&self) -> Option<i64> {
        match self {
            Signature::Legacy { .. } => None,
            Signature::Timestamped { t, .. } | Signature::Bound { t, .. } => Some(*t),
        }
    }

    /// The MAC the header carries.
    pub fn mac(&self) -> &[u8] {
        match self {
            Signature::Legacy { mac }
            | Signature::Timestamped { mac, .. }
            | Signature::Bound { mac, .. } => mac,
        }
    }

    /// A MAC over this form's prefix with `secret`, ready for the body
    /// ([`MacState::update`]); `request` is used by the v2 form only.
    pub fn start(&self, secret: &[u8], request: RequestLine<'_>) -> MacState {
        let mut mac = new_mac(secret);
        match self {
            Signature::Legacy { .. } => {}
            Signature::Timestamped { t, .. } => mac.update(format!("{t}.").as_bytes()),
            Signature::Bound { t, .. } => mac.update(v2_prefix(*t, request).as_bytes()),
        }
        MacState(mac)
    }

    /// True when this signature was made over `body` (and, for v2, `request`) with
    /// `secret` (constant-time).
    pub fn verify_request(&self, secret: &[u8], request: RequestLine<'_>, body: &[u8]) -> bool {
        let mut state = self.start(secret, request);
        state.update(body);
        state.matches(self.mac())
    }

    /// [`Signature::verify_request`] for the forms that bind no request line.
    pub fn verify(&self, secret: &[u8], body: &[u8]) -> bool {
        self.verify_request(
            secret,
            RequestLine {
                method: "",
                path: "",
                query: "",
            },
            body,
        )
    }
}

/// An HMAC being fed a body chunk by chunk.
#[derive(Clone)]
pub struct MacState(HmacSha256);

impl MacState {
    pub fn update(&mut self, chunk: &[u8]) {
        self.0.update(chunk);
    }

    /// Whether the bytes fed so far have the MAC `expected` (constant-time).
    pub fn matches(&self, expected: &[u8]) -> bool {
        self.0.clone().verify_slice(expected).is_ok()
    }
}

/// The bytes a v2 MAC covers before the body:
/// `"v2\n" METHOD "\n" path "\n" query "\n" t "\n"`.
pub fn v2_prefix(t: i64, request: RequestLine<'_>) -> String {
    format!(
        "v2\n{}\n{}\n{}\n{t}\n",
        request.method, request.path, request.query
    )
}

fn decode_mac(hex_str: &str) -> Result<Vec<u8>, SignatureParseError> {
    let bytes = hex::decode(hex_str.trim()).map_err(|_| SignatureParseError::NotHex)?;
    if bytes.len() != 32 {
        return Err(SignatureParseError::WrongLength);
    }
    Ok(bytes)
}

fn new_mac(secret: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length")
}

fn hex_mac(mac: HmacSha256) -> String {
    hex::encode(mac.finalize().into_bytes())
}

/// Hex HMAC-SHA256 of `body`: the legacy header value.
pub fn sign_legacy(secret: &[u8], body: &[u8]) -> String {
    let mut mac = new_mac(secret);
    mac.update(body);
    hex_mac(mac)
}

/// `t=<t>,v1=<hex>`: the v1 header value.
pub fn sign_timestamped(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut mac = new_mac(secret);
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex_mac(mac))
}

/// `t=<t>,v2=<hex>`: the request-bound header value for `request` and `body`.
pub fn sign_request(secret: &[u8], t: i64, request: RequestLine<'_>, body: &[u8]) -> String {
    let mut mac = new_mac(secret);
    mac.update(v2_prefix(t, request).as_bytes());
    mac.update(body);
    format!("t={t},v2={}", hex_mac(mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_round_trip_and_prefix() {
        let sig = sign_legacy(b"k", b"{}");
        assert!(Signature::parse(&sig).unwrap().verify(b"k", b"{}"));
        assert!(Signature::parse(&format!("sha256={sig}"))
            .unwrap()
            .verify(b"k", b"{}"));
        assert!(!Signature::parse(&sig).unwrap().verify(b"other", b"{}"));
        assert!(!Signature::parse(&sig).unwrap().verify(b"k", b"{ }"));
    }

    #[test]
    fn timestamped_round_trip() {
        let header = sign_timestamped(b"k", 1_700_000_000, b"body");
        let sig = Signature::parse(&header).unwrap();
        assert!(matches!(
            sig,
            Signature::Timestamped {
                t: 1_700_000_000,
                ..
            }
        ));
        assert!(sig.verify(b"k", b"body"));
        // The timestamp is covered by the MAC: changing it breaks the signature.
        let forged = header.replace("t=1700000000", "t=1700000001");
        assert!(!Signature::parse(&forged).unwrap().verify(b"k", b"body"));
    }

    #[test]
    fn known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign_legacy(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn malformed_headers() {
        assert_eq!(Signature::parse("zz"), Err(SignatureParseError::NotHex));
        assert_eq!(
            Signature::parse("abcd"),
            Err(SignatureParseError::WrongLength)
        );
        assert_eq!(
            Signature::parse("t=x,v1=00"),
            Err(SignatureParseError::Malformed)
        );
        assert_eq!(Signature::parse("t=5"), Err(SignatureParseError::Malformed));
    }

    #[test]
    fn v2_binds_method_path_and_query() {
        let line = RequestLine {
            method: "DELETE",
            path: "/api/periodic-tasks/3/",
            query: "",
        };
        let header = sign_request(b"k", 1_700_000_000, line, b"");
        let sig = Signature::parse(&header).unwrap();
        assert!(matches!(
            sig,
            Signature::Bound {
                t: 1_700_000_000,
                ..
            }
        ));
        assert!(sig.verify_request(b"k", line, b""));
        for other in [
            RequestLine {
                method: "PATCH",
                ..line
            },
            RequestLine {
                path: "/api/periodic-tasks/4/",
                ..line
            },
            RequestLine {
                query: "x=1",
                ..line
            },
        ] {
            assert!(!sig.verify_request(b"k", other, b""), "{other:?}");
        }
        // The v2 MAC is not a v1 or legacy MAC of any body.
        let as_v1 = header.replace("v2=", "v1=");
        assert!(!Signature::parse(&as_v1).unwrap().verify(b"k", b""));
    }

    #[test]
    fn streaming_equals_whole_body() {
        let line = RequestLine {
            method: "POST",
            path: "/api/logs/",
            query: "",
        };
        let header = sign_request(b"k", 5, line, b"hello world");
        let sig = Signature::parse(&header).unwrap();
        let mut state = sig.start(b"k", line);
        state.update(b"hello ");
        assert!(!state.matches(sig.mac()));
        state.update(b"world");
        assert!(state.matches(sig.mac()));
    }

    #[test]
    fn the_worked_examples_of_api_md() {
        let body = br#"{"timestamp":"2024-01-15T10:30:00Z","severity":"ERROR","message":"Database connection failed after 3 retries"}"#;
        let line = |method, path, query| RequestLine {
            method,
            path,
            query,
        };
        let t = 1_705_314_600;
        assert_eq!(
            sign_request(b"dev-secret", t, line("POST", "/api/logs/", ""), body),
            "t=1705314600,v2=c3529bd72e69040f002d63e4bde6ec2dc8e588fa39d2dcd1eb748dc61dd4b503"
        );
        assert_eq!(
            sign_request(
                b"dev-secret",
                t,
                line("DELETE", "/api/periodic-tasks/3/", ""),
                b""
            ),
            "t=1705314600,v2=375cd0f39d92d5da6b0190d03e6440d76ee32a42dc67b5534f0d48f79169de2f"
        );
        assert_eq!(
            sign_request(
                b"dev-secret",
                t,
                line("GET", "/api/logs/", "severity=ERROR&limit=10"),
                b""
            ),
            "t=1705314600,v2=bfd4df1d9309e976ab34fb8dcb4a4891968c18004fa9781cdb2180f93b56aad2"
        );
        assert_eq!(
            sign_timestamped(b"dev-secret", t, body),
            "t=1705314600,v1=8875f789cf92bbbadbf1d26aac314c0dfb9e99da05829bc94220f1d7c53fcc3c"
        );
        assert_eq!(
            sign_legacy(b"dev-secret", body),
            "39215c5371cb776c31119f920f7ebc452e03ddf1ffcc5b6b9c8d4d84f388a666"
        );
    }
}
