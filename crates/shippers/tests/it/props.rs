use proptest::prelude::*;
use shippers::{decompress, elastic, loki, otlp, Format};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_decoders_never_panic_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        for format in [Format::Protobuf, Format::Json] {
            let _ = otlp::decode(&body, format);
            let _ = loki::decode(&body, format, 1 << 16);
        }
        let _ = elastic::decode_bulk(&body);
        for encoding in ["gzip", "deflate", "snappy", "x-snappy-framed", "zstd"] {
            let _ = decompress(Some(encoding), &body, 1 << 16);
        }
    }

    #[test]
    fn the_decoders_never_panic_on_near_valid_text(body in r#"[\[\]{}":,\n 0-9a-z\\._@-]{0,300}"#) {
        let _ = otlp::decode(body.as_bytes(), Format::Json);
        let _ = loki::decode(body.as_bytes(), Format::Json, 1 << 16);
        let _ = elastic::decode_bulk(body.as_bytes());
        let _ = loki::parse_labels(&body);
    }

    #[test]
    fn bulk_structure_with_arbitrary_sources_never_panics(
        sources in proptest::collection::vec(r#"\{("(message|@timestamp|level|log|service|host)": ?("[^"\\\n]{0,20}"|[0-9]{1,20}|\{[^\n]{0,30}\}|null), ?){0,4}\}"#, 0..8)
    ) {
        let body: String = sources.iter().map(|s| format!("{{\"index\":{{}}}}\n{s}\n")).collect();
        let bulk = elastic::decode_bulk(body.as_bytes()).expect("framing is valid");
        prop_assert_eq!(bulk.items.len(), sources.len());
        let _ = elastic::bulk_response(&bulk, &[], 0);
    }
}
