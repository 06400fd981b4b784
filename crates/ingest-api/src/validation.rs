//! Request validation with Django-REST-framework error messages, so old clients that
//! display or parse those messages keep working.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::errors::{push, ApiError, FieldErrors};

pub const SEVERITIES: [&str; 5] = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];
pub const MAX_MESSAGE_CHARS: usize = 65_536;
pub const MAX_SOURCE_CHARS: usize = 255;
pub const MAX_BATCH: usize = 10_000;
pub const MAX_WINDOW_HOURS: i64 = 720;

const REQUIRED: &str = "This field is required.";
const DATETIME_FORMAT: &str = "Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].";

/// Parses the raw body as JSON; malformed JSON is a 400 with a `detail`.
pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("JSON parse error - {e}")))
}

fn expect_object(value: &Value) -> Result<&Map<String, Value>, ApiError> {
    value.as_object().ok_or_else(|| {
        let mut errors = Map::new();
        errors.insert(
            "non_field_errors".into(),
            json!([format!(
                "Invalid data. Expected a dictionary, but got {}.",
                type_name(value)
            )]),
        );
        ApiError::Validation(errors)
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

fn text_field(
    obj: &Map<String, Value>,
    field: &str,
    max_chars: usize,
    required: bool,
    errors: &mut FieldErrors,
) -> Option<String> {
    match obj.get(field) {
        None if required => {
            push(errors, field, REQUIRED);
            None
        }
        None | Some(Value::Null) if !required => None,
        Some(Value::Null) => {
            push(errors, field, "This field may not be null.");
            None
        }
        Some(Value::String(s)) => {
            if required && s.trim().is_empty() {
                push(errors, field, "This field may not be blank.");
                None
            } else if s.contains('\0') {
                push(errors, field, "Null characters are not allowed.");
                None
            } else if s.chars().count() > max_chars {
                push(
                    errors,
                    field,
                    format!("Ensure this field has no more than {max_chars} characters."),
                );
                None
            } else {
                Some(s.clone())
            }
        }
        Some(_) => {
            push(errors, field, "Not a valid string.");
            None
        }
        None => None,
    }
}

/// A validated log entry.
#[derive(Debug, Clone)]
pub struct EntryInput {
    pub timestamp: DateTime<Utc>,
    pub severity: String,
    pub message: String,
    pub source: Option<String>,
}

impl From<EntryInput> for db::models::NewLogEntry {
    fn from(e: EntryInput) -> Self {
        db::models::NewLogEntry {
            logged_at: e.timestamp,
            severity: e.severity,
            message: e.message,
            source: e.source,
        }
    }
}

/// Validates one entry object, collecting every field's errors.
pub fn entry(value: &Value) -> Result<EntryInput, ApiError> {
    let obj = expect_object(value)?;
    let mut errors = FieldErrors::new();
    let timestamp = match obj.get("timestamp") {
        None => {
            push(&mut errors, "timestamp", REQUIRED);
            None
        }
        Some(Value::String(s)) => match DateTime::parse_from_rfc3339(s.trim()) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                push(&mut errors, "timestamp", DATETIME_FORMAT);
                None
            }
        },
        Some(Value::Null) => {
            push(&mut errors, "timestamp", "This field may not be null.");
            None
        }
        Some(_) => {
            push(&mut errors, "timestamp", DATETIME_FORMAT);
            None
        }
    };
    let severity = match obj.get("severity") {
        None => {
            push(&mut errors, "severity", REQUIRED);
            None
        }
        Some(Value::String(s)) if SEVERITIES.contains(&s.as_str()) => Some(s.clone()),
        Some(Value::String(s)) => {
            push(
                &mut errors,
                "severity",
                format!("\"{s}\" is not a valid choice."),
            );
            None
        }
        Some(other) => {
            push(
                &mut errors,
                "severity",
                format!("\"{other}\" is not a valid choice."),
            );
            None
        }
    };
    let message = text_field(obj, "message", MAX_MESSAGE_CHARS, true, &mut errors);
    let source = text_field(obj, "source", MAX_SOURCE_CHARS, false, &mut errors);
    match (timestamp, severity, message) {
        (Some(timestamp), Some(severity), Some(message)) if errors.is_empty() => Ok(EntryInput {
            timestamp,
            severity,
            message,
            source,
        }),
        _ => Err(ApiError::Validation(errors)),
    }
}

/// `{"log_entries": [entry, ...]}` with 1..=10 000 entries. Errors of individual entries
/// come back as DRF does for a nested list: one object per entry, empty when it was fine.
pub fn batch(value: &Value) -> Result<Vec<EntryInput>, ApiError> {
    let obj = expect_object(value)?;
    let list = list_field(obj, "log_entries")?;
    let mut entries = Vec::with_capacity(list.len());
    let mut per_entry = Vec::with_capacity(list.len());
    let mut failed = false;
    for item in list {
        match entry(item) {
            Ok(e) => {
                entries.push(e);
                per_entry.push(json!({}));
            }
            Err(ApiError::Validation(fields)) => {
                failed = true;
                per_entry.push(Value::Object(fields));
            }
            Err(other) => return Err(other),
        }
    }
    if failed {
        let mut errors = FieldErrors::new();
        errors.insert("log_entries".into(), Value::Array(per_entry));
        return Err(ApiError::Validation(errors));
    }
    Ok(entries)
}

fn list_field<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a Vec<Value>, ApiError> {
    match obj.get(field) {
        None => Err(ApiError::field(field, REQUIRED)),
        Some(Value::Array(list)) if list.is_empty() => {
            Err(ApiError::field(field, "This list may not be empty."))
        }
        Some(Value::Array(list)) if list.len() > MAX_BATCH => Err(ApiError::field(
            field,
            format!("Ensure this field has no more than {MAX_BATCH} elements."),
        )),
        Some(Value::Array(list)) => Ok(list),
        Some(other) => Err(ApiError::field(
            field,
            format!(
                "Expected a list of items but got type \"{}\".",
                type_name(other)
            ),
        )),
    }
}

/// `{"time_window_hours": 1..=720}`; absent means 24, as the old API did.
pub fn time_window_hours(value: &Value) -> Result<u32, ApiError> {
    let obj = expect_object(value)?;
    const FIELD: &str = "time_window_hours";
    let hours = match obj.get(FIELD) {
        None => 24,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(h) => h,
            None => return Err(ApiError::field(FIELD, "A valid integer is required.")),
        },
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| ApiError::field(FIELD, "A valid integer is required."))?,
        Some(_) => return Err(ApiError::field(FIELD, "A valid integer is required.")),
    };
    if hours < 1 {
        return Err(ApiError::field(
            FIELD,
            "Ensure this value is greater than or equal to 1.",
        ));
    }
    if hours > MAX_WINDOW_HOURS {
        return Err(ApiError::field(
            FIELD,
            format!("Ensure this value is less than or equal to {MAX_WINDOW_HOURS}."),
        ));
    }
    Ok(hours as u32)
}

/// `{"log_entry_ids": [int, ...]}` with 1..=10 000 ids; duplicates are removed, order kept.
pub fn log_entry_ids(value: &Value) -> Result<Vec<i64>, ApiError> {
    let obj = expect_object(value)?;
    const FIELD: &str = "log_entry_ids";
    let list = list_field(obj, FIELD)?;
    let mut ids = Vec::with_capacity(list.len());
    let mut seen = std::collections::HashSet::with_capacity(list.len());
    for item in list {
        match item.as_i64() {
            Some(id) if id > 0 => {
                if seen.insert(id) {
                    ids.push(id);
                }
            }
            _ => {
                return Err(ApiError::field(
                    FIELD,
                    format!("{item} is not a valid log entry id (a positive integer)."),
                ))
            }
        }
    }
    Ok(ids)
}

/// The `label` of a feedback body: `normal` or `anomaly`.
pub fn feedback_label(value: &Value) -> Result<&'static str, ApiError> {
    let obj = expect_object(value)?;
    let message = match obj.get("label") {
        None => "This field is required.".to_owned(),
        Some(Value::Null) => "This field may not be null.".to_owned(),
        Some(Value::String(s)) => match db::templates::LABELS.iter().find(|l| **l == s.as_str()) {
            Some(label) => return Ok(label),
            None => format!("\"{s}\" is not a valid choice."),
        },
        Some(other) => format!("\"{other}\" is not a valid choice."),
    };
    Err(ApiError::field("label", message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(e: ApiError) -> Value {
        match e {
            ApiError::Validation(f) => Value::Object(f),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn valid_entry() {
        let e = entry(&json!({"timestamp": "2024-01-15T10:30:00Z", "severity": "ERROR", "message": "x", "source": "db"})).unwrap();
        assert_eq!(e.severity, "ERROR");
        assert_eq!(e.source.as_deref(), Some("db"));
    }

    #[test]
    fn every_field_error_is_reported() {
        let errs =
            fields(entry(&json!({"timestamp": "yesterday", "severity": "FOO"})).unwrap_err());
        assert_eq!(errs["severity"], json!(["\"FOO\" is not a valid choice."]));
        assert_eq!(errs["message"], json!(["This field is required."]));
        assert_eq!(errs["timestamp"], json!([DATETIME_FORMAT]));
    }

    #[test]
    fn batch_errors_are_per_entry() {
        let ok =
            json!({"timestamp": "2024-01-15T10:30:00Z", "severity": "INFO", "message": "fine"});
        let bad = json!({"timestamp": "2024-01-15T10:30:00Z", "severity": "INFO", "message": ""});
        let errs = fields(batch(&json!({"log_entries": [ok, bad]})).unwrap_err());
        assert_eq!(errs["log_entries"][0], json!({}));
        assert_eq!(
            errs["log_entries"][1]["message"],
            json!(["This field may not be blank."])
        );
        let errs = fields(batch(&json!({"log_entries": []})).unwrap_err());
        assert_eq!(errs["log_entries"], json!(["This list may not be empty."]));
    }

    #[test]
    fn window_bounds() {
        assert_eq!(time_window_hours(&json!({})).unwrap(), 24);
        assert_eq!(
            time_window_hours(&json!({"time_window_hours": 720})).unwrap(),
            720
        );
        assert!(time_window_hours(&json!({"time_window_hours": 0})).is_err());
        assert!(time_window_hours(&json!({"time_window_hours": 721})).is_err());
        assert!(time_window_hours(&json!({"time_window_hours": 1.5})).is_err());
    }

    #[test]
    fn ids_are_positive_integers() {
        assert_eq!(
            log_entry_ids(&json!({"log_entry_ids": [3, 1, 3]})).unwrap(),
            vec![3, 1]
        );
        assert!(log_entry_ids(&json!({"log_entry_ids": ["a"]})).is_err());
        assert!(log_entry_ids(&json!({"log_entry_ids": [0]})).is_err());
    }
}
