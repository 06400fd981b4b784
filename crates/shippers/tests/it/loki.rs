use chrono::DateTime;
use prost::Message as _;
use serde_json::json;
use shippers::loki::proto::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter};
use shippers::{loki, DecodeError, Format};

const LIMIT: usize = 1 << 20;

fn entry(seconds: i64, nanos: i32, line: &str, metadata: &[(&str, &str)]) -> EntryAdapter {
    EntryAdapter {
        timestamp: Some(prost_types::Timestamp { seconds, nanos }),
        line: line.as_bytes().to_vec(),
        structured_metadata: metadata
            .iter()
            .map(|(name, value)| LabelPairAdapter {
                name: (*name).into(),
                value: (*value).into(),
            })
            .collect(),
    }
}

fn snappy(request: &PushRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("in memory")
}

#[test]
fn a_snappy_protobuf_push_decodes_with_labels_and_metadata() {
    let request = PushRequest {
        streams: vec![
            StreamAdapter {
                labels: r#"{job="varlogs", level="error", filename="/var/log/\"odd\".log"}"#.into(),
                entries: vec![
                    entry(
                        1_700_000_000,
                        5,
                        "connection refused",
                        &[("trace_id", "abc")],
                    ),
                    entry(1_700_000_001, 0, "retry ok", &[("level", "info")]),
                ],
                hash: 0,
            },
            StreamAdapter {
                labels: "{broken".into(),
                entries: vec![entry(1_700_000_002, 0, "lost", &[])],
                hash: 0,
            },
            StreamAdapter {
                labels: r#"{service_name="api", job="ignored", host="h1"}"#.into(),
                entries: vec![
                    entry(1_700_000_003, 0, "  ", &[]),
                    entry(1_700_000_004, -1, "bad time", &[]),
                ],
                hash: 0,
            },
        ],
    };

    let decoded = loki::decode(&snappy(&request), Format::Protobuf, LIMIT).expect("valid push");

    assert_eq!(decoded.entries.len(), 2);
    let first = &decoded.entries[0];
    assert_eq!(
        first.timestamp,
        DateTime::from_timestamp(1_700_000_000, 5).expect("valid")
    );
    assert_eq!(first.severity, "ERROR");
    assert_eq!(first.message, "connection refused");
    assert_eq!(first.source.as_deref(), Some("varlogs"));
    assert_eq!(first.attributes["filename"], json!("/var/log/\"odd\".log"));
    assert_eq!(first.attributes["trace_id"], json!("abc"));
    assert_eq!(first.attributes["job"], json!("varlogs"));
    let second = &decoded.entries[1];
    assert_eq!(
        second.severity, "INFO",
        "structured metadata wins over the stream label"
    );
    let rejected: Vec<usize> = decoded.rejected.iter().map(|r| r.index).collect();
    assert_eq!(rejected, [2, 3, 4]);
    assert!(
        decoded.rejected[0].reason.contains("label set"),
        "{}",
        decoded.rejected[0].reason
    );
}

#[test]
fn an_already_decompressed_protobuf_push_is_taken_too() {
    let request = PushRequest {
        streams: vec![StreamAdapter {
            labels: r#"{app="web"}"#.into(),
            entries: vec![entry(1_700_000_000, 0, "plain", &[])],
            hash: 0,
        }],
    };
    let decoded =
        loki::decode(&request.encode_to_vec(), Format::Protobuf, LIMIT).expect("valid push");
    assert_eq!(decoded.entries[0].source.as_deref(), Some("web"));
}

#[test]
fn a_protobuf_push_over_the_limit_is_too_large() {
    let request = PushRequest {
        streams: vec![StreamAdapter {
            labels: r#"{app="web"}"#.into(),
            entries: vec![entry(1_700_000_000, 0, &"y".repeat(10_000), &[])],
            hash: 0,
        }],
    };
    let err = loki::decode(&snappy(&request), Format::Protobuf, 5_000).expect_err("over the limit");
    assert!(matches!(err, DecodeError::TooLarge(_)), "{err:?}");
}

#[test]
fn a_json_push_decodes_with_structured_metadata() {
    let body = json!({"streams": [
        {"stream": {"job": "nginx", "instance": "10.0.0.1:80", "detected_level": "warn"},
         "values": [
            ["1700000000000000001", "GET / 200"],
            ["1700000000000000002", "GET /admin 403", {"level": "error", "user": "bob"}],
            ["not-a-number", "dropped"],
            ["1700000000000000003"],
            ["1700000000000000004", 42]
         ]},
        {"stream": {"host": "db-1"}, "values": [["1700000000000000005", "checkpoint"]]}
    ]})
    .to_string();

    let decoded = loki::decode(body.as_bytes(), Format::Json, LIMIT).expect("valid push");

    assert_eq!(decoded.entries.len(), 3);
    let first = &decoded.entries[0];
    assert_eq!(
        first.timestamp.timestamp_nanos_opt(),
        Some(1_700_000_000_000_000_001)
    );
    assert_eq!(first.severity, "WARNING");
    assert_eq!(first.source.as_deref(), Some("nginx"));
    assert_eq!(first.attributes["instance"], json!("10.0.0.1:80"));
    let second = &decoded.entries[1];
    assert_eq!(second.severity, "ERROR");
    assert_eq!(second.attributes["user"], json!("bob"));
    assert_eq!(decoded.entries[2].source.as_deref(), Some("db-1"));
    assert_eq!(decoded.entries[2].severity, "INFO");
    let rejected: Vec<usize> = decoded.rejected.iter().map(|r| r.index).collect();
    assert_eq!(rejected, [2, 3, 4]);
    assert!(
        decoded.rejected[0].reason.contains("nanoseconds"),
        "{}",
        decoded.rejected[0].reason
    );
}

#[test]
fn broken_loki_bodies_are_malformed() {
    for (body, format) in [
        (&b"{\"streams\": 3}"[..], Format::Json),
        (&b"\x05\x10garbage"[..], Format::Protobuf),
    ] {
        assert!(matches!(
            loki::decode(body, format, LIMIT),
            Err(DecodeError::Malformed(_))
        ));
    }
    let empty = loki::decode(br#"{"streams": []}"#, Format::Json, LIMIT).expect("valid");
    assert!(empty.entries.is_empty() && empty.rejected.is_empty());
}
