//! The slice of the Elasticsearch API that Beats, Logstash, Fluent Bit, Vector and the
//! official clients need to ship logs: `POST /_bulk` (NDJSON), its response, and the
//! `GET /` cluster info they check before the first bulk.
//!
//! Only new documents are taken: `index` and `create` items become entries; `delete` and
//! `update` are answered as per-item errors, as is a source line that is not a JSON
//! object or has no message. Broken framing (an action line that is not JSON, an unknown
//! action, an action without its source line) fails the whole request, as in
//! Elasticsearch.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{json, Map, Value};

use crate::entry::{self, Attributes};
use crate::{severity, severity_from_syslog, DecodeError, ShippedEntry};

/// Header the clients require on every answer.
pub const PRODUCT_HEADER: (&str, &str) = ("X-Elastic-Product", "Elasticsearch");
/// The Elasticsearch version [`root_info`] claims (8.x clients refuse older servers).
pub const VERSION: &str = "8.11.0";

const MESSAGE_FIELDS: [&str; 3] = ["message", "log.original", "event.original"];
const LEVEL_FIELDS: [&str; 4] = ["log.level", "level", "severity", "log.syslog.severity.name"];
const SYSLOG_CODE_FIELDS: [&str; 1] = ["log.syslog.severity.code"];
const SOURCE_FIELDS: [&str; 3] = ["service.name", "host.name", "host.hostname"];

/// A decoded bulk request, items in request order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Bulk {
    pub items: Vec<BulkItem>,
}

/// One bulk item: its action and metadata, and the entry or why it was not taken.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkItem {
    pub action: Action,
    /// `_index` from the action line, else the default index given, else `""`.
    pub index: String,
    /// `_id` from the action line (a number is taken as its decimal text).
    pub id: Option<String>,
    pub outcome: Result<ShippedEntry, String>,
}

/// A bulk action.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    Index,
    Create,
    Delete,
    Update,
}

impl Action {
    /// The action's name on the wire (`"index"`, `"create"`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Action::Index => "index",
            Action::Create => "create",
            Action::Delete => "delete",
            Action::Update => "update",
        }
    }

    fn from_name(name: &str) -> Option<Action> {
        match name {
            "index" => Some(Action::Index),
            "create" => Some(Action::Create),
            "delete" => Some(Action::Delete),
            "update" => Some(Action::Update),
            _ => None,
        }
    }
}

/// Decodes a `POST /_bulk` NDJSON body: action lines each followed by a source line
/// (`delete` has none). Blank lines are skipped and the last line needs no newline.
///
/// # Errors
///
/// [`DecodeError::Malformed`] for broken framing: an action line that is not a JSON
/// object with one of `index`, `create`, `delete`, `update`, or an action without its
/// source line.
pub fn decode_bulk(body: &[u8]) -> Result<Bulk, DecodeError> {
    decode_bulk_into(body, None)
}

/// [`decode_bulk`] for `POST /{index}/_bulk`: items without `_index` get `default_index`.
///
/// # Errors
///
/// As [`decode_bulk`].
pub fn decode_bulk_into(body: &[u8], default_index: Option<&str>) -> Result<Bulk, DecodeError> {
    let now = Utc::now();
    let mut lines = body
        .split(|b| *b == b'\n')
        .enumerate()
        .map(|(i, line)| (i + 1, line.strip_suffix(b"\r").unwrap_or(line)))
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace));
    let mut items = Vec::new();
    while let Some((number, line)) = lines.next() {
        let (action, meta) = action_of(number, line)?;
        let index = meta_text(&meta, "_index")
            .or_else(|| default_index.map(str::to_owned))
            .unwrap_or_default();
        let id = meta_text(&meta, "_id");
        let outcome = match action {
            Action::Delete => Err(unsupported(action)),
            Action::Update | Action::Index | Action::Create => {
                let Some((_, source)) = lines.next() else {
                    return Err(DecodeError::Malformed(format!(
                        "the {} action on line {number} has no source line after it",
                        action.name()
                    )));
                };
                if action == Action::Update {
                    Err(unsupported(action))
                } else {
                    entry_of_source(source, &index, now)
                }
            }
        };
        items.push(BulkItem {
            action,
            index,
            id,
            outcome,
        });
    }
    Ok(Bulk { items })
}

fn unsupported(action: Action) -> String {
    format!(
        "the {} action is not supported: logcanary only takes new documents (index, create)",
        action.name()
    )
}

fn action_of(number: usize, line: &[u8]) -> Result<(Action, Map<String, Value>), DecodeError> {
    let malformed = |detail: String| {
        DecodeError::Malformed(entry::short(format_args!(
            "malformed action/metadata line [{number}]: {detail}"
        )))
    };
    let value: Value =
        serde_json::from_slice(line).map_err(|e| malformed(format!("not JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(malformed("expected a JSON object".into()));
    };
    let mut pairs = object.into_iter();
    let (Some((name, meta)), None) = (pairs.next(), pairs.next()) else {
        return Err(malformed(
            "expected an object with exactly one action".into(),
        ));
    };
    let action = Action::from_name(&name).ok_or_else(|| {
        malformed(format!(
            "expected one of [create, delete, index, update] but found [{}]",
            entry::clip(&name, 40)
        ))
    })?;
    match meta {
        Value::Object(meta) => Ok((action, meta)),
        Value::Null => Ok((action, Map::new())),
        _ => Err(malformed(format!("the {name} metadata must be an object"))),
    }
}

fn meta_text(meta: &Map<String, Value>, key: &str) -> Option<String> {
    match meta.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn entry_of_source(source: &[u8], index: &str, now: DateTime<Utc>) -> Result<ShippedEntry, String> {
    let value: Value = serde_json::from_slice(source)
        .map_err(|e| entry::short(format_args!("failed to parse the document: {e}")))?;
    let Value::Object(doc) = value else {
        return Err("failed to parse the document: expected a JSON object".into());
    };
    let message = MESSAGE_FIELDS
        .iter()
        .find_map(|f| field(&doc, f).filter(|v| has_text(v)))
        .map(entry::text_of)
        .ok_or_else(|| {
            "the document has no message, log.original or event.original field with text".to_owned()
        })?;
    let message = entry::check_message(message)?;
    let source = SOURCE_FIELDS
        .iter()
        .filter_map(|f| field(&doc, f).and_then(Value::as_str))
        .chain(Some(index))
        .find_map(entry::clip_source);
    Ok(ShippedEntry {
        timestamp: timestamp_of(&doc, now)?,
        severity: severity_of(&doc),
        message,
        source,
        attributes: attributes_of(doc),
    })
}

/// Whether a message field holds something: not null, not a blank string.
fn has_text(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.trim().is_empty(),
        _ => true,
    }
}

/// A field by ECS name: a dotted key (`"log.level"`), nested objects
/// (`{"log":{"level":..}}`), or a mix of both.
fn field<'a>(object: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = object.get(path) {
        return Some(value);
    }
    path.match_indices('.').find_map(|(dot, _)| {
        object
            .get(&path[..dot])
            .and_then(Value::as_object)
            .and_then(|inner| field(inner, &path[dot + 1..]))
    })
}

fn severity_of(doc: &Map<String, Value>) -> &'static str {
    let level = |value: &Value| match value {
        Value::String(s) => severity::from_text(s),
        Value::Number(n) => n.as_i64().map(severity_from_syslog),
        _ => None,
    };
    LEVEL_FIELDS
        .iter()
        .chain(&SYSLOG_CODE_FIELDS)
        .find_map(|f| field(doc, f).and_then(level))
        .unwrap_or("INFO")
}

/// `@timestamp` as RFC 3339 (or Elasticsearch's `strict_date_optional_time` without a
/// zone, read as UTC) or epoch milliseconds (a number or a string of digits); else now.
fn timestamp_of(doc: &Map<String, Value>, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let bad = |v: &Value| {
        format!(
            "@timestamp {} is not an RFC 3339 date or epoch milliseconds",
            entry::short(v)
        )
    };
    match doc.get("@timestamp") {
        None | Some(Value::Null) => Ok(now),
        Some(v @ Value::String(s)) => parse_date(s.trim()).ok_or_else(|| bad(v)),
        Some(v @ Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && f.abs() < 9.0e18)
                    .map(|f| f as i64)
            })
            .and_then(DateTime::from_timestamp_millis)
            .ok_or_else(|| bad(v)),
        Some(v) => Err(bad(v)),
    }
}

fn parse_date(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok().and_then(DateTime::from_timestamp_millis);
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

fn attributes_of(doc: Map<String, Value>) -> Map<String, Value> {
    let mut attributes = Attributes::default();
    for (key, value) in doc {
        if key == "message" || key == "@timestamp" {
            continue;
        }
        if attributes.is_full() {
            break;
        }
        attributes.insert(&key, value);
    }
    attributes.into_map()
}

/// The bulk response body. `stored_ids[i]` is `Some(id)` for items that were stored (the
/// database id, used as `_id` when the item had none and as `_seq_no`); an item whose
/// entry was decoded but has no stored id is answered 500 (not stored, so clients retry).
/// Items that were not taken are answered 400 with `mapper_parsing_exception` (bad
/// source) or `illegal_argument_exception` (delete, update).
pub fn bulk_response(bulk: &Bulk, stored_ids: &[Option<i64>], took_ms: u64) -> Value {
    let items: Vec<Value> = bulk
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| item_response(item, stored_ids.get(i).copied().flatten()))
        .collect();
    let errors = items.iter().any(|item| {
        item.as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v.get("error"))
            .is_some()
    });
    json!({"took": took_ms, "errors": errors, "items": items})
}

fn item_response(item: &BulkItem, stored: Option<i64>) -> Value {
    let id = item.id.clone().or_else(|| stored.map(|s| s.to_string()));
    let body = match (&item.outcome, stored) {
        (Ok(_), Some(seq_no)) => json!({
            "_index": item.index,
            "_id": id,
            "_version": 1,
            "result": "created",
            "_shards": {"total": 1, "successful": 1, "failed": 0},
            "_seq_no": seq_no,
            "_primary_term": 1,
            "status": 201,
        }),
        (Ok(_), None) => item_error(item, &id, 500, "exception", "the document was not stored"),
        (Err(reason), _) => {
            let kind = match item.action {
                Action::Index | Action::Create => "mapper_parsing_exception",
                Action::Delete | Action::Update => "illegal_argument_exception",
            };
            item_error(item, &id, 400, kind, reason)
        }
    };
    json!({ item.action.name(): body })
}

fn item_error(
    item: &BulkItem,
    id: &Option<String>,
    status: u16,
    kind: &str,
    reason: &str,
) -> Value {
    json!({
        "_index": item.index,
        "_id": id,
        "status": status,
        "error": {"type": kind, "reason": reason},
    })
}

/// The `GET /` answer Beats and the official clients check before they ship: an 8.x
/// version with its compatibility range, and the tagline.
pub fn root_info() -> Value {
    json!({
        "name": "logcanary",
        "cluster_name": "logcanary",
        "cluster_uuid": "bG9nY2FuYXJ5LWNsdXN0ZXI",
        "version": {
            "number": VERSION,
            "build_flavor": "default",
            "build_type": "docker",
            "build_hash": "logcanary",
            "build_date": "2023-11-04T10:04:57.184859352Z",
            "build_snapshot": false,
            "lucene_version": "9.8.0",
            "minimum_wire_compatibility_version": "7.17.0",
            "minimum_index_compatibility_version": "7.0.0",
        },
        "tagline": "You Know, for Search",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn fields_are_found_dotted_nested_or_mixed() {
        let d = doc(json!({"log": {"syslog.severity": {"name": "warn"}}, "service.name": "api"}));
        assert_eq!(field(&d, "log.syslog.severity.name"), Some(&json!("warn")));
        assert_eq!(field(&d, "service.name"), Some(&json!("api")));
        assert_eq!(field(&d, "host.name"), None);
    }

    #[test]
    fn severity_comes_from_level_fields_or_syslog_numbers() {
        let cases = [
            (json!({"log": {"level": "error"}}), "ERROR"),
            (json!({"level": "WARN"}), "WARNING"),
            (json!({"severity": "debug"}), "DEBUG"),
            (json!({"log.syslog.severity.name": "crit"}), "CRITICAL"),
            (
                json!({"log": {"syslog": {"severity": {"code": 3}}}}),
                "ERROR",
            ),
            (json!({"severity": 4}), "WARNING"),
            (json!({"level": 50}), "ERROR"),
            (json!({"level": "chatty"}), "INFO"),
            (json!({}), "INFO"),
        ];
        for (value, level) in cases {
            assert_eq!(severity_of(&doc(value.clone())), level, "{value}");
        }
    }

    #[test]
    fn timestamps_are_rfc3339_or_epoch_millis() {
        let now = Utc::now();
        let ts = |v: Value| timestamp_of(&doc(json!({"@timestamp": v})), now);
        let expected = DateTime::from_timestamp_millis(1_700_000_000_123).expect("valid");
        assert_eq!(ts(json!("2023-11-14T22:13:20.123Z")), Ok(expected));
        assert_eq!(ts(json!("2023-11-14T23:13:20.123+01:00")), Ok(expected));
        assert_eq!(ts(json!("2023-11-14T22:13:20.123")), Ok(expected));
        assert_eq!(ts(json!(1_700_000_000_123_i64)), Ok(expected));
        assert_eq!(ts(json!("1700000000123")), Ok(expected));
        assert!(ts(json!("2023-11-14")).is_ok());
        assert!(ts(json!("last tuesday")).is_err());
        assert!(ts(json!(i64::MAX)).is_err());
        assert_eq!(timestamp_of(&Map::new(), now), Ok(now));
    }
}
