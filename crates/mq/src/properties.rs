//! Task metadata <-> AMQP properties and headers.

use lapin::{
    types::{AMQPValue, FieldTable, LongString, ShortString},
    BasicProperties,
};

use contracts::headers;

/// AMQP delivery mode of a message the broker writes to disk.
const PERSISTENT: u8 = 2;

/// Longest error text copied into a header; a header must fit in one frame and operators
/// only need the gist (the full error is in the task row and the logs).
const MAX_ERROR_HEADER_BYTES: usize = 2048;

/// Properties of a first publish (attempt 0).
pub(crate) fn for_new_task(task_name: &str, task_id: &str, app_id: &str) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        headers::SCHEMA_VERSION.into(),
        AMQPValue::LongString(contracts::SCHEMA_VERSION.into()),
    );
    headers.insert(headers::ATTEMPT.into(), AMQPValue::LongLongInt(0));
    let timestamp = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
    BasicProperties::default()
        .with_message_id(ShortString::from(task_id))
        .with_type(ShortString::from(task_name))
        .with_timestamp(timestamp)
        .with_app_id(ShortString::from(app_id))
        .with_content_type(contracts::CONTENT_TYPE.into())
        .with_delivery_mode(PERSISTENT)
        .with_headers(headers)
}

/// A copy of the task identity in `properties` (id, name, timestamp, app, content type,
/// correlation id, headers) with extra headers set, persistent, and without any
/// per-message expiration: retry delays come from the retry queue's TTL.
pub(crate) fn with_headers(
    properties: &BasicProperties,
    extra: impl IntoIterator<Item = (&'static str, AMQPValue)>,
) -> BasicProperties {
    let mut headers = properties.headers().clone().unwrap_or_default();
    for (key, value) in extra {
        headers.insert(key.into(), value);
    }
    // x-death grows by one entry per retry round trip; it is RabbitMQ's bookkeeping and
    // our own x-attempt already counts attempts.
    let headers: FieldTable = headers
        .inner()
        .iter()
        .filter(|(k, _)| k.as_str() != "x-death")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into();
    copy_standard(
        properties,
        BasicProperties::default()
            .with_headers(headers)
            .with_delivery_mode(PERSISTENT),
    )
}

fn copy_standard(from: &BasicProperties, mut to: BasicProperties) -> BasicProperties {
    if let Some(v) = from.message_id() {
        to = to.with_message_id(v.clone());
    }
    if let Some(v) = from.kind() {
        to = to.with_type(v.clone());
    }
    if let Some(v) = from.timestamp() {
        to = to.with_timestamp(*v);
    }
    if let Some(v) = from.app_id() {
        to = to.with_app_id(v.clone());
    }
    if let Some(v) = from.content_type() {
        to = to.with_content_type(v.clone());
    }
    if let Some(v) = from.correlation_id() {
        to = to.with_correlation_id(v.clone());
    }
    to
}

pub(crate) fn error_value(error: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(truncate(error, MAX_ERROR_HEADER_BYTES)))
}

pub(crate) fn attempt_value(attempt: u32) -> AMQPValue {
    AMQPValue::LongLongInt(i64::from(attempt))
}

/// `x-attempt`, tolerating any integer type a producer may have used; absent or
/// unreadable means the first attempt.
pub(crate) fn attempt(properties: &BasicProperties) -> u32 {
    let Some(value) = header(properties, headers::ATTEMPT) else {
        return 0;
    };
    let n: i64 = match value {
        AMQPValue::ShortShortInt(v) => i64::from(*v),
        AMQPValue::ShortShortUInt(v) => i64::from(*v),
        AMQPValue::ShortInt(v) => i64::from(*v),
        AMQPValue::ShortUInt(v) => i64::from(*v),
        AMQPValue::LongInt(v) => i64::from(*v),
        AMQPValue::LongUInt(v) => i64::from(*v),
        AMQPValue::LongLongInt(v) => *v,
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes())
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        _ => 0,
    };
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// A string header, if present and text.
pub(crate) fn header_str(properties: &BasicProperties, name: &str) -> Option<String> {
    match header(properties, name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn header<'a>(properties: &'a BasicProperties, name: &str) -> Option<&'a AMQPValue> {
    properties
        .headers()
        .as_ref()?
        .inner()
        .iter()
        .find(|(k, _)| k.as_str() == name)
        .map(|(_, v)| v)
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_task_properties_follow_the_wire_contract() {
        let p = for_new_task("logs.tasks.analyze_log_entry", "abc", "ingest-api");
        assert_eq!(p.message_id().as_ref().map(|s| s.as_str()), Some("abc"));
        assert_eq!(
            p.kind().as_ref().map(|s| s.as_str()),
            Some("logs.tasks.analyze_log_entry")
        );
        assert_eq!(p.delivery_mode(), &Some(2));
        assert_eq!(
            p.content_type().as_ref().map(|s| s.as_str()),
            Some("application/x-protobuf")
        );
        assert!(p.timestamp().is_some());
        assert_eq!(attempt(&p), 0);
        assert_eq!(
            header_str(&p, headers::SCHEMA_VERSION).as_deref(),
            Some("v1")
        );
    }

    #[test]
    fn retry_copy_bumps_the_attempt_and_keeps_the_identity() {
        let p = for_new_task("t", "id-1", "app").with_expiration("5000".into());
        let q = with_headers(
            &p,
            [
                (headers::ATTEMPT, attempt_value(3)),
                (headers::LAST_ERROR, error_value("db down")),
            ],
        );
        assert_eq!(attempt(&q), 3);
        assert_eq!(
            header_str(&q, headers::LAST_ERROR).as_deref(),
            Some("db down")
        );
        assert_eq!(q.message_id().as_ref().map(|s| s.as_str()), Some("id-1"));
        assert_eq!(q.kind().as_ref().map(|s| s.as_str()), Some("t"));
        assert!(q.expiration().is_none());
        assert_eq!(
            header_str(&q, headers::SCHEMA_VERSION).as_deref(),
            Some("v1")
        );
    }

    #[test]
    fn long_errors_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_ERROR_HEADER_BYTES);
        let cut = truncate(&long, MAX_ERROR_HEADER_BYTES);
        assert!(cut.len() <= MAX_ERROR_HEADER_BYTES);
        assert!(long.starts_with(cut));
    }

    #[test]
    fn odd_attempt_headers_do_not_panic() {
        let mut h = FieldTable::default();
        h.insert(headers::ATTEMPT.into(), AMQPValue::LongInt(-4));
        assert_eq!(attempt(&BasicProperties::default().with_headers(h)), 0);
        let mut h = FieldTable::default();
        h.insert(headers::ATTEMPT.into(), AMQPValue::LongString("2".into()));
        assert_eq!(attempt(&BasicProperties::default().with_headers(h)), 2);
    }
}
