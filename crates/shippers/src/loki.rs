//! Loki's push API (`POST /loki/api/v1/push`), as Promtail, Grafana Alloy, the Docker
//! driver and Fluent Bit's `loki` output send it.
//!
//! The protobuf body is a snappy *block* compressed `logproto.PushRequest` (the snappy is
//! part of the protocol, so it is undone here, within the caller's size limit); the JSON
//! body is `{"streams":[{"stream":{labels},"values":[["<unix ns>","line",{metadata}?]]}]}`.
//! The protobuf messages are declared by hand in [`proto`]; a stream's labels arrive as a
//! Prometheus-style selector (`{job="x", level="error"}`), read by [`parse_labels`].
//!
//! Entries are counted across all streams from 0 ([`Rejected::index`]). A stream whose
//! labels cannot be read rejects its entries, not the request.

use chrono::{DateTime, Utc};
use prost::Message as _;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::entry::{self, Attributes};
use crate::{compression, severity, DecodeError, Decoded, Format, Rejected, ShippedEntry};

/// Labels and metadata keys that carry the level, in order of preference.
const LEVEL_KEYS: [&str; 3] = ["level", "severity", "detected_level"];
/// Stream labels that name the source, in order of preference.
const SOURCE_KEYS: [&str; 5] = ["service_name", "job", "app", "host", "instance"];

/// Loki's `logproto` push messages (wire-compatible subset).
pub mod proto {
    /// `logproto.PushRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<StreamAdapter>,
    }

    /// `logproto.StreamAdapter`: one stream's labels (`{k="v", ...}`) and entries.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StreamAdapter {
        #[prost(string, tag = "1")]
        pub labels: String,
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<EntryAdapter>,
        #[prost(uint64, tag = "3")]
        pub hash: u64,
    }

    /// `logproto.EntryAdapter`. The line is read as bytes (a `string` on the wire) so one
    /// line of invalid UTF-8 is taken lossily instead of failing the whole push.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EntryAdapter {
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<prost_types::Timestamp>,
        #[prost(bytes = "vec", tag = "2")]
        pub line: Vec<u8>,
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<LabelPairAdapter>,
    }

    /// `logproto.LabelPairAdapter`: one structured-metadata pair.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPairAdapter {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }
}

/// Decodes a Loki push body in `format`; `max_bytes` bounds the snappy-decompressed size
/// of a protobuf body.
///
/// A protobuf body that is not snappy but is a valid `PushRequest` is taken as it is (for
/// a caller that already undid `Content-Encoding: snappy`). An entry with a bad
/// timestamp, a blank or too long line, or in a stream whose labels cannot be read is
/// rejected; the rest are taken.
///
/// # Errors
///
/// [`DecodeError::Malformed`] when the body is not a push request in `format`,
/// [`DecodeError::TooLarge`] when its decompressed size would exceed `max_bytes`.
pub fn decode(body: &[u8], format: Format, max_bytes: usize) -> Result<Decoded, DecodeError> {
    let streams = match format {
        Format::Protobuf => streams_of_protobuf(body, max_bytes)?,
        Format::Json => streams_of_json(body)?,
    };
    let mut decoded = Decoded::default();
    let mut index = 0;
    for stream in streams {
        decode_stream(stream, &mut index, &mut decoded);
    }
    Ok(decoded)
}

/// One stream, whichever format it came in.
struct Stream {
    labels: Result<Vec<(String, String)>, String>,
    entries: Vec<Result<RawEntry, String>>,
}

struct RawEntry {
    timestamp: DateTime<Utc>,
    line: String,
    metadata: Vec<(String, String)>,
}

fn decode_stream(stream: Stream, index: &mut usize, decoded: &mut Decoded) {
    for raw in stream.entries {
        let outcome = stream
            .labels
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|labels| raw.and_then(|raw| entry_of(labels, raw)));
        match outcome {
            Ok(entry) => decoded.entries.push(entry),
            Err(reason) => decoded.rejected.push(Rejected {
                index: *index,
                reason,
            }),
        }
        *index += 1;
    }
}

fn entry_of(labels: &[(String, String)], raw: RawEntry) -> Result<ShippedEntry, String> {
    let message = entry::check_message(raw.line)?;
    let severity = level_of(&raw.metadata)
        .or_else(|| level_of(labels))
        .unwrap_or("INFO");
    let source = SOURCE_KEYS
        .iter()
        .find_map(|key| lookup(labels, key).and_then(entry::clip_source));
    let mut attributes = Attributes::default();
    for (name, value) in raw.metadata.iter().chain(labels) {
        attributes.insert_if_absent(name, Value::String(value.clone()));
    }
    Ok(ShippedEntry {
        timestamp: raw.timestamp,
        severity,
        message,
        source,
        attributes: attributes.into_map(),
    })
}

fn lookup<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, v)| v.as_str())
}

fn level_of(pairs: &[(String, String)]) -> Option<&'static str> {
    LEVEL_KEYS
        .iter()
        .find_map(|key| lookup(pairs, key).and_then(severity::from_text))
}

fn streams_of_protobuf(body: &[u8], max_bytes: usize) -> Result<Vec<Stream>, DecodeError> {
    let request = match compression::snappy_block(body, max_bytes) {
        Ok(raw) => proto::PushRequest::decode(&raw[..]).map_err(|e| {
            DecodeError::Malformed(entry::short(format_args!(
                "the body is not a Loki PushRequest in protobuf: {e}"
            )))
        })?,
        Err(DecodeError::TooLarge(m)) => return Err(DecodeError::TooLarge(m)),
        Err(snappy) => {
            if body.len() > max_bytes {
                return Err(DecodeError::TooLarge(format!(
                    "the body exceeds the limit of {max_bytes} bytes"
                )));
            }
            // Not snappy: a caller may have undone Content-Encoding: snappy already.
            proto::PushRequest::decode(body).map_err(|_| {
                DecodeError::Malformed(format!(
                    "{snappy} (a Loki protobuf push is a snappy-compressed PushRequest)"
                ))
            })?
        }
    };
    Ok(request
        .streams
        .into_iter()
        .map(stream_of_protobuf)
        .collect())
}

fn stream_of_protobuf(stream: proto::StreamAdapter) -> Stream {
    let entries = stream
        .entries
        .into_iter()
        .map(|e| {
            let timestamp = e
                .timestamp
                .ok_or_else(|| "entry has no timestamp".to_owned())
                .and_then(|t| timestamp_of_proto(&t))?;
            Ok(RawEntry {
                timestamp,
                line: String::from_utf8_lossy(&e.line).into_owned(),
                metadata: e
                    .structured_metadata
                    .into_iter()
                    .map(|p| (p.name, p.value))
                    .collect(),
            })
        })
        .collect();
    Stream {
        labels: parse_labels(&stream.labels),
        entries,
    }
}

fn timestamp_of_proto(t: &prost_types::Timestamp) -> Result<DateTime<Utc>, String> {
    u32::try_from(t.nanos)
        .ok()
        .and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos))
        .ok_or_else(|| {
            format!(
                "timestamp {}s {}ns is out of the supported time range",
                t.seconds, t.nanos
            )
        })
}

#[derive(Deserialize)]
struct JsonPush {
    #[serde(default)]
    streams: Vec<JsonStream>,
}

#[derive(Deserialize)]
struct JsonStream {
    #[serde(default)]
    stream: Map<String, Value>,
    #[serde(default)]
    values: Vec<Value>,
}

fn streams_of_json(body: &[u8]) -> Result<Vec<Stream>, DecodeError> {
    let push: JsonPush = serde_json::from_slice(body).map_err(|e| {
        DecodeError::Malformed(entry::short(format_args!(
            "the body is not a Loki push request in JSON ({{\"streams\":[{{\"stream\":{{...}},\"values\":[[\"<unix ns>\",\"line\"]]}}]}}): {e}"
        )))
    })?;
    Ok(push.streams.into_iter().map(stream_of_json).collect())
}

fn stream_of_json(stream: JsonStream) -> Stream {
    let labels = stream
        .stream
        .into_iter()
        .map(|(k, v)| (k, entry::text_of(&v)))
        .collect();
    Stream {
        labels: Ok(labels),
        entries: stream.values.iter().map(entry_of_json).collect(),
    }
}

/// `["<unix ns>", "line"]` or `["<unix ns>", "line", {"key": "value", ...}]`.
fn entry_of_json(value: &Value) -> Result<RawEntry, String> {
    let shape = || {
        "an entry must be [\"<unix ns>\", \"line\"] or [\"<unix ns>\", \"line\", {metadata}]"
            .to_owned()
    };
    let items = value.as_array().ok_or_else(shape)?;
    let (ts, line, metadata) = match items.as_slice() {
        [ts, line] => (ts, line, None),
        [ts, line, metadata] => (ts, line, Some(metadata)),
        _ => return Err(shape()),
    };
    let line = line.as_str().ok_or_else(shape)?.to_owned();
    let metadata = match metadata {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), entry::text_of(v)))
            .collect(),
        Some(_) => return Err("structured metadata must be an object of strings".into()),
    };
    Ok(RawEntry {
        timestamp: timestamp_of_json(ts)?,
        line,
        metadata,
    })
}

fn timestamp_of_json(value: &Value) -> Result<DateTime<Utc>, String> {
    let nanos = match value {
        Value::String(s) => s.trim().parse::<i64>().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    };
    nanos.map(DateTime::from_timestamp_nanos).ok_or_else(|| {
        format!(
            "timestamp {} is not a Unix time in nanoseconds as a string of digits",
            entry::short(value)
        )
    })
}

/// Reads a Prometheus-style label set, `{job="x", level="error"}`: values in double
/// quotes (with Go escapes: `\"`, `\\`, `\n`, `\t`, `\xNN`, `\uNNNN`, ...), single quotes
/// or backticks (raw); an optional trailing comma.
///
/// # Errors
///
/// A message saying what was expected where, when the text is not such a label set.
pub fn parse_labels(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut parser = LabelParser {
        chars: text.char_indices().peekable(),
        text,
    };
    parser.label_set().map_err(|e| {
        format!(
            "stream labels {} are not a label set like {{job=\"x\"}}: {e}",
            entry::short(format_args!("'{text}'"))
        )
    })
}

struct LabelParser<'a> {
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    text: &'a str,
}

impl LabelParser<'_> {
    fn label_set(&mut self) -> Result<Vec<(String, String)>, String> {
        let mut labels = Vec::new();
        self.skip_spaces();
        self.expect('{')?;
        loop {
            self.skip_spaces();
            if self.eat('}') {
                break;
            }
            let name = self.name()?;
            self.skip_spaces();
            self.expect('=')?;
            self.skip_spaces();
            let value = self.value()?;
            labels.push((name, value));
            self.skip_spaces();
            if self.eat(',') {
                continue;
            }
            self.expect('}')?;
            break;
        }
        self.skip_spaces();
        match self.chars.next() {
            None => Ok(labels),
            Some((at, _)) => Err(format!("unexpected text after '}}' at byte {at}")),
        }
    }

    fn skip_spaces(&mut self) {
        while self.chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    }

    fn eat(&mut self, want: char) -> bool {
        self.chars.next_if(|(_, c)| *c == want).is_some()
    }

    fn expect(&mut self, want: char) -> Result<(), String> {
        match self.chars.next() {
            Some((_, c)) if c == want => Ok(()),
            Some((at, c)) => Err(format!("expected '{want}' at byte {at}, found '{c}'")),
            None => Err(format!("expected '{want}' at the end")),
        }
    }

    fn name(&mut self) -> Result<String, String> {
        let start = self.chars.peek().map_or(self.text.len(), |(at, _)| *at);
        let mut name = String::new();
        while let Some((_, c)) = self
            .chars
            .next_if(|(_, c)| c.is_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
        {
            name.push(c);
        }
        if name.is_empty() {
            return Err(format!("expected a label name at byte {start}"));
        }
        Ok(name)
    }

    fn value(&mut self) -> Result<String, String> {
        match self.chars.next() {
            Some((_, '`')) => self.raw_until('`'),
            Some((_, quote @ ('"' | '\''))) => self.quoted(quote),
            Some((at, c)) => Err(format!("expected a quoted value at byte {at}, found '{c}'")),
            None => Err("expected a quoted value at the end".into()),
        }
    }

    fn raw_until(&mut self, end: char) -> Result<String, String> {
        let mut value = String::new();
        for (_, c) in self.chars.by_ref() {
            if c == end {
                return Ok(value);
            }
            value.push(c);
        }
        Err("unterminated quoted value".into())
    }

    fn quoted(&mut self, quote: char) -> Result<String, String> {
        let mut value = String::new();
        while let Some((at, c)) = self.chars.next() {
            match c {
                c if c == quote => return Ok(value),
                '\\' => value.push(self.escape(at)?),
                c => value.push(c),
            }
        }
        Err("unterminated quoted value".into())
    }

    fn escape(&mut self, at: usize) -> Result<char, String> {
        let bad = || format!("invalid escape at byte {at}");
        let (_, c) = self.chars.next().ok_or_else(bad)?;
        let simple = match c {
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            'f' => Some('\x0c'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\x0b'),
            '\\' | '"' | '\'' | '`' => Some(c),
            _ => None,
        };
        if let Some(c) = simple {
            return Ok(c);
        }
        let (digits, radix) = match c {
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            '0'..='7' => (2, 8),
            _ => return Err(bad()),
        };
        let mut code = if radix == 8 {
            c.to_digit(8).ok_or_else(bad)?
        } else {
            0
        };
        for _ in 0..digits {
            let (_, d) = self.chars.next().ok_or_else(bad)?;
            code = code
                .checked_mul(radix)
                .and_then(|v| v.checked_add(d.to_digit(radix)?))
                .ok_or_else(bad)?;
        }
        char::from_u32(code).ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn label_sets_are_read_with_their_escapes() {
        assert_eq!(
            parse_labels(r#"{job="x", level="error"}"#),
            Ok(pairs(&[("job", "x"), ("level", "error")]))
        );
        assert_eq!(
            parse_labels(r#" { msg="say \"hi\"\n\\", tab='a\tb', raw=`c:\d`, } "#),
            Ok(pairs(&[
                ("msg", "say \"hi\"\n\\"),
                ("tab", "a\tb"),
                ("raw", "c:\\d")
            ]))
        );
        assert_eq!(
            parse_labels(r#"{a="\u00e9\x41\101"}"#),
            Ok(pairs(&[("a", "éAA")]))
        );
        assert_eq!(parse_labels("{}"), Ok(Vec::new()));
    }

    #[test]
    fn broken_label_sets_say_what_is_wrong() {
        for bad in [
            "",
            "job=\"x\"",
            "{job=x}",
            "{job=\"x}",
            "{=\"x\"}",
            "{job=\"x\" level=\"y\"}",
            "{job=\"x\"} extra",
            "{job=\"\\q\"}",
            "{job=\"\\u12\"}",
        ] {
            assert!(parse_labels(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nanosecond_strings_become_times() {
        let t = timestamp_of_json(&Value::String("1700000000123456789".into())).expect("valid");
        assert_eq!(t.timestamp_nanos_opt(), Some(1_700_000_000_123_456_789));
        assert!(timestamp_of_json(&Value::String("yesterday".into())).is_err());
        assert!(timestamp_of_json(&Value::String("99999999999999999999".into())).is_err());
        assert!(timestamp_of_json(&Value::Bool(true)).is_err());
    }
}
