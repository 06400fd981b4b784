//! Keyset pagination of the list endpoints: page sizes and the `next` cursors.
//!
//! A cursor is opaque to clients: they pass back the `next` of the previous page. Lists
//! ordered by id alone use the last id; the log list, ordered by time then id, uses both.

use chrono::{DateTime, Utc};

/// Page size when `limit` is absent.
pub const DEFAULT_LIMIT: i64 = 100;
/// Largest accepted `limit`.
pub const MAX_LIMIT: i64 = 1000;

/// The last id of the previous page; ids are positive.
pub fn decode_id(raw: &str) -> Option<i64> {
    raw.parse::<i64>().ok().filter(|id| *id > 0)
}

/// The cursor after an entry logged at `t` with `id`.
pub fn encode_time_id(t: DateTime<Utc>, id: i64) -> String {
    format!("{}_{}", t.timestamp_micros(), id)
}

/// The (time, id) of [`encode_time_id`].
pub fn decode_time_id(raw: &str) -> Option<(DateTime<Utc>, i64)> {
    let (micros, id) = raw.split_once('_')?;
    let t = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some((t, id.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let t = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap_or_default();
        assert_eq!(decode_time_id(&encode_time_id(t, 42)), Some((t, 42)));
        assert_eq!(decode_time_id("x_1"), None);
        assert_eq!(decode_time_id("17"), None);
        assert_eq!(decode_id("7"), Some(7));
        for bad in ["0", "-3", "x", ""] {
            assert_eq!(decode_id(bad), None, "{bad}");
        }
    }
}
