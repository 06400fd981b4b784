//! Times as the API writes and reads them: RFC 3339 in UTC, `Z` suffix, as many fraction
//! digits as the value has.

use chrono::{DateTime, SecondsFormat, Utc};

/// `t` as every response field writes a time.
pub fn format(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A query parameter's time in any offset, as UTC; `None` when it is not RFC 3339.
pub fn parse(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw).ok().map(|t| t.to_utc())
}
