//! Reading `make eval`'s labelled JSONL files: one JSON object a line,
//! `{"timestamp", "severity", "message", "source"?, "label"}`, `label` `"normal"` or
//! `"anomaly"`. `timestamp` is an RFC 3339 string (or one of the common variants
//! [`parse_timestamp_ms`] lists) or a number since the Unix epoch, as a JSON number or a
//! string of digits: seconds (fractions allowed) below [`SECONDS_BELOW`], as logs that
//! carry Unix time mostly write it (HPC's and Thunderbird's samples do), milliseconds from
//! there on. A missing `severity` is INFO.

use std::path::Path;

use serde::Deserialize;

use super::ReplayError;
use crate::scorer::{Label, LogLine, Severity};

/// One labelled input line.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledRecord {
    pub line: LogLine,
    pub label: Label,
}

#[derive(Deserialize)]
struct RawRecord {
    timestamp: serde_json::Value,
    #[serde(default)]
    severity: Option<String>,
    message: String,
    #[serde(default)]
    source: Option<String>,
    label: String,
}

/// Parse JSONL text (blank lines skipped, CRLF line ends and a UTF-8 byte order mark, as
/// Windows tools write them, accepted) into records, in file order.
pub fn parse_jsonl(text: &str) -> Result<Vec<LabelledRecord>, ReplayError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let format = |reason: String| ReplayError::Format {
            line: line_no,
            reason,
        };
        let rec: RawRecord = serde_json::from_str(raw).map_err(|e| format(e.to_string()))?;
        let timestamp_ms = match &rec.timestamp {
            serde_json::Value::Number(n) => n
                .as_f64()
                .and_then(epoch_number_ms)
                .ok_or_else(|| format(format!("bad timestamp {n}")))?,
            serde_json::Value::String(s) => {
                parse_timestamp_ms(s).ok_or_else(|| format(format!("bad timestamp {s:?}")))?
            }
            other => return Err(format(format!("bad timestamp {other}"))),
        };
        let label = match rec.label.to_ascii_lowercase().as_str() {
            "normal" => Label::Normal,
            "anomaly" | "anomalous" => Label::Anomaly,
            other => {
                return Err(format(format!(
                    "label must be normal|anomaly, got {other:?}"
                )))
            }
        };
        out.push(LabelledRecord {
            line: LogLine {
                timestamp_ms,
                severity: rec
                    .severity
                    .as_deref()
                    .map_or(Severity::Info, Severity::parse),
                message: rec.message,
                source: rec.source,
            },
            label,
        });
    }
    Ok(out)
}

/// A numeric timestamp below this is Unix seconds, from it on Unix milliseconds: 10^11
/// seconds is the year 5138, 10^11 milliseconds March 1973, so neither reading of a real
/// log's time is lost.
pub const SECONDS_BELOW: f64 = 1e11;

/// A numeric `timestamp` (see [`SECONDS_BELOW`]) to Unix milliseconds; `None` if it is
/// not finite or out of range.
fn epoch_number_ms(n: f64) -> Option<i64> {
    let ms = if n.abs() < SECONDS_BELOW {
        n * 1000.0
    } else {
        n
    };
    #[allow(clippy::cast_possible_truncation)] // checked to be within i64's range just below
    (ms.is_finite() && ms.abs() < 9.0e18).then(|| ms.round() as i64)
}

/// Read and parse a JSONL file, then sort it by timestamp (stable).
pub fn read_jsonl(path: &Path) -> Result<Vec<LabelledRecord>, ReplayError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReplayError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let mut records = parse_jsonl(&text)?;
    records.sort_by_key(|r| r.line.timestamp_ms);
    Ok(records)
}

/// A `timestamp` string to Unix milliseconds: RFC 3339 and the spellings log files and
/// exports commonly use for it, or a number since the epoch written as a string (read as
/// a JSON number is: seconds below [`SECONDS_BELOW`], milliseconds from there on). `None`
/// for anything else.
///
/// Date and time: `YYYY-MM-DD` or `YYYY/MM/DD`, then `T`, a space, `-` or `_`, then
/// `HH:MM:SS` or `HH.MM.SS` (the IBM/DB2 form `2005-06-03-15.42.50.675872`), an optional
/// fraction after `.` or `,`, then an optional zone: `Z`, `UTC`, `GMT` or an offset
/// `±HH:MM` / `±HHMM`, with or without a space before it. No zone means UTC.
pub fn parse_timestamp_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return s.parse::<f64>().ok().and_then(epoch_number_ms);
    }
    parse_rfc3339_ms(s)
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.fff][Z|±HH:MM]` (no offset means UTC) to Unix milliseconds,
/// with the variants [`parse_timestamp_ms`] lists.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 19
        || !matches!(b[4], b'-' | b'/')
        || b[7] != b[4]
        || !matches!(b[10], b'T' | b't' | b' ' | b'-' | b'_')
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(range)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !matches!(b[13], b':' | b'.') || b[16] != b[13] {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix(['.', ',']) {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded: String = frac[..digits]
            .chars()
            .chain("000".chars())
            .take(3)
            .collect();
        millis = padded.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_min = match rest.trim_start() {
        "" | "Z" | "z" | "UTC" | "GMT" => 0,
        zone => {
            let sign = match zone.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
            if digits.len() != 4 || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            sign * (digits[..2].parse::<i64>().ok()? * 60 + digits[2..].parse::<i64>().ok()?)
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_min * 60;
    Some(secs * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_parses_and_sorts_by_timestamp() {
        let text = concat!(
            r#"{"timestamp":"2024-01-01T00:00:02Z","severity":"ERROR","message":"b","label":"anomaly"}"#,
            "\n\n",
            r#"{"timestamp":1704067201000,"severity":"info","message":"a","source":"x","label":"normal"}"#,
            "\n"
        );
        let mut recs = parse_jsonl(text).unwrap();
        recs.sort_by_key(|r| r.line.timestamp_ms);
        assert_eq!(recs[0].line.message, "a");
        assert_eq!(recs[0].line.timestamp_ms, 1_704_067_201_000);
        assert_eq!(recs[1].line.timestamp_ms, 1_704_067_202_000);
        assert_eq!(recs[1].line.severity, Severity::Error);
        assert_eq!(recs[1].label, Label::Anomaly);
        assert!(parse_jsonl(r#"{"timestamp":1,"message":"x","label":"maybe"}"#).is_err());
    }

    #[test]
    fn a_file_saved_by_a_windows_tool_parses_alike() {
        let unix = concat!(
            r#"{"timestamp":"2024-01-01T00:00:02Z","severity":"ERROR","message":"b","label":"anomaly"}"#,
            "\n",
            r#"{"timestamp":"2024-01-01T00:00:03Z","message":"a","label":"normal"}"#,
            "\n"
        );
        let windows = format!("\u{feff}{}", unix.replace('\n', "\r\n"));
        let (a, b) = (parse_jsonl(unix).unwrap(), parse_jsonl(&windows).unwrap());
        assert_eq!(a.len(), 2);
        assert_eq!(a, b);
    }

    #[test]
    fn numeric_timestamps_in_seconds_or_milliseconds() {
        let at = |t: &str| {
            let text = format!(r#"{{"timestamp":{t},"message":"m","label":"normal"}}"#);
            parse_jsonl(&text).map(|r| r[0].line.timestamp_ms)
        };
        // Unix seconds, as HPC's and Thunderbird's logs write them, with or without a fraction.
        assert_eq!(at("1131566461").unwrap(), 1_131_566_461_000);
        assert_eq!(at("1131566461.25").unwrap(), 1_131_566_461_250);
        // Milliseconds stay milliseconds.
        assert_eq!(at("1704067201000").unwrap(), 1_704_067_201_000);
        assert_eq!(at("1e300").map_err(|_| ()), Err(()));
    }

    #[test]
    fn rfc3339_timestamps() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2024-02-29T12:30:45.5+01:00"),
            Some(1_709_206_245_500)
        );
        assert_eq!(
            parse_rfc3339_ms("2024-02-29 11:30:45.500"),
            Some(1_709_206_245_500)
        );
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }

    #[test]
    fn the_common_spellings_of_a_timestamp_read_as_the_same_instant() {
        let instant = Some(1_709_206_245_500);
        for text in [
            "2024-02-29T11:30:45.500Z",
            "2024-02-29 11:30:45,500",
            "2024/02/29 11:30:45.5 UTC",
            "2024-02-29-11.30.45.500000",
            "2024-02-29_11:30:45.500 GMT",
            "2024-02-29T12:30:45.500 +0100",
            "2024-02-29T06:30:45.500-05:00",
            "1709206245.5",
            "1709206245500",
        ] {
            assert_eq!(parse_timestamp_ms(text), instant, "{text}");
        }
        for bad in [
            "2024-02-29T11:30.45",
            "2024/02-29 11:30:45",
            "2024-02-29T11:30:45 CEST",
            "1.2.3",
            "",
        ] {
            assert_eq!(parse_timestamp_ms(bad), None, "{bad}");
        }
        let recs = parse_jsonl(
            r#"{"timestamp":"1709206245","message":"a","label":"normal"}
{"timestamp":"2024-02-29-11.30.46.000000","severity":"FATAL","message":"b","label":"anomaly"}"#,
        )
        .unwrap();
        assert_eq!(recs[1].line.timestamp_ms - recs[0].line.timestamp_ms, 1_000);
    }
}
