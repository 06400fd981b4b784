//! One message for a group of alerts: an email (subject, plain text, HTML) and a webhook
//! body that Slack's incoming webhooks accept (`text` + `blocks`) and that generic
//! receivers can read (`logcanary`: the alerts as data).
//!
//! Alerts of the group that share a dedup key (a burst of the same error) are shown once,
//! with their count and every entry id.
//!
//! The email parts come from the templates in `templates/` (compiled in with
//! `include_str!`, rendered by minijinja): `alert.html` with every value HTML-escaped,
//! `alert.txt` as written. The subject and the webhook body are built here.

use std::{fmt::Write, sync::LazyLock};

use minijinja::{
    syntax::SyntaxConfig, value::Serde, AutoEscape, Environment, Error, Output, State,
    UndefinedBehavior,
};
use serde::Serialize;
use serde_json::{json, Value};

use crate::alert::{AlertItem, KIND_CRITICAL};

/// Slack's limits: header text 150 characters, section text 3000, 50 blocks.
const SLACK_HEADER_MAX: usize = 150;
const SLACK_SECTION_MAX: usize = 2900;
const SLACK_ITEMS_MAX: usize = 20;

/// An alert of the message with its repeats in the group.
#[derive(Debug)]
struct Shown<'a> {
    item: &'a AlertItem,
    count: usize,
    entry_ids: Vec<i64>,
}

/// A rendered group message.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
    pub webhook: Value,
    /// The alerts themselves, in arrival order, for channels that send them as data
    /// (Alertmanager, PagerDuty).
    pub alerts: Vec<AlertItem>,
}

fn collapse(items: &[AlertItem]) -> Vec<Shown<'_>> {
    let mut shown: Vec<Shown<'_>> = Vec::new();
    for item in items {
        if let Some(s) = shown
            .iter_mut()
            .find(|s| s.item.dedup_key == item.dedup_key)
        {
            s.count += 1;
            s.entry_ids.extend(&item.log_entry_ids);
        } else {
            shown.push(Shown {
                item,
                count: 1,
                entry_ids: item.log_entry_ids.clone(),
            });
        }
    }
    for s in &mut shown {
        s.entry_ids.sort_unstable();
        s.entry_ids.dedup();
    }
    shown
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes the three characters Slack's mrkdwn reserves.
fn escape_slack(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn ids_text(ids: &[i64]) -> String {
    const MAX: usize = 20;
    let mut s = ids
        .iter()
        .take(MAX)
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > MAX {
        let _ = write!(s, " and {} more", ids.len() - MAX);
    }
    s
}

fn subject(shown: &[Shown<'_>], total: usize) -> String {
    let head = match shown {
        [one] if one.count == 1 => one.item.title.clone(),
        [one] => format!("{} (×{})", one.item.title, one.count),
        _ => {
            let critical = shown
                .iter()
                .filter(|s| s.item.kind == KIND_CRITICAL)
                .map(|s| s.count)
                .sum::<usize>();
            let patterns = total - critical;
            let mut parts = Vec::new();
            if critical > 0 {
                parts.push(format!(
                    "{critical} critical anomal{}",
                    if critical == 1 { "y" } else { "ies" }
                ));
            }
            if patterns > 0 {
                parts.push(format!(
                    "{patterns} pattern{}",
                    if patterns == 1 { "" } else { "s" }
                ));
            }
            format!(
                "{total} alerts ({}): {}",
                parts.join(", "),
                shown.first().map(|s| s.item.title.as_str()).unwrap_or("")
            )
        }
    };
    cut(&format!("[logcanary] {head}"), 200)
}

fn facts(item: &AlertItem) -> Vec<(&'static str, String)> {
    let mut f = vec![("Severity", item.severity.clone())];
    if let Some(score) = item.anomaly_score {
        f.push(("Anomaly score", format!("{score:.3}")));
    }
    if let Some(source) = &item.source {
        f.push(("Source", source.clone()));
    }
    if let Some(kind) = &item.pattern_kind {
        f.push(("Pattern", kind.clone()));
    }
    if let Some((start, end)) = item.window {
        f.push((
            "Window",
            format!(
                "{} to {}",
                start.format("%Y-%m-%d %H:%M:%SZ"),
                end.format("%Y-%m-%d %H:%M:%SZ")
            ),
        ));
    }
    f
}

/// The plain-text part; `.txt`: not escaped.
const TEXT: &str = "alert.txt";
/// The HTML part; `.html`: every value is escaped by the engine.
const HTML: &str = "alert.html";

/// The compiled-in templates, parsed once.
static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // Block tags on lines of their own leave no trace, so the text part reads as written.
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .expect("the template syntax settings are valid"),
    );
    // A misspelt field is an error in the tests, not an empty spot in an email.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_formatter(format_value);
    env.add_template(TEXT, include_str!("../templates/alert.txt"))
        .expect("templates/alert.txt parses");
    env.add_template(HTML, include_str!("../templates/alert.html"))
        .expect("templates/alert.html parses");
    env
});

/// The engine's own formatter, except that HTML is escaped with [`escape_html`]: minijinja
/// also escapes `/`, which would turn every link into `http:&#x2f;&#x2f;..`.
fn format_value(
    out: &mut Output<'_>,
    state: &mut State<'_, '_>,
    value: &minijinja::Value,
) -> Result<(), Error> {
    if *state.auto_escape() == AutoEscape::Html && !value.is_safe() {
        out.write_str(&escape_html(&value.to_string()))?;
        Ok(())
    } else {
        minijinja::escape_formatter(out, state, value)
    }
}

/// What the templates see: the message.
#[derive(Serialize)]
struct MessageView<'a> {
    /// Alerts in the group, repeats included.
    count: usize,
    subject: &'a str,
    dashboard: &'a str,
    alerts: Vec<AlertView<'a>>,
}

/// What the templates see: one shown alert.
#[derive(Serialize)]
struct AlertView<'a> {
    title: &'a str,
    /// Times it occurs in the group.
    count: usize,
    summary: &'a str,
    facts: Vec<FactView>,
    /// `None`: no entry is involved.
    entry_ids: Option<String>,
    lines: Vec<LineView<'a>>,
    link: &'a str,
}

#[derive(Serialize)]
struct FactView {
    name: &'static str,
    value: String,
}

#[derive(Serialize)]
struct LineView<'a> {
    id: i64,
    timestamp: String,
    severity: &'a str,
    source: Option<&'a str>,
    message: &'a str,
}

/// A template failed to render: a bug in a template, never in the alert, so another
/// attempt would fail the same way.
#[derive(Debug, thiserror::Error)]
#[error("rendering {template} failed: {reason}")]
pub struct RenderError {
    template: &'static str,
    reason: String,
}

impl RenderError {
    /// Always `false`: the same alerts render the same way.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

fn render_template(name: &'static str, view: &MessageView<'_>) -> Result<String, RenderError> {
    let error = |e: Error| RenderError {
        template: name,
        reason: format!("{e:#}"),
    };
    TEMPLATES
        .get_template(name)
        .map_err(error)?
        .render(minijinja::Value::from(Serde(view)))
        .map_err(error)
}

/// Renders `items` (in arrival order) as one message; `dashboard` is the dashboard's URL.
///
/// # Errors
///
/// A template failed ([`RenderError`]): permanent.
pub fn render(items: &[AlertItem], dashboard: &str) -> Result<Rendered, RenderError> {
    let shown = collapse(items);
    let subject = subject(&shown, items.len());
    let view = MessageView {
        count: items.len(),
        subject: &subject,
        dashboard,
        alerts: shown
            .iter()
            .map(|s| AlertView {
                title: &s.item.title,
                count: s.count,
                summary: &s.item.summary,
                facts: facts(s.item)
                    .into_iter()
                    .map(|(name, value)| FactView { name, value })
                    .collect(),
                entry_ids: (!s.entry_ids.is_empty()).then(|| ids_text(&s.entry_ids)),
                lines: s
                    .item
                    .lines
                    .iter()
                    .map(|l| LineView {
                        id: l.id,
                        timestamp: l.timestamp.format("%Y-%m-%d %H:%M:%SZ").to_string(),
                        severity: &l.severity,
                        source: l.source.as_deref(),
                        message: &l.message,
                    })
                    .collect(),
                link: &s.item.link,
            })
            .collect(),
    };
    let text = render_template(TEXT, &view)?;
    let html = render_template(HTML, &view)?;
    Ok(Rendered {
        webhook: webhook(&subject, &shown, items, dashboard),
        subject,
        text,
        html,
        alerts: items.to_vec(),
    })
}

fn webhook(subject: &str, shown: &[Shown<'_>], items: &[AlertItem], dashboard: &str) -> Value {
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": cut(subject.trim_start_matches("[logcanary] "), SLACK_HEADER_MAX)},
    })];
    for s in shown.iter().take(SLACK_ITEMS_MAX) {
        let item = s.item;
        let mut body = format!(
            "*<{}|{}>*{}\n{}",
            item.link,
            escape_slack(&item.title),
            if s.count > 1 {
                format!(" ×{}", s.count)
            } else {
                String::new()
            },
            escape_slack(&item.summary)
        );
        for (name, value) in facts(item) {
            let _ = write!(body, "\n*{name}:* {}", escape_slack(&value));
        }
        if let Some(l) = item.lines.first() {
            let _ = write!(body, "\n```{}```", escape_slack(&cut(&l.message, 500)));
        }
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": cut(&body, SLACK_SECTION_MAX)},
        }));
    }
    if shown.len() > SLACK_ITEMS_MAX {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("…and {} more", shown.len() - SLACK_ITEMS_MAX)},
        }));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": format!("<{dashboard}|Open the logcanary dashboard>")}],
    }));
    json!({
        "text": subject,
        "blocks": blocks,
        "logcanary": {
            "version": 1,
            "count": items.len(),
            "dashboard_url": dashboard,
            "alerts": shown.iter().map(|s| {
                let mut v = serde_json::to_value(s.item).unwrap_or(Value::Null);
                if let Some(map) = v.as_object_mut() {
                    map.insert("count".into(), s.count.into());
                    map.insert("log_entry_ids".into(), json!(s.entry_ids));
                }
                v
            }).collect::<Vec<_>>(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Line;
    use chrono::Utc;

    fn item(key: &str, id: i64, message: &str) -> AlertItem {
        AlertItem {
            kind: KIND_CRITICAL.into(),
            dedup_key: key.into(),
            title: format!("ERROR anomaly on api: {message}"),
            severity: "ERROR".into(),
            summary: "Rare template, far from known lines.".into(),
            anomaly_score: Some(0.91),
            source: Some("api".into()),
            lines: vec![Line {
                id,
                timestamp: Utc::now(),
                severity: "ERROR".into(),
                message: message.into(),
                source: Some("api".into()),
            }],
            log_entry_id: Some(id),
            template_id: None,
            pattern_detection_id: None,
            pattern_kind: None,
            window: None,
            details: None,
            log_entry_ids: vec![id],
            link: format!("http://x/api/logs/{id}/"),
        }
    }

    #[test]
    fn a_burst_of_one_error_is_one_item_with_its_count() {
        let items = vec![
            item("k1", 1, "db down <primary>"),
            item("k1", 2, "db down <primary>"),
            item("k2", 3, "disk full"),
        ];
        let r = render(&items, "http://x/").expect("the templates render");
        assert!(
            r.subject
                .starts_with("[logcanary] 3 alerts (3 critical anomalies)"),
            "{}",
            r.subject
        );
        assert!(r.text.contains("(×2)") && r.text.contains("Log entries: 1, 2"));
        assert!(r.text.contains("Anomaly score: 0.910"));
        assert!(r.html.contains("db down &lt;primary&gt;"));
        assert!(!r.html.contains("<primary>"));
        assert_eq!(r.webhook["logcanary"]["alerts"][0]["count"], 2);
        assert_eq!(r.webhook["blocks"][0]["type"], "header");
        assert!(r.webhook["text"].as_str().unwrap().contains("3 alerts"));
    }

    #[test]
    fn html_escapes_what_an_alert_says_and_text_keeps_it() {
        let message = "<script>alert('x')</script> & \"q\"";
        let r =
            render(&[item("k", 6, message)], "http://x/?a=1&b=2").expect("the templates render");
        assert!(!r.html.contains("<script>"), "{}", r.html);
        assert!(
            r.html
                .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"),
            "{}",
            r.html
        );
        // Links stay readable: `/` is not escaped.
        assert!(r
            .html
            .contains(r#"<a href="http://x/api/logs/6/">http://x/api/logs/6/</a>"#));
        assert!(r.html.contains(r#"<a href="http://x/?a=1&amp;b=2">"#));
        assert!(r.text.contains(message), "{}", r.text);
        assert!(
            r.text.ends_with("Dashboard: http://x/?a=1&b=2\n"),
            "{}",
            r.text
        );
    }

    #[test]
    fn a_single_alert_is_its_own_subject() {
        let r = render(&[item("k", 5, "Database connection failed")], "http://x/")
            .expect("the templates render");
        assert_eq!(
            r.subject,
            "[logcanary] ERROR anomaly on api: Database connection failed"
        );
        assert!(r.text.contains("http://x/api/logs/5/"));
        assert!(r.text.contains("Dashboard: http://x/"));
    }
}
