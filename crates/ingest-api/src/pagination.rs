//! Keyset pagination of the list endpoints: page sizes and the `next` cursors.
//!
//! A cursor is opaque to clients: they pass back the `next` of the previous page. Lists
//! ordered by id alone use the last id; the log list, ordered by time then id, uses both.

use chrono::{DateTime, Utc};

/// Page size when `limit` is absent.
pub const DEFAULT_LIMIT: i64 = 100;
/// Largest accepted `limit`.
pub const MAX_LIMIT: i64 = 1000;
/// Most bytes of the large fields (messages, templates, payloads) in one answer of a list
/// endpoint: `limit=1000` of 64 KiB messages would be 64 MB. A page stops before the row
/// that would pass it (the first row always fits) and, where the list has a cursor, its
/// `next` then points after the last row sent, so a client paging on gets the rest.
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// How many of `rows`, from the first, fit in `budget` bytes as `size` counts them: the
/// rows before the one that would pass the budget, and always at least one, so a page is
/// never empty while rows remain.
pub fn fitting<T>(rows: &[T], budget: usize, size: impl Fn(&T) -> usize) -> usize {
    let mut total = 0usize;
    for (i, row) in rows.iter().enumerate() {
        total = total.saturating_add(size(row));
        if total > budget && i > 0 {
            return i;
        }
    }
    rows.len()
}

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
    fn a_page_stops_before_the_row_that_passes_the_budget() {
        let len = |s: &&str| s.len();
        assert_eq!(fitting(&["aaaa", "bbbb", "cc"], 10, len), 3);
        assert_eq!(fitting(&["aaaa", "bbbb", "ccc"], 10, len), 2);
        assert_eq!(
            fitting(&["aaaaaaaaaaaa", "b"], 10, len),
            1,
            "the first row always fits"
        );
        assert_eq!(fitting::<&str>(&[], 10, len), 0);
    }

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
