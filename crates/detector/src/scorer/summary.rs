//! The plain-words explanation of a score, for operators.

use super::verdict::{Prior, Sighting};
use super::LogLine;

/// The summary of one line's score: whether its template is new (and how unlike known
/// ones) or how often it was seen, its level and meaning, the rule that decided (`note`),
/// and the warm-up if it is on. `closest` is the nearest known template's text and
/// similarity.
pub(super) fn explain(
    line: &LogLine,
    first_line_ms: i64,
    sighting: &Sighting,
    prior: &Prior,
    closest: Option<&(String, f32)>,
    note: String,
    warming_up: bool,
) -> String {
    let seen_before = sighting.seen_before;
    let mut parts = Vec::new();
    if seen_before == 0 {
        let span = human_duration(line.timestamp_ms.saturating_sub(first_line_ms));
        if closest.is_none() {
            parts.push("First message pattern seen".to_string());
        } else if prior.novelty >= 0.5 {
            parts.push(format!(
                "New message pattern, unlike anything seen in {span}"
            ));
        } else {
            parts.push("New message pattern, close to known ones".to_string());
        }
    } else {
        let since = human_duration(
            line.timestamp_ms
                .saturating_sub(sighting.previous_first_seen),
        );
        parts.push(format!(
            "Known message pattern, seen {} time{} in {since}",
            seen_before,
            if seen_before == 1 { "" } else { "s" }
        ));
    }
    if let Some((text, sim)) = closest {
        if seen_before == 0 {
            parts.push(format!("closest known: '{text}' (similarity {sim:.2})"));
        }
    }
    // Said when it counted for at least half its weight.
    if prior.settled > 0.0 && sighting.settled >= 0.5 {
        parts.push(
            if seen_before == 0 {
                "new after the stream had settled (few new patterns among its latest lines)"
            } else {
                "first seen after the stream had settled"
            }
            .to_string(),
        );
    }
    parts.push(format!("severity {}", line.severity.as_str()));
    if prior.meaning > prior.level && prior.meaning >= 0.4 {
        parts.push(if prior.levelled {
            "reads like a failure (counted for less: this source marks its trouble by level)"
                .to_string()
        } else {
            "reads like a failure".to_string()
        });
    }
    parts.push(note);
    if warming_up {
        parts.push(
            "still learning what normal looks like (warm-up): only the level and meaning count"
                .into(),
        );
    }
    parts.join("; ")
}

/// "3 days", "5 minutes", "12 seconds".
pub(super) fn human_duration(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    let (n, unit) = if secs >= 86_400 {
        (secs / 86_400, "day")
    } else if secs >= 3_600 {
        (secs / 3_600, "hour")
    } else if secs >= 60 {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}
