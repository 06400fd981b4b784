//! The rules every protocol shares when it turns a record into a [`ShippedEntry`]: what a
//! message may be, how a source is cut, how attributes are bounded, and how much of the
//! input an error message may quote.

use std::io::Write;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::{MAX_ATTRIBUTES, MAX_ATTRIBUTE_JSON_BYTES, MAX_MESSAGE_CHARS, MAX_SOURCE_CHARS};

/// How many bytes of input an error message may quote.
pub(crate) const QUOTE_BYTES: usize = 200;

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a char boundary.
pub(crate) fn clip(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// An error message cut to [`QUOTE_BYTES`] (parser errors can quote a whole value).
pub(crate) fn short(message: impl std::fmt::Display) -> String {
    let text = message.to_string();
    if text.len() <= QUOTE_BYTES {
        text
    } else {
        format!("{}...", clip(&text, QUOTE_BYTES))
    }
}

/// A message as stored, or why the record cannot be taken.
pub(crate) fn check_message(message: String) -> Result<String, String> {
    if message.trim().is_empty() {
        return Err("message is blank".into());
    }
    if message.contains('\0') {
        return Err("message contains a null character, which cannot be stored".into());
    }
    let chars = message.chars().count();
    if chars > MAX_MESSAGE_CHARS {
        return Err(format!(
            "message has {chars} characters; at most {MAX_MESSAGE_CHARS} are allowed"
        ));
    }
    Ok(message)
}

/// A source as stored: NUL characters removed, surrounding whitespace trimmed, cut to
/// [`MAX_SOURCE_CHARS`] characters; `None` when nothing is left.
pub(crate) fn clip_source(source: &str) -> Option<String> {
    let cleaned: String = source
        .trim()
        .chars()
        .filter(|c| *c != '\0')
        .take(MAX_SOURCE_CHARS)
        .collect();
    let cleaned = cleaned.trim_end();
    (!cleaned.is_empty()).then(|| cleaned.to_owned())
}

/// A time in Unix nanoseconds, or why it cannot be stored.
pub(crate) fn from_unix_nanos(nanos: u64, field: &str) -> Result<DateTime<Utc>, String> {
    i64::try_from(nanos)
        .map(DateTime::from_timestamp_nanos)
        .map_err(|_| format!("{field} {nanos} is out of the supported time range"))
}

/// An entry's attributes, kept within [`MAX_ATTRIBUTES`] and [`MAX_ATTRIBUTE_JSON_BYTES`]:
/// what does not fit is dropped, never the record.
#[derive(Debug, Default)]
pub(crate) struct Attributes {
    map: Map<String, Value>,
}

impl Attributes {
    /// Sets `key`, replacing an earlier value; dropped when too big or when the entry is full.
    pub(crate) fn insert(&mut self, key: &str, value: Value) {
        if !fits(&value) {
            return;
        }
        if self.map.contains_key(key) || self.map.len() < MAX_ATTRIBUTES {
            self.map.insert(key.to_owned(), value);
        }
    }

    /// Sets `key` only if it has no value yet (for lower-priority sources).
    pub(crate) fn insert_if_absent(&mut self, key: &str, value: Value) {
        if !self.map.contains_key(key) {
            self.insert(key, value);
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.map.len() >= MAX_ATTRIBUTES
    }

    pub(crate) fn into_map(self) -> Map<String, Value> {
        self.map
    }
}

/// Whether `value` takes at most [`MAX_ATTRIBUTE_JSON_BYTES`] as JSON; stops writing at
/// the limit rather than rendering a huge value in full.
fn fits(value: &Value) -> bool {
    let mut sink = Bounded {
        left: MAX_ATTRIBUTE_JSON_BYTES,
    };
    serde_json::to_writer(&mut sink, value).is_ok()
}

struct Bounded {
    left: usize,
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() > self.left {
            return Err(std::io::Error::other("attribute too large"));
        }
        self.left -= buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A JSON value as text: a string as it is, anything else as compact JSON.
pub(crate) fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn clip_never_cuts_a_character() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("héllo", 3), "hé");
        assert_eq!(clip("abc", 10), "abc");
    }

    #[test]
    fn a_long_source_is_cut_on_a_character_boundary() {
        let long = "é".repeat(300);
        let clipped = clip_source(&long).expect("not empty");
        assert_eq!(clipped.chars().count(), MAX_SOURCE_CHARS);
        assert_eq!(clip_source("  \0 "), None);
        assert_eq!(clip_source(" web\0-1 ").as_deref(), Some("web-1"));
    }

    #[test]
    fn messages_are_checked_for_blank_nul_and_length() {
        assert!(check_message("  \n".into()).is_err());
        assert!(check_message("a\0b".into()).is_err());
        let at_limit = "x".repeat(MAX_MESSAGE_CHARS);
        assert!(check_message(at_limit).is_ok());
        let over = "x".repeat(MAX_MESSAGE_CHARS + 1);
        let reason = check_message(over).expect_err("too long");
        assert!(reason.contains("65536"), "{reason}");
    }

    #[test]
    fn attributes_drop_what_does_not_fit() {
        let mut attrs = Attributes::default();
        attrs.insert("big", json!("x".repeat(MAX_ATTRIBUTE_JSON_BYTES)));
        for i in 0..100 {
            attrs.insert(&format!("k{i}"), json!(i));
        }
        attrs.insert("k0", json!("replaced"));
        attrs.insert_if_absent("k1", json!("ignored"));
        let map = attrs.into_map();
        assert_eq!(map.len(), MAX_ATTRIBUTES);
        assert!(!map.contains_key("big"));
        assert_eq!(map["k0"], json!("replaced"));
        assert_eq!(map["k1"], json!(1));
    }
}
