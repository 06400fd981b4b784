//! Checking the parameters of a query string. Every parameter arrives as text (so a bad
//! one gets our message, not serde's); [`QueryCheck`] converts them one by one and
//! collects every problem, so one 400 names all the bad parameters at once.

use std::{fmt::Display, ops::RangeInclusive, str::FromStr};

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::{
    errors::{ApiError, FieldErrors},
    pagination, rfc3339,
};

/// The problems found so far in one query string; see the module docs.
#[derive(Default)]
pub struct QueryCheck {
    errors: FieldErrors,
}

/// An absent parameter and an empty one (`?since=`) mean the same: not given.
fn given(raw: Option<&str>) -> Option<&str> {
    raw.filter(|s| !s.is_empty())
}

impl QueryCheck {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `message` as the problem with `field`.
    pub fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors
            .insert(field.to_owned(), json!([message.into()]));
    }

    /// `raw` as an integer in `range`, `default` when not given.
    pub fn int<T>(
        &mut self,
        field: &str,
        raw: Option<&str>,
        range: RangeInclusive<T>,
        default: T,
    ) -> T
    where
        T: FromStr + PartialOrd + Display + Copy,
    {
        let Some(raw) = given(raw) else {
            return default;
        };
        match raw.parse::<T>() {
            Ok(n) if range.contains(&n) => n,
            _ => {
                self.fail(
                    field,
                    format!(
                        "Ensure this value is an integer from {} to {}.",
                        range.start(),
                        range.end()
                    ),
                );
                default
            }
        }
    }

    /// The page size `limit`, from 1 to [`pagination::MAX_LIMIT`].
    pub fn limit(&mut self, raw: Option<&str>) -> i64 {
        self.int(
            "limit",
            raw,
            1..=pagination::MAX_LIMIT,
            pagination::DEFAULT_LIMIT,
        )
    }

    /// The `cursor` of the previous page, read by `decode`.
    pub fn cursor<C>(
        &mut self,
        raw: Option<&str>,
        decode: impl FnOnce(&str) -> Option<C>,
    ) -> Option<C> {
        let decoded = decode(given(raw)?);
        if decoded.is_none() {
            self.fail("cursor", "Invalid cursor.");
        }
        decoded
    }

    /// `raw` if it is one of `allowed`; not given is `None`.
    pub fn choice(&mut self, field: &str, raw: Option<String>, allowed: &[&str]) -> Option<String> {
        let value = raw.filter(|s| !s.is_empty())?;
        if allowed.contains(&value.as_str()) {
            Some(value)
        } else {
            self.fail(
                field,
                format!("Select a valid choice. {value} is not one of the available choices."),
            );
            None
        }
    }

    /// An RFC 3339 time.
    pub fn time(&mut self, field: &str, raw: Option<&str>) -> Option<DateTime<Utc>> {
        let parsed = rfc3339::parse(given(raw)?);
        if parsed.is_none() {
            self.fail(field, "Enter a valid date/time (RFC 3339).");
        }
        parsed
    }

    /// A 400 naming every bad parameter, if there was one.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(check: QueryCheck) -> serde_json::Value {
        match check.finish() {
            Err(ApiError::Validation(errors)) => serde_json::Value::Object(errors),
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    #[test]
    fn ints_default_and_refuse_out_of_range() {
        let mut check = QueryCheck::new();
        assert_eq!(check.int("limit", None, 1..=200, 20), 20);
        assert_eq!(check.int("limit", Some(""), 1..=200, 20), 20);
        assert_eq!(check.int("limit", Some("200"), 1..=200, 20), 200);
        assert!(check.finish().is_ok());
        for bad in ["0", "201", "x", "-1", "1.5"] {
            let mut check = QueryCheck::new();
            assert_eq!(check.int("limit", Some(bad), 1..=200, 20), 20);
            assert_eq!(
                errors(check)["limit"],
                json!(["Ensure this value is an integer from 1 to 200."]),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_bad_parameter_is_named_once() {
        let mut check = QueryCheck::new();
        assert_eq!(check.limit(Some("1001")), pagination::DEFAULT_LIMIT);
        assert_eq!(check.cursor(Some("x"), pagination::decode_id), None);
        assert_eq!(check.choice("kind", Some("nope".into()), &["a", "b"]), None);
        assert_eq!(check.choice("kind2", Some(String::new()), &["a"]), None);
        assert_eq!(check.time("since", Some("yesterday")), None);
        assert_eq!(
            errors(check),
            json!({
                "limit": ["Ensure this value is an integer from 1 to 1000."],
                "cursor": ["Invalid cursor."],
                "kind": ["Select a valid choice. nope is not one of the available choices."],
                "since": ["Enter a valid date/time (RFC 3339)."],
            })
        );
    }
}
