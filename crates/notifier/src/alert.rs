//! What an alert says, independent of the channel: built once from the task and the rows
//! it points at, stored as the `payload` of its `alerts` rows, and rendered from there (so
//! a redelivered task renders the same message without reading the entries again).

use chrono::{DateTime, Utc};
use db::{alerts::PatternForAlert, models::LogEntry};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

/// `alerts.kind` of a critical anomaly.
pub const KIND_CRITICAL: &str = "critical_anomaly";
/// `alerts.kind` of a detected pattern.
pub const KIND_PATTERN: &str = "pattern";

/// Sample lines shown with a pattern alert.
const SAMPLE_LINES: usize = 5;

/// One line of a log, as an alert shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub id: i64,
    pub timestamp: DateTime<Utc>,
    pub severity: String,
    pub message: String,
    pub source: Option<String>,
}

impl From<&LogEntry> for Line {
    fn from(e: &LogEntry) -> Self {
        Self {
            id: e.id,
            timestamp: e.logged_at,
            severity: e.severity.clone(),
            message: e.message.clone(),
            source: e.source.clone(),
        }
    }
}

/// Everything a message says about one alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertItem {
    /// [`KIND_CRITICAL`] or [`KIND_PATTERN`].
    pub kind: String,
    /// Same key + channel within the cooldown: suppressed.
    pub dedup_key: String,
    /// One line, for subjects and headers.
    pub title: String,
    /// `ERROR`/`CRITICAL` for anomalies; the detection's severity for patterns.
    pub severity: String,
    /// Why it is an alert, in words.
    pub summary: String,
    #[serde(default)]
    pub anomaly_score: Option<f64>,
    #[serde(default)]
    pub source: Option<String>,
    /// The anomalous line, or sample lines of the pattern.
    #[serde(default)]
    pub lines: Vec<Line>,
    #[serde(default)]
    pub log_entry_id: Option<i64>,
    /// The template of an anomalous line, when the scorer assigned one.
    #[serde(default)]
    pub template_id: Option<i64>,
    #[serde(default)]
    pub pattern_detection_id: Option<i64>,
    /// Pattern kind (`anomaly_cluster`, `error_spike`, ...).
    #[serde(default)]
    pub pattern_kind: Option<String>,
    #[serde(default)]
    pub window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// The numbers that justify a pattern.
    #[serde(default)]
    pub details: Option<serde_json::Value>,
    /// Every entry involved (patterns can involve many).
    #[serde(default)]
    pub log_entry_ids: Vec<i64>,
    /// Where to look: the entry or the patterns list in the API.
    pub link: String,
}

fn short(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// `error_spike` -> `Error spike`.
pub fn humanize(kind: &str) -> String {
    let words = kind.replace(['_', '-'], " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A link under the dashboard's base URL (which ends with `/`).
fn link(base: &Url, path: &str) -> String {
    base.join(path)
        .map_or_else(|_| format!("{base}{path}"), |u| u.to_string())
}

/// A critical anomaly on one entry. `entry` is `None` when the entry is gone (retention);
/// the alert then says what the task said.
pub fn critical(
    log_entry_id: i64,
    anomaly_score: f64,
    summary: &str,
    entry: Option<&LogEntry>,
    dashboard: &Url,
) -> AlertItem {
    let dedup_key = match entry {
        Some(LogEntry {
            template_id: Some(t),
            ..
        }) => format!("{KIND_CRITICAL}:template:{t}"),
        Some(e) => format!(
            "{KIND_CRITICAL}:message:{}",
            &hex::encode(Sha256::digest(e.message.as_bytes()))[..16]
        ),
        None => format!("{KIND_CRITICAL}:entry:{log_entry_id}"),
    };
    let severity = entry.map_or_else(|| "ERROR".to_owned(), |e| e.severity.clone());
    let source = entry.and_then(|e| e.source.clone());
    let title = match entry {
        Some(e) => format!(
            "{severity} anomaly{}: {}",
            source
                .as_deref()
                .map(|s| format!(" on {s}"))
                .unwrap_or_default(),
            short(&e.message, 100)
        ),
        None => format!("{severity} anomaly in log entry {log_entry_id}"),
    };
    AlertItem {
        kind: KIND_CRITICAL.into(),
        dedup_key,
        title,
        severity,
        summary: summary.to_owned(),
        anomaly_score: Some(anomaly_score),
        source,
        lines: entry.map(Line::from).into_iter().collect(),
        log_entry_id: Some(log_entry_id),
        template_id: entry.and_then(|e| e.template_id),
        pattern_detection_id: None,
        pattern_kind: None,
        window: None,
        details: None,
        log_entry_ids: vec![log_entry_id],
        link: link(dashboard, &format!("api/logs/{log_entry_id}/")),
    }
}

/// A detected pattern; `samples` are some of its entries.
pub fn pattern(p: &PatternForAlert, samples: &[LogEntry], dashboard: &Url) -> AlertItem {
    let source = (!p.source.is_empty()).then(|| p.source.clone());
    let on = source
        .as_deref()
        .map(|s| format!(" on {s}"))
        .unwrap_or_default();
    let minutes = (p.window_end - p.window_start).num_minutes();
    let summary = p
        .details
        .get("summary")
        .and_then(|s| s.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            format!(
                "{}{on}: {} log entries involved between {} and {} ({minutes} min).",
                humanize(&p.kind),
                p.log_entry_ids.len(),
                p.window_start.format("%Y-%m-%d %H:%M:%SZ"),
                p.window_end.format("%Y-%m-%d %H:%M:%SZ"),
            )
        });
    let mut lines: Vec<Line> = samples.iter().map(Line::from).collect();
    lines.sort_by_key(|l| (l.timestamp, l.id));
    lines.truncate(SAMPLE_LINES);
    AlertItem {
        kind: KIND_PATTERN.into(),
        dedup_key: format!("{KIND_PATTERN}:{}:{}", p.kind, p.source),
        title: format!("{} pattern: {}{on}", p.severity, humanize(&p.kind)),
        severity: p.severity.clone(),
        summary,
        anomaly_score: None,
        source,
        lines,
        log_entry_id: None,
        template_id: None,
        pattern_detection_id: Some(p.id),
        pattern_kind: Some(p.kind.clone()),
        window: Some((p.window_start, p.window_end)),
        details: Some(p.details.clone()),
        log_entry_ids: p.log_entry_ids.clone(),
        link: link(dashboard, "api/patterns/"),
    }
}

/// The entry ids to load for a pattern's sample lines.
pub fn sample_ids(p: &PatternForAlert) -> impl Iterator<Item = i64> + '_ {
    p.log_entry_ids.iter().copied().take(SAMPLE_LINES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(template_id: Option<i64>, message: &str) -> LogEntry {
        LogEntry {
            id: 7,
            received_at: Utc::now(),
            logged_at: Utc::now(),
            severity: "CRITICAL".into(),
            message: message.into(),
            source: Some("db-1".into()),
            analysis_task_id: None,
            anomaly_score: Some(0.9),
            is_anomaly: Some(true),
            summary: None,
            template_id,
            analyzed_at: None,
        }
    }

    #[test]
    fn the_dedup_key_is_the_template_or_the_message() {
        let base = Url::parse("http://x/").unwrap();
        let a = critical(
            7,
            0.9,
            "s",
            Some(&entry(Some(3), "disk full on /dev/sda1")),
            &base,
        );
        assert_eq!(a.dedup_key, "critical_anomaly:template:3");
        assert_eq!(a.link, "http://x/api/logs/7/");
        assert_eq!(a.title, "CRITICAL anomaly on db-1: disk full on /dev/sda1");
        let b = critical(7, 0.9, "s", Some(&entry(None, "x")), &base);
        let c = critical(8, 0.9, "s", Some(&entry(None, "x")), &base);
        assert_eq!(b.dedup_key, c.dedup_key);
        let gone = critical(9, 0.9, "s", None, &base);
        assert_eq!(gone.dedup_key, "critical_anomaly:entry:9");
    }

    #[test]
    fn payload_round_trips() {
        let base = Url::parse("http://x/").unwrap();
        let a = critical(7, 0.9, "s", Some(&entry(Some(3), "m")), &base);
        let back: AlertItem = serde_json::from_value(serde_json::to_value(&a).unwrap()).unwrap();
        assert_eq!(a, back);
        assert_eq!(humanize("error_spike"), "Error spike");
    }
}
