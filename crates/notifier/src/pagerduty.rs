//! PagerDuty Events API v2 as a channel: a `trigger` event per dedup key of a group, and a
//! `resolve` with the same `dedup_key` when the incident ends. PagerDuty itself drops a
//! second trigger of an open `dedup_key`, so re-sending one after a failed attempt is
//! harmless; it needs no re-posts while the incident lasts.
//!
//! One event per request (the API takes no batches); PagerDuty answers `202 Accepted`,
//! `400` to an invalid event (permanent), `429` when throttled (retried).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use url::Url;

use crate::{
    alert::{AlertItem, KIND_PATTERN},
    alertmanager::{first_per_key, template_id},
    deliver::{self, Channel, DeliveryError, IncidentUpdate, Tracking},
    render::Rendered,
};

/// The Events API v2 endpoint.
pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// PagerDuty's limits: `dedup_key` 255 characters, `payload.summary` 1024.
const DEDUP_KEY_MAX: usize = 255;
const SUMMARY_MAX: usize = 1024;
/// Entry ids listed in `custom_details` (a pattern can involve thousands).
const ENTRY_IDS_MAX: usize = 50;

/// The incident's `dedup_key`: the notifier's own (`<kind>:template:<id>`,
/// `pattern:<pattern kind>:<source>`, ...), or its kind and a hash when it is too long.
pub fn dedup_key(item: &AlertItem) -> String {
    if item.dedup_key.chars().count() <= DEDUP_KEY_MAX {
        item.dedup_key.clone()
    } else {
        format!(
            "{}:sha256:{}",
            item.kind,
            hex::encode(Sha256::digest(item.dedup_key.as_bytes()))
        )
    }
}

/// `critical`, `error`, `warning` or `info`, from the line's or pattern's severity.
pub fn severity(item: &AlertItem) -> &'static str {
    match item.severity.to_ascii_uppercase().as_str() {
        "CRITICAL" | "FATAL" => "critical",
        "ERROR" => "error",
        "WARNING" | "WARN" => "warning",
        _ => "info",
    }
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(max - 1).collect();
        s.push('…');
        s
    }
}

/// When the alert happened: its line's time, the pattern window's end, else `now`.
fn happened(item: &AlertItem, now: DateTime<Utc>) -> DateTime<Utc> {
    item.lines
        .first()
        .filter(|_| item.kind != KIND_PATTERN)
        .map(|l| l.timestamp)
        .or(item.window.map(|(_, end)| end))
        .unwrap_or(now)
}

/// A `trigger` event for `item`.
pub fn trigger(routing_key: &str, item: &AlertItem, now: DateTime<Utc>) -> Value {
    let component = match (template_id(item), &item.pattern_kind) {
        (Some(t), _) => format!("template:{t}"),
        (None, Some(p)) => p.clone(),
        (None, None) => item.kind.clone(),
    };
    let ids: Vec<i64> = item
        .log_entry_ids
        .iter()
        .copied()
        .take(ENTRY_IDS_MAX)
        .collect();
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(item),
        "client": "logcanary",
        "client_url": item.link,
        "payload": {
            "summary": cut(&item.title, SUMMARY_MAX),
            "source": item.source.as_deref().filter(|s| !s.trim().is_empty()).unwrap_or("logcanary"),
            "severity": severity(item),
            "timestamp": happened(item, now).to_rfc3339_opts(SecondsFormat::Millis, true),
            "component": component,
            "group": item.kind,
            "class": item.pattern_kind.as_deref().unwrap_or(&item.kind),
            "custom_details": {
                "summary": item.summary,
                "severity": item.severity,
                "anomaly_score": item.anomaly_score,
                "template_id": template_id(item),
                "pattern_kind": item.pattern_kind,
                "window": item.window,
                "details": item.details,
                "log_entry_ids": ids,
                "log_entries": item.log_entry_ids.len(),
                "lines": item.lines.iter().map(|l| format!("{} {} {}", l.timestamp.to_rfc3339_opts(SecondsFormat::Secs, true), l.severity, l.message)).collect::<Vec<_>>(),
            },
        },
        "links": [{"href": item.link, "text": "Open in logcanary"}],
    })
}

/// The `resolve` event of `item`'s incident.
pub fn resolve(routing_key: &str, item: &AlertItem) -> Value {
    json!({
        "routing_key": routing_key,
        "event_action": "resolve",
        "dedup_key": dedup_key(item),
    })
}

/// One PagerDuty service (its integration's routing key).
pub struct PagerDuty {
    client: reqwest::Client,
    url: Url,
    routing_key: String,
    name: String,
}

impl PagerDuty {
    /// # Errors
    ///
    /// The HTTP client cannot be built (TLS roots).
    pub fn new(
        url: Url,
        routing_key: String,
        timeout: std::time::Duration,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            name: deliver::channel_name("pagerduty", &url, &[url.as_str(), &routing_key]),
            client: deliver::http_client(timeout)?,
            url,
            routing_key,
        })
    }

    async fn post(&self, events: &[Value], delivery_id: &str) -> Result<(), DeliveryError> {
        for event in events {
            let body = serde_json::to_vec(event).map_err(DeliveryError::WebhookEncode)?;
            let request = self
                .client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("X-Logcanary-Delivery", delivery_id)
                .body(body);
            deliver::send_http(request).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Channel for PagerDuty {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "pagerduty"
    }

    async fn send(&self, message: &Rendered, delivery_id: &str) -> Result<(), DeliveryError> {
        let now = Utc::now();
        let events: Vec<Value> = first_per_key(&message.alerts)
            .into_iter()
            .map(|item| trigger(&self.routing_key, item, now))
            .collect();
        self.post(&events, delivery_id).await
    }

    fn tracking(&self) -> Option<Tracking> {
        Some(Tracking { repost_every: None })
    }

    async fn update(
        &self,
        incidents: &[IncidentUpdate],
        delivery_id: &str,
    ) -> Result<(), DeliveryError> {
        let now = Utc::now();
        let events: Vec<Value> = incidents
            .iter()
            .map(|i| match i.ended_at {
                Some(_) => resolve(&self.routing_key, &i.alert),
                None => trigger(&self.routing_key, &i.alert, now),
            })
            .collect();
        self.post(&events, delivery_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::critical;

    #[test]
    fn events_follow_the_documented_limits() {
        let base = Url::parse("http://canary/").unwrap();
        let mut item = critical(7, 0.91, "Rare.", None, &base);
        item.title = "x".repeat(3000);
        let e = trigger("k", &item, Utc::now());
        assert_eq!(
            e["payload"]["summary"].as_str().unwrap().chars().count(),
            1024
        );
        assert_eq!(e["payload"]["severity"], "error");
        assert_eq!(e["payload"]["source"], "logcanary");
        assert_eq!(e["dedup_key"], "critical_anomaly:entry:7");
        assert_eq!(e["links"][0]["href"], "http://canary/api/logs/7/");
        item.dedup_key = "pattern:error_spike:".to_owned() + &"s".repeat(300);
        item.kind = KIND_PATTERN.into();
        let key = dedup_key(&item);
        assert!(
            key.len() <= 255 && key.starts_with("pattern:sha256:"),
            "{key}"
        );
        assert_eq!(resolve("k", &item)["dedup_key"], key.as_str());
        item.severity = "CRITICAL".into();
        assert_eq!(severity(&item), "critical");
        item.severity = "WARNING".into();
        assert_eq!(severity(&item), "warning");
    }
}
