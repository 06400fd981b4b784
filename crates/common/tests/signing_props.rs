//! Property tests of the `X-HMAC-Signature` parser, which reads a header any client can
//! send: it never panics, reads back every header `sign_legacy` and `sign_timestamped`
//! make, and refuses MACs that are not 32 bytes. Written against the public functions
//! only, so a new signature scheme can be added beside them.

use logcanary_common::signing::{
    sign_legacy, sign_request, sign_timestamped, RequestLine, Signature, SignatureParseError,
};
use proptest::prelude::*;

/// Header-ish text: the characters a signature header is made of, plus anything else.
fn header_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-fA-Fxtv=,; sha256-]{0,160}",
        "t=[0-9-]{0,20},v[0-9]=[0-9a-f]{0,80}(,[a-z0-9]{0,4}=[0-9a-zA-Z]{0,70}){0,3}",
        "(sha256=)?[0-9a-f]{0,130}",
        any::<String>(),
    ]
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn parsing_any_header_never_panics(header in header_like()) {
        let _ = Signature::parse(&header);
    }

    #[test]
    fn a_legacy_signature_reads_back_and_verifies(
        secret in proptest::collection::vec(any::<u8>(), 0..80),
        body in proptest::collection::vec(any::<u8>(), 0..300),
        prefixed in any::<bool>(),
        upper in any::<bool>(),
        pad in "[ \t]{0,3}",
    ) {
        let hex = sign_legacy(&secret, &body);
        prop_assert_eq!(hex.len(), 64);
        let hex = if upper { hex.to_uppercase() } else { hex };
        let header = format!("{pad}{}{hex}{pad}", if prefixed { "sha256=" } else { "" });
        let sig = Signature::parse(&header).expect("a header sign_legacy made");
        let is_legacy = matches!(&sig, Signature::Legacy { mac } if mac.len() == 32);
        prop_assert!(is_legacy, "read as {:?}", sig);
        prop_assert!(sig.verify(&secret, &body));
        let mut other = body.clone();
        other.push(b' ');
        prop_assert!(!sig.verify(&secret, &other));
    }

    #[test]
    fn a_timestamped_signature_reads_back_with_its_time(
        secret in proptest::collection::vec(any::<u8>(), 0..80),
        body in proptest::collection::vec(any::<u8>(), 0..300),
        t in any::<i64>(),
    ) {
        let header = sign_timestamped(&secret, t, &body);
        let sig = Signature::parse(&header).expect("a header sign_timestamped made");
        let Signature::Timestamped { t: read, mac } = sig.clone() else {
            return Err(TestCaseError::fail(format!("{header} read as {sig:?}")));
        };
        prop_assert_eq!(read, t);
        prop_assert_eq!(mac.len(), 32);
        prop_assert!(sig.verify(&secret, &body));
        // The time is signed: the same MAC with another time does not verify.
        let moved = Signature::Timestamped { t: t.wrapping_add(1), mac };
        prop_assert!(!moved.verify(&secret, &body));
        // Other schemes beside v1 are ignored.
        prop_assert_eq!(Signature::parse(&format!("{header},v0=abc,v9=zz")), Ok(sig));
    }

    #[test]
    fn a_mac_of_any_other_length_is_refused(
        bytes in proptest::collection::vec(any::<u8>(), 0..80),
        t in any::<i64>(),
    ) {
        prop_assume!(bytes.len() != 32);
        let hex = hex_of(&bytes);
        prop_assert_eq!(Signature::parse(&hex), Err(SignatureParseError::WrongLength));
        prop_assert_eq!(
            Signature::parse(&format!("sha256={hex}")),
            Err(SignatureParseError::WrongLength)
        );
        prop_assert_eq!(
            Signature::parse(&format!("t={t},v1={hex}")),
            Err(SignatureParseError::WrongLength)
        );
    }

    #[test]
    fn an_odd_number_of_hex_digits_is_not_hex(
        bytes in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let hex = format!("{}a", hex_of(&bytes));
        prop_assert_eq!(Signature::parse(&hex), Err(SignatureParseError::NotHex));
        prop_assert_eq!(
            Signature::parse(&format!("t=1,v1={hex}")),
            Err(SignatureParseError::NotHex)
        );
    }

    #[test]
    fn a_timestamped_header_without_a_number_or_a_v1_is_malformed(
        t in "[0-9]{1,10}",
        junk in "[a-z]{1,8}",
        mac in "[0-9a-f]{64}",
    ) {
        prop_assert_eq!(
            Signature::parse(&format!("t={t}")),
            Err(SignatureParseError::Malformed)
        );
        prop_assert_eq!(
            Signature::parse(&format!("t={junk},v1={mac}")),
            Err(SignatureParseError::Malformed)
        );
        prop_assert_eq!(
            Signature::parse(&format!("t={t},{junk},v1={mac}")),
            Err(SignatureParseError::Malformed)
        );
    }

    #[test]
    fn a_request_bound_signature_holds_for_its_request_only(
        secret in proptest::collection::vec(any::<u8>(), 0..80),
        body in proptest::collection::vec(any::<u8>(), 0..300),
        t in any::<i64>(),
        method in "(GET|POST|PATCH|DELETE)",
        path in "/[a-z0-9/%._-]{0,40}",
        query in "[a-z0-9=&%]{0,30}",
        split in 0usize..300,
    ) {
        let line = RequestLine { method: &method, path: &path, query: &query };
        let header = sign_request(&secret, t, line, &body);
        let sig = Signature::parse(&header).expect("a header sign_request made");
        let bound_at_t = matches!(sig, Signature::Bound { t: read, .. } if read == t);
        prop_assert!(bound_at_t);
        prop_assert!(sig.verify_request(&secret, line, &body));
        // Fed in two chunks, as the server reads a body, the MAC is the same.
        let (a, b) = body.split_at(split.min(body.len()));
        let mut state = sig.start(&secret, line);
        state.update(a);
        state.update(b);
        prop_assert!(state.matches(sig.mac()));
        // Another path or query does not verify; nor does the body-only reading of it.
        let other_path = format!("{path}x");
        let other = RequestLine { path: &other_path, ..line };
        prop_assert!(!sig.verify_request(&secret, other, &body));
        let other_query = format!("{query}&x");
        let other = RequestLine { query: &other_query, ..line };
        prop_assert!(!sig.verify_request(&secret, other, &body));
        let as_v1 = Signature::parse(&header.replace("v2=", "v1=")).expect("same shape");
        prop_assert!(!as_v1.verify(&secret, &body));
    }
}
