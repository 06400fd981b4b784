//! HMAC-SHA256 request signatures, shared by the ingest API (verifying) and the notifier
//! and clients (signing).
//!
//! Two header forms exist (see API.md):
//! - legacy: `X-HMAC-Signature: <hex>` or `sha256=<hex>`, the MAC of the raw body;
//! - timestamped: `X-HMAC-Signature: t=<unix seconds>,v1=<hex>`, the MAC of `"<t>.<body>"`,
//!   which lets the server reject stale and replayed requests.
//!
//! Comparison is constant-time (`Mac::verify_slice`).

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
}

/// Why a header could not be read as a signature.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureParseError {
    #[error("the signature is not valid hex")]
    NotHex,
    #[error("the signature has the wrong length (expected 64 hex digits)")]
    WrongLength,
    #[error("the timestamped signature must look like t=<unix seconds>,v1=<hex>")]
    Malformed,
}

impl Signature {
    /// Parses any of the accepted header forms.
    pub fn parse(header: &str) -> Result<Self, SignatureParseError> {
        let header = header.trim();
        if header.starts_with("t=") {
            let mut t = None;
            let mut v1 = None;
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
                    // Unknown schemes (v0, future v2) are ignored, as Stripe-style clients expect.
                    Some(_) => {}
                    None => return Err(SignatureParseError::Malformed),
                }
            }
            match (t, v1) {
                (Some(t), Some(mac)) => Ok(Signature::Timestamped { t, mac }),
                _ => Err(SignatureParseError::Malformed),
            }
        } else {
            let hex_part = header.strip_prefix("sha256=").unwrap_or(header);
            Ok(Signature::Legacy {
                mac: decode_mac(hex_part)?,
            })
        }
    }

    /// True when this signature was made over `body` with `secret` (constant-time).
    pub fn verify(&self, secret: &[u8], body: &[u8]) -> bool {
        let (prefix, mac) = match self {
            Signature::Legacy { mac } => (None, mac),
            Signature::Timestamped { t, mac } => (Some(format!("{t}.")), mac),
        };
        let mut hmac = new_mac(secret);
        if let Some(prefix) = prefix {
            hmac.update(prefix.as_bytes());
        }
        hmac.update(body);
        hmac.verify_slice(mac).is_ok()
    }
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

/// Hex HMAC-SHA256 of `body`: the legacy header value.
pub fn sign_legacy(secret: &[u8], body: &[u8]) -> String {
    let mut mac = new_mac(secret);
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// `t=<t>,v1=<hex>`: the timestamped header value.
pub fn sign_timestamped(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut mac = new_mac(secret);
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
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
}
