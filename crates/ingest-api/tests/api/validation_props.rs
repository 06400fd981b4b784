//! Property tests of the entry parser and validator (`validation`), which read whatever a
//! signed client sends: they never panic, and every entry they accept keeps the limits
//! API.md documents (a known severity, a message of 1..=65 536 characters that is not
//! blank, a source of at most 255, no NUL characters). No database: pure functions.

use logcanary_ingest_api::{
    errors::ApiError,
    validation::{self, MAX_MESSAGE_CHARS, MAX_SOURCE_CHARS, SEVERITIES},
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::String),
        field_value(),
    ];
    leaf.prop_recursive(3, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((field_name(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// The entry's own field names, and others.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("timestamp".to_owned()),
        Just("severity".to_owned()),
        Just("message".to_owned()),
        Just("source".to_owned()),
        "[a-z_]{0,12}",
    ]
}

/// Values that come close to valid ones: times, severities, texts at the length limits.
fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        "20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9](\\.[0-9]{1,9})?(Z|[+-][01][0-9]:[0-5][0-9])"
            .prop_map(Value::String),
        proptest::sample::select(SEVERITIES.to_vec()).prop_map(|s| json!(s)),
        proptest::sample::select(vec!["error", "Info", "FATAL", " INFO", ""]).prop_map(|s| json!(s)),
        text_near(MAX_MESSAGE_CHARS).prop_map(Value::String),
        text_near(MAX_SOURCE_CHARS).prop_map(Value::String),
        "[ \t\n\u{0}a-zé✓]{0,8}".prop_map(Value::String),
    ]
}

/// A text of about `limit` characters (one or two bytes each), just under, at or over it.
fn text_near(limit: usize) -> impl Strategy<Value = String> {
    (
        limit.saturating_sub(2)..=limit + 2,
        prop_oneof![Just('x'), Just('é'), Just(' ')],
    )
        .prop_map(|(n, c)| std::iter::repeat_n(c, n).collect())
}

/// An entry object that may or may not be valid.
fn entry_object() -> impl Strategy<Value = Value> {
    proptest::collection::vec((field_name(), prop_oneof![field_value(), any_json()]), 0..6)
        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>()))
}

fn text_ok(s: &str, max: usize) -> bool {
    s.chars().count() <= max && !s.contains('\0')
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn validating_any_json_never_panics(value in any_json()) {
        let _ = validation::entry(&value);
        let _ = validation::batch(&value);
        let _ = validation::batch(&json!({"log_entries": value}));
        let _ = validation::time_window_hours(&value);
        let _ = validation::log_entry_ids(&value);
        let _ = validation::feedback_label(&value);
    }

    #[test]
    fn parsing_any_body_never_panics(body in prop_oneof![
        any::<String>().prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..200),
        any_json().prop_map(|v| v.to_string().into_bytes()),
    ]) {
        match validation::parse_json(&body) {
            Ok(value) => {
                let _ = validation::entry(&value);
            }
            Err(e) => prop_assert!(matches!(e, ApiError::BadRequest(ref m) if m.starts_with("JSON parse error - "))),
        }
    }

    #[test]
    fn an_accepted_entry_keeps_the_documented_limits(value in entry_object()) {
        let Ok(entry) = validation::entry(&value) else {
            return Ok(());
        };
        prop_assert!(SEVERITIES.contains(&entry.severity.as_str()));
        prop_assert_eq!(value["severity"].as_str(), Some(entry.severity.as_str()));
        prop_assert!(!entry.message.trim().is_empty());
        prop_assert!(text_ok(&entry.message, MAX_MESSAGE_CHARS));
        prop_assert_eq!(value["message"].as_str(), Some(entry.message.as_str()));
        if let Some(source) = &entry.source {
            prop_assert!(text_ok(source, MAX_SOURCE_CHARS));
        }
        let sent = value["timestamp"].as_str().expect("an accepted entry had a timestamp");
        let parsed = chrono::DateTime::parse_from_rfc3339(sent.trim()).expect("RFC 3339");
        prop_assert_eq!(entry.timestamp, parsed.to_utc());
    }

    #[test]
    fn a_rejected_entry_names_the_fields_at_fault(value in entry_object()) {
        match validation::entry(&value) {
            Ok(_) => {}
            Err(ApiError::Validation(fields)) => {
                prop_assert!(!fields.is_empty());
                for (field, messages) in &fields {
                    prop_assert!(
                        ["timestamp", "severity", "message", "source", "non_field_errors"]
                            .contains(&field.as_str()),
                        "{}", field
                    );
                    prop_assert!(messages.as_array().is_some_and(|m| !m.is_empty()));
                }
            }
            Err(other) => prop_assert!(false, "not a validation error: {:?}", other),
        }
    }

    #[test]
    fn a_well_formed_entry_within_the_limits_is_accepted(
        severity in proptest::sample::select(SEVERITIES.to_vec()),
        message in "[a-zA-Z0-9é✓][ a-zA-Z0-9é✓]{0,200}",
        long in any::<bool>(),
        source in proptest::option::of("[a-z0-9.-]{0,255}"),
        secs in 0i64..4_102_444_800,
    ) {
        let message = if long {
            let mut m = message.clone();
            m.extend(std::iter::repeat_n('é', MAX_MESSAGE_CHARS - message.chars().count()));
            m
        } else {
            message
        };
        let timestamp = chrono::DateTime::from_timestamp(secs, 0).expect("in range");
        let value = json!({
            "timestamp": timestamp.to_rfc3339(),
            "severity": severity,
            "message": message,
            "source": source,
        });
        let entry = validation::entry(&value).expect("a valid entry");
        prop_assert_eq!(entry.timestamp, timestamp);
        prop_assert_eq!(entry.message.chars().count(), message.chars().count());
        let batch = validation::batch(&json!({"log_entries": [value.clone(), value]}))
            .expect("a valid batch");
        prop_assert_eq!(batch.len(), 2);
    }

    #[test]
    fn one_character_over_a_limit_is_refused(c in prop_oneof![Just('x'), Just('é')]) {
        let over: String = std::iter::repeat_n(c, MAX_MESSAGE_CHARS + 1).collect();
        let value = json!({"timestamp": "2024-01-15T10:30:00Z", "severity": "INFO", "message": over});
        prop_assert!(validation::entry(&value).is_err());
        let source: String = std::iter::repeat_n(c, MAX_SOURCE_CHARS + 1).collect();
        let value = json!({"timestamp": "2024-01-15T10:30:00Z", "severity": "INFO", "message": "m", "source": source});
        prop_assert!(validation::entry(&value).is_err());
    }
}
