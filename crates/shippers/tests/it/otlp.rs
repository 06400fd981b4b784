use chrono::{DateTime, Utc};
use prost::Message as _;
use serde_json::json;
use shippers::otlp::proto::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use shippers::otlp::proto::common::v1::{any_value::Value as Any, AnyValue, KeyValue};
use shippers::otlp::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use shippers::otlp::proto::resource::v1::Resource;
use shippers::{otlp, DecodeError, Format};

fn kv(key: &str, value: Any) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

fn text(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Any::StringValue(s.into())),
    })
}

fn request(resource: Vec<KeyValue>, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

fn at(nanos: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(nanos)
}

#[test]
fn a_protobuf_request_round_trips_into_entries() {
    let records = vec![
        LogRecord {
            time_unix_nano: 1_700_000_000_000_000_001,
            observed_time_unix_nano: 1_700_000_000_500_000_000,
            severity_number: 13,
            severity_text: "Warning".into(),
            body: text("disk almost full"),
            attributes: vec![
                kv("disk", Any::StringValue("/dev/sda1".into())),
                kv("env", Any::StringValue("record".into())),
            ],
            trace_id: vec![0xAB; 16],
            span_id: vec![0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08],
            ..Default::default()
        },
        LogRecord {
            observed_time_unix_nano: 1_700_000_001_000_000_000,
            severity_text: "fatal".into(),
            body: text("out of memory"),
            ..Default::default()
        },
    ];
    let resource = vec![
        kv("host.name", Any::StringValue("node-7".into())),
        kv("service.name", Any::StringValue("storage".into())),
        kv("env", Any::StringValue("resource".into())),
    ];
    let body = request(resource, records).encode_to_vec();

    let decoded = otlp::decode(&body, Format::Protobuf).expect("valid request");

    assert!(decoded.rejected.is_empty(), "{:?}", decoded.rejected);
    let [first, second] = decoded.entries.as_slice() else {
        panic!("two entries expected, got {:?}", decoded.entries);
    };
    assert_eq!(first.timestamp, at(1_700_000_000_000_000_001));
    assert_eq!(first.severity, "WARNING");
    assert_eq!(first.message, "disk almost full");
    assert_eq!(first.source.as_deref(), Some("storage"));
    assert_eq!(first.attributes["trace_id"], json!("ab".repeat(16)));
    assert_eq!(first.attributes["span_id"], json!("0102030405060708"));
    assert_eq!(first.attributes["disk"], json!("/dev/sda1"));
    assert_eq!(
        first.attributes["env"],
        json!("record"),
        "record wins on a clash"
    );
    assert_eq!(first.attributes["host.name"], json!("node-7"));
    assert_eq!(
        second.timestamp,
        at(1_700_000_001_000_000_000),
        "observed time is the fallback"
    );
    assert_eq!(second.severity, "CRITICAL");
    assert!(!second.attributes.contains_key("trace_id"));
}

#[test]
fn a_record_without_any_time_is_stamped_now() {
    let body = request(
        vec![],
        vec![LogRecord {
            body: text("no clock"),
            ..Default::default()
        }],
    )
    .encode_to_vec();
    let before = Utc::now();
    let decoded = otlp::decode(&body, Format::Protobuf).expect("valid request");
    let after = Utc::now();
    let entry = &decoded.entries[0];
    assert!(before <= entry.timestamp && entry.timestamp <= after);
    assert_eq!(entry.source, None);
    assert_eq!(entry.severity, "INFO");
}

#[test]
fn host_name_is_the_source_when_there_is_no_service_name() {
    let body = request(
        vec![kv("host.name", Any::StringValue("node-7".into()))],
        vec![LogRecord {
            body: text("x"),
            ..Default::default()
        }],
    )
    .encode_to_vec();
    let decoded = otlp::decode(&body, Format::Protobuf).expect("valid request");
    assert_eq!(decoded.entries[0].source.as_deref(), Some("node-7"));
}

#[test]
fn records_without_body_blank_or_too_long_are_rejected_by_position() {
    let records = vec![
        LogRecord {
            body: text("kept"),
            ..Default::default()
        },
        LogRecord {
            body: None,
            ..Default::default()
        },
        LogRecord {
            body: text("   "),
            ..Default::default()
        },
        LogRecord {
            body: text(&"x".repeat(shippers::MAX_MESSAGE_CHARS + 1)),
            ..Default::default()
        },
        LogRecord {
            body: Some(AnyValue { value: None }),
            ..Default::default()
        },
    ];
    let body = request(vec![], records).encode_to_vec();

    let decoded = otlp::decode(&body, Format::Protobuf).expect("valid request");

    assert_eq!(decoded.entries.len(), 1);
    let indexes: Vec<usize> = decoded.rejected.iter().map(|r| r.index).collect();
    assert_eq!(indexes, [1, 2, 3, 4]);
    assert_eq!(decoded.rejected[0].reason, "log record has no body");
    assert!(
        decoded.rejected[2].reason.contains("65536"),
        "{}",
        decoded.rejected[2].reason
    );

    let answer = otlp::response(
        decoded.rejected.len() as i64,
        "4 log records were rejected",
        Format::Protobuf,
    );
    let response = ExportLogsServiceResponse::decode(&answer[..]).expect("protobuf response");
    let partial = response.partial_success.expect("partial success set");
    assert_eq!(partial.rejected_log_records, 4);
    assert_eq!(partial.error_message, "4 log records were rejected");
}

#[test]
fn a_full_success_answers_the_empty_response() {
    let answer = otlp::response(0, "", Format::Protobuf);
    let response = ExportLogsServiceResponse::decode(&answer[..]).expect("protobuf response");
    assert_eq!(response.partial_success, None);
}

#[test]
fn otlp_json_in_the_spec_form_decodes() {
    let body = include_bytes!("fixtures/otlp_logs.json");

    let decoded = otlp::decode(body, Format::Json).expect("valid OTLP JSON");

    assert_eq!(decoded.entries.len(), 2);
    assert_eq!(decoded.rejected.len(), 1);
    assert_eq!(decoded.rejected[0].index, 2);
    let first = &decoded.entries[0];
    assert_eq!(first.timestamp, at(1_700_000_000_123_456_789));
    assert_eq!(first.severity, "ERROR");
    assert_eq!(first.message, "payment declined for order 42");
    assert_eq!(first.source.as_deref(), Some("checkout"));
    assert_eq!(
        first.attributes["trace_id"],
        json!("5b8efff798038103d269b633813fc60c")
    );
    assert_eq!(first.attributes["span_id"], json!("eee19b7ec3c1b174"));
    assert_eq!(first.attributes["code.lineno"], json!(118));
    assert_eq!(first.attributes["retry"], json!(false));
    assert_eq!(first.attributes["ratio"], json!(0.25));
    assert_eq!(first.attributes["raw"], json!("AQID"));
    assert_eq!(first.attributes["tags"], json!(["a", 2]));
    assert_eq!(first.attributes["http"], json!({"status": 502}));
    assert_eq!(first.attributes["shared"], json!("from record"));
    assert_eq!(first.attributes["deployment.environment"], json!("prod"));
    let second = &decoded.entries[1];
    assert_eq!(second.timestamp, at(1_700_000_001_000_000_000));
    assert_eq!(second.severity, "WARNING");
    assert_eq!(second.message, r#"{"event":"cache miss"}"#);
    assert!(!second.attributes.contains_key("trace_id"));
}

#[test]
fn an_empty_request_is_valid() {
    for (body, format) in [
        (&b""[..], Format::Protobuf),
        (&b"{}"[..], Format::Json),
        (&br#"{"resourceLogs":[]}"#[..], Format::Json),
    ] {
        let decoded = otlp::decode(body, format).expect("valid");
        assert!(decoded.entries.is_empty() && decoded.rejected.is_empty());
    }
}

#[test]
fn broken_bodies_are_malformed_with_a_short_message() {
    let long_garbage = format!("{{\"resourceLogs\": \"{}\"}}", "z".repeat(10_000));
    for (body, format) in [
        (&b"\xff\xff\xff\xff"[..], Format::Protobuf),
        (&b"{not json"[..], Format::Json),
        (long_garbage.as_bytes(), Format::Json),
    ] {
        match otlp::decode(body, format) {
            Err(DecodeError::Malformed(message)) => assert!(message.len() < 300, "{message}"),
            other => panic!("expected Malformed, got {other:?}"),
        }
    }
}

#[test]
fn too_many_attributes_are_dropped_not_the_record() {
    let attributes = (0..200)
        .map(|i| kv(&format!("k{i}"), Any::IntValue(i)))
        .collect();
    let record = LogRecord {
        body: text("busy"),
        attributes,
        ..Default::default()
    };
    let body = request(
        vec![kv("big", Any::StringValue("x".repeat(10_000)))],
        vec![record],
    )
    .encode_to_vec();
    let decoded = otlp::decode(&body, Format::Protobuf).expect("valid");
    let entry = &decoded.entries[0];
    assert_eq!(entry.attributes.len(), shippers::MAX_ATTRIBUTES);
    assert!(!entry.attributes.contains_key("big"));
}
