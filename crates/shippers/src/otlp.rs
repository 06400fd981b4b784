//! OTLP/HTTP logs (`POST /v1/logs`): an `ExportLogsServiceRequest` as binary protobuf or
//! in the OTLP JSON encoding, and the answers the exporters expect back.
//!
//! The message types and their JSON mapping (lowerCamelCase keys, 64-bit integers as
//! strings, hex trace and span ids, enums as numbers) come from the `opentelemetry-proto`
//! crate, re-exported as [`proto`] so callers and tests build requests with the same types.
//!
//! Records are counted across all resources and scopes from 0 ([`Rejected::index`]); a
//! rejected record goes into the response's `partial_success`, never fails the request.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message as _;
use serde_json::{json, Map, Value};

use crate::entry::{self, Attributes};
use crate::{severity_from, DecodeError, Decoded, Format, Rejected, ShippedEntry};

/// The OTLP message types (`opentelemetry-proto`'s prost structs with serde).
pub use opentelemetry_proto::tonic as proto;

/// Resource attributes that name the source, in order of preference.
const SOURCE_KEYS: [&str; 2] = ["service.name", "host.name"];

/// Decodes an `ExportLogsServiceRequest` (OTLP/HTTP `POST /v1/logs`) in `format`.
///
/// A record without a body, with a blank or too long message, or with a time outside the
/// supported range is rejected (in [`Decoded::rejected`]); the rest are taken. A request
/// with no records is valid.
///
/// # Errors
///
/// [`DecodeError::Malformed`] when the body is not an `ExportLogsServiceRequest` in
/// `format`.
pub fn decode(body: &[u8], format: Format) -> Result<Decoded, DecodeError> {
    let request = parse(body, format)?;
    let now = Utc::now();
    let mut decoded = Decoded::default();
    let mut index = 0;
    for resource_logs in &request.resource_logs {
        let resource_attributes = resource_logs
            .resource
            .as_ref()
            .map_or(&[][..], |r| &r.attributes[..]);
        let source = source_of(resource_attributes);
        for scope_logs in &resource_logs.scope_logs {
            for record in &scope_logs.log_records {
                match entry_of(record, resource_attributes, source.as_deref(), now) {
                    Ok(entry) => decoded.entries.push(entry),
                    Err(reason) => decoded.rejected.push(Rejected { index, reason }),
                }
                index += 1;
            }
        }
    }
    Ok(decoded)
}

fn parse(body: &[u8], format: Format) -> Result<ExportLogsServiceRequest, DecodeError> {
    match format {
        Format::Protobuf => ExportLogsServiceRequest::decode(body).map_err(|e| {
            DecodeError::Malformed(entry::short(format_args!(
                "the body is not an OTLP ExportLogsServiceRequest in protobuf: {e}"
            )))
        }),
        Format::Json => serde_json::from_slice(body).map_err(|e| {
            DecodeError::Malformed(entry::short(format_args!(
                "the body is not an OTLP ExportLogsServiceRequest in JSON: {e}"
            )))
        }),
    }
}

/// The ExportLogsServiceResponse in `format`: with `partial_success` (`rejected` and
/// `error_message`) when `rejected > 0`, the empty message otherwise.
pub fn response(rejected: i64, error_message: &str, format: Format) -> Vec<u8> {
    let partial = (rejected > 0).then(|| ExportLogsPartialSuccess {
        rejected_log_records: rejected,
        error_message: error_message.to_owned(),
    });
    match format {
        Format::Protobuf => ExportLogsServiceResponse {
            partial_success: partial,
        }
        .encode_to_vec(),
        // By hand: the OTLP JSON encoding writes int64 as a decimal string.
        Format::Json => {
            let body = match partial {
                Some(p) => json!({"partialSuccess": {
                    "rejectedLogRecords": p.rejected_log_records.to_string(),
                    "errorMessage": p.error_message,
                }}),
                None => json!({}),
            };
            body.to_string().into_bytes()
        }
    }
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<prost_types::Any>,
}

/// A `google.rpc.Status` body in `format` for an error answer: `code` is the gRPC code
/// (3 INVALID_ARGUMENT for a 400, 8 RESOURCE_EXHAUSTED for a 413/429, 14 UNAVAILABLE for
/// a 503, ...).
pub fn status(code: i32, message: &str, format: Format) -> Vec<u8> {
    match format {
        Format::Protobuf => Status {
            code,
            message: message.to_owned(),
            details: Vec::new(),
        }
        .encode_to_vec(),
        Format::Json => json!({"code": code, "message": message})
            .to_string()
            .into_bytes(),
    }
}

fn source_of(resource_attributes: &[KeyValue]) -> Option<String> {
    SOURCE_KEYS.iter().find_map(|key| {
        resource_attributes
            .iter()
            .find(|kv| kv.key == *key)
            .and_then(|kv| kv.value.as_ref())
            .map(|v| entry::text_of(&json_of(v)))
            .and_then(|s| entry::clip_source(&s))
    })
}

fn entry_of(
    record: &LogRecord,
    resource_attributes: &[KeyValue],
    source: Option<&str>,
    now: DateTime<Utc>,
) -> Result<ShippedEntry, String> {
    let message = entry::check_message(message_of(record)?)?;
    Ok(ShippedEntry {
        timestamp: timestamp_of(record, now)?,
        severity: severity_from(
            Some(record.severity_number),
            Some(record.severity_text.as_str()),
        ),
        message,
        source: source.map(str::to_owned),
        attributes: attributes_of(record, resource_attributes),
    })
}

fn message_of(record: &LogRecord) -> Result<String, String> {
    let no_body = || "log record has no body".to_owned();
    let value = record
        .body
        .as_ref()
        .and_then(|b| b.value.as_ref())
        .ok_or_else(no_body)?;
    match value {
        any_value::Value::StringValue(s) if s.is_empty() => Err(no_body()),
        any_value::Value::StringValue(s) => Ok(s.clone()),
        any_value::Value::StringValueStrindex(_) => Err(no_body()),
        other => Ok(value_json(other).to_string()),
    }
}

fn timestamp_of(record: &LogRecord, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if record.time_unix_nano != 0 {
        entry::from_unix_nanos(record.time_unix_nano, "time_unix_nano")
    } else if record.observed_time_unix_nano != 0 {
        entry::from_unix_nanos(record.observed_time_unix_nano, "observed_time_unix_nano")
    } else {
        Ok(now)
    }
}

/// Trace and span ids first, then the record's attributes, then the resource's where the
/// record has none of that key.
fn attributes_of(record: &LogRecord, resource_attributes: &[KeyValue]) -> Map<String, Value> {
    let mut attributes = Attributes::default();
    if !record.trace_id.is_empty() {
        attributes.insert("trace_id", Value::String(hex::encode(&record.trace_id)));
    }
    if !record.span_id.is_empty() {
        attributes.insert("span_id", Value::String(hex::encode(&record.span_id)));
    }
    for kv in &record.attributes {
        if attributes.is_full() {
            break;
        }
        attributes.insert(&kv.key, kv.value.as_ref().map_or(Value::Null, json_of));
    }
    for kv in resource_attributes {
        if attributes.is_full() {
            break;
        }
        attributes.insert_if_absent(&kv.key, kv.value.as_ref().map_or(Value::Null, json_of));
    }
    attributes.into_map()
}

/// An AnyValue as natural JSON: kvlists become objects, bytes base64, non-finite doubles
/// the strings the OTLP JSON encoding uses.
pub fn json_of(value: &AnyValue) -> Value {
    value.value.as_ref().map_or(Value::Null, value_json)
}

fn value_json(value: &any_value::Value) -> Value {
    use any_value::Value as V;
    match value {
        V::StringValue(s) => Value::String(s.clone()),
        V::BoolValue(b) => Value::Bool(*b),
        V::IntValue(i) => Value::from(*i),
        V::DoubleValue(d) => double_json(*d),
        V::ArrayValue(a) => Value::Array(a.values.iter().map(json_of).collect()),
        V::KvlistValue(kv) => Value::Object(
            kv.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value.as_ref().map_or(Value::Null, json_of),
                    )
                })
                .collect(),
        ),
        V::BytesValue(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        V::StringValueStrindex(_) => Value::Null,
    }
}

fn double_json(d: f64) -> Value {
    serde_json::Number::from_f64(d).map_or_else(
        || {
            let name = if d.is_nan() {
                "NaN"
            } else if d > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            };
            Value::String(name.into())
        },
        Value::Number,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

    fn any(v: any_value::Value) -> AnyValue {
        AnyValue { value: Some(v) }
    }

    #[test]
    fn any_values_become_natural_json() {
        use any_value::Value as V;
        let kv = KeyValueList {
            values: vec![KeyValue {
                key: "a".into(),
                value: Some(any(V::IntValue(1))),
                key_strindex: 0,
            }],
        };
        let arr = ArrayValue {
            values: vec![any(V::BoolValue(true)), any(V::DoubleValue(1.5))],
        };
        assert_eq!(json_of(&any(V::KvlistValue(kv))), json!({"a": 1}));
        assert_eq!(json_of(&any(V::ArrayValue(arr))), json!([true, 1.5]));
        assert_eq!(json_of(&any(V::BytesValue(vec![1, 2, 3]))), json!("AQID"));
        assert_eq!(json_of(&any(V::DoubleValue(f64::NAN))), json!("NaN"));
        assert_eq!(
            json_of(&any(V::DoubleValue(f64::NEG_INFINITY))),
            json!("-Infinity")
        );
        assert_eq!(json_of(&AnyValue { value: None }), Value::Null);
    }

    #[test]
    fn a_structured_body_is_stored_as_compact_json() {
        let record = LogRecord {
            body: Some(any(any_value::Value::ArrayValue(ArrayValue {
                values: vec![any(any_value::Value::StringValue("x".into()))],
            }))),
            ..Default::default()
        };
        assert_eq!(message_of(&record), Ok(r#"["x"]"#.to_owned()));
    }

    #[test]
    fn a_time_beyond_2262_is_rejected() {
        let record = LogRecord {
            time_unix_nano: u64::MAX,
            ..Default::default()
        };
        assert!(timestamp_of(&record, Utc::now()).is_err());
    }

    #[test]
    fn json_responses_write_the_count_as_a_string() {
        let body = response(2, "2 records had no body", Format::Json);
        let value: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            value,
            json!({"partialSuccess": {"rejectedLogRecords": "2", "errorMessage": "2 records had no body"}})
        );
        assert_eq!(response(0, "ignored", Format::Json), b"{}".to_vec());
        assert!(response(0, "ignored", Format::Protobuf).is_empty());
    }

    #[test]
    fn status_bodies_carry_code_and_message() {
        let body = status(3, "bad body", Format::Protobuf);
        let decoded = Status::decode(&body[..]).expect("protobuf");
        assert_eq!((decoded.code, decoded.message.as_str()), (3, "bad body"));
        let json: Value = serde_json::from_slice(&status(3, "bad", Format::Json)).expect("JSON");
        assert_eq!(json, json!({"code": 3, "message": "bad"}));
    }
}
