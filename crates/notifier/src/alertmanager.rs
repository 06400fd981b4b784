//! Prometheus Alertmanager as a channel: alerts are posted to `<base>/api/v2/alerts`, one
//! Alertmanager alert per dedup key of a group, and Alertmanager does the routing,
//! grouping, silencing and inhibition from there.
//!
//! Alertmanager identifies an alert by its labels, and counts one that is not posted
//! again within its `resolve_timeout` (5 min by default) as resolved. So the labels are
//! built from what the incident is (never from a count or a time), the incident sweep
//! re-posts firing incidents every `LOGCANARY_ALERTMANAGER_REPOST_SECS`, and the end goes
//! out as the same labels with `endsAt`.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use url::Url;

use crate::{
    alert::{AlertItem, KIND_CRITICAL, KIND_PATTERN},
    deliver::{self, Channel, DeliveryError, IncidentUpdate, Tracking},
    render::Rendered,
};

/// The path under the base URL that takes alerts.
pub const ALERTS_PATH: &str = "api/v2/alerts";

/// One alert of the `POST /api/v2/alerts` body (`postableAlert`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    pub labels: BTreeMap<&'static str, String>,
    pub annotations: BTreeMap<&'static str, String>,
    pub starts_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

/// `error_spike` -> `ErrorSpike`.
fn camel(kind: &str) -> String {
    kind.split(['_', '-', ' '])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_uppercase().chain(chars).collect::<String>()
            })
        })
        .collect()
}

/// The `alertname`: `LogcanaryCriticalAnomaly`, or `LogcanaryPattern<Kind>`
/// (`LogcanaryPatternErrorSpike`, `LogcanaryPatternAnomalyCluster`, ...).
pub fn alert_name(item: &AlertItem) -> String {
    match (item.kind.as_str(), item.pattern_kind.as_deref()) {
        (KIND_CRITICAL, _) => "LogcanaryCriticalAnomaly".to_owned(),
        (KIND_PATTERN, Some(p)) => format!("LogcanaryPattern{}", camel(p)),
        (other, _) => format!("Logcanary{}", camel(other)),
    }
}

/// `critical` for CRITICAL lines and critical patterns, `warning` for the rest.
pub fn severity(item: &AlertItem) -> &'static str {
    if item.severity.eq_ignore_ascii_case("CRITICAL") {
        "critical"
    } else {
        "warning"
    }
}

/// The template id of a critical anomaly: the item's, or from a payload stored before
/// items carried it (`critical_anomaly:template:<id>`).
pub fn template_id(item: &AlertItem) -> Option<i64> {
    item.template_id.or_else(|| {
        item.dedup_key
            .strip_prefix(&format!("{KIND_CRITICAL}:template:"))
            .and_then(|t| t.parse().ok())
    })
}

/// The labels: `alertname`, `severity`, `kind`, `template_id`, `source`, `pattern_kind`
/// and `dedup_key` (so two alerts of one source without a template stay two alerts);
/// empty ones are left out.
pub fn labels(item: &AlertItem) -> BTreeMap<&'static str, String> {
    let mut labels = BTreeMap::new();
    labels.insert("alertname", alert_name(item));
    labels.insert("severity", severity(item).to_owned());
    labels.insert("kind", item.kind.clone());
    labels.insert("dedup_key", item.dedup_key.clone());
    if let Some(t) = template_id(item) {
        labels.insert("template_id", t.to_string());
    }
    if let Some(p) = &item.pattern_kind {
        labels.insert("pattern_kind", p.clone());
    }
    if let Some(s) = &item.source {
        labels.insert("source", s.clone());
    }
    labels.retain(|_, v| !v.trim().is_empty());
    labels
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The Alertmanager alert for `item`, firing since `starts_at`, ended at `ends_at`.
pub fn postable(
    item: &AlertItem,
    starts_at: DateTime<Utc>,
    ends_at: Option<DateTime<Utc>>,
) -> PostableAlert {
    let mut annotations = BTreeMap::new();
    annotations.insert("summary", item.title.clone());
    annotations.insert("description", item.summary.clone());
    annotations.insert("dashboard_url", item.link.clone());
    if let Some(score) = item.anomaly_score {
        annotations.insert("anomaly_score", format!("{score:.3}"));
    }
    annotations.retain(|_, v| !v.trim().is_empty());
    PostableAlert {
        labels: labels(item),
        annotations,
        starts_at: rfc3339(starts_at),
        // Alertmanager refuses an end before the start (clocks of two hosts).
        ends_at: ends_at.map(|e| rfc3339(e.max(starts_at))),
        generator_url: item.link.clone(),
    }
}

/// `<base>/api/v2/alerts` (kept as is when `base` already ends with it).
pub fn alerts_url(base: &Url) -> Url {
    let mut url = base.clone();
    let path = base.path().trim_end_matches('/');
    if !path.ends_with(&format!("/{ALERTS_PATH}")) {
        url.set_path(&format!("{path}/{ALERTS_PATH}"));
    }
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// An Alertmanager (or several behind one URL: Alertmanager peers gossip what they get).
pub struct Alertmanager {
    client: reqwest::Client,
    url: Url,
    name: String,
    repost_every: Duration,
}

impl Alertmanager {
    /// `base` is Alertmanager's base URL (`http://alertmanager:9093`).
    ///
    /// # Errors
    ///
    /// The HTTP client cannot be built (TLS roots).
    pub fn new(
        base: &Url,
        repost_every: Duration,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let url = alerts_url(base);
        Ok(Self {
            name: deliver::channel_name("alertmanager", &url, &[url.as_str()]),
            client: deliver::http_client(timeout)?,
            url,
            repost_every,
        })
    }

    async fn post(&self, alerts: &[PostableAlert], delivery_id: &str) -> Result<(), DeliveryError> {
        let body = serde_json::to_vec(alerts).map_err(DeliveryError::WebhookEncode)?;
        let request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Logcanary-Delivery", delivery_id)
            .body(body);
        deliver::send_http(request).await
    }
}

/// The first alert of each dedup key, in arrival order.
pub(crate) fn first_per_key(items: &[AlertItem]) -> Vec<&AlertItem> {
    let mut seen = std::collections::HashSet::new();
    items
        .iter()
        .filter(|i| seen.insert(i.dedup_key.as_str()))
        .collect()
}

#[async_trait::async_trait]
impl Channel for Alertmanager {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "alertmanager"
    }

    async fn send(&self, message: &Rendered, delivery_id: &str) -> Result<(), DeliveryError> {
        let now = Utc::now();
        let alerts: Vec<PostableAlert> = first_per_key(&message.alerts)
            .into_iter()
            .map(|item| postable(item, now, None))
            .collect();
        self.post(&alerts, delivery_id).await
    }

    fn tracking(&self) -> Option<Tracking> {
        Some(Tracking {
            repost_every: Some(self.repost_every),
        })
    }

    async fn update(
        &self,
        incidents: &[IncidentUpdate],
        delivery_id: &str,
    ) -> Result<(), DeliveryError> {
        let alerts: Vec<PostableAlert> = incidents
            .iter()
            .map(|i| postable(&i.alert, i.started_at, i.ended_at))
            .collect();
        self.post(&alerts, delivery_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::critical;

    #[test]
    fn alerts_go_to_the_v2_api_under_the_base_url() {
        for (base, want) in [
            ("http://am:9093", "http://am:9093/api/v2/alerts"),
            ("http://am:9093/", "http://am:9093/api/v2/alerts"),
            (
                "https://x/alertmanager/",
                "https://x/alertmanager/api/v2/alerts",
            ),
            (
                "http://am:9093/api/v2/alerts",
                "http://am:9093/api/v2/alerts",
            ),
        ] {
            assert_eq!(alerts_url(&Url::parse(base).unwrap()).as_str(), want);
        }
    }

    #[test]
    fn labels_name_the_incident_and_leave_out_empty_ones() {
        let base = Url::parse("http://canary/").unwrap();
        let mut item = critical(7, 0.91, "Rare.", None, &base);
        item.severity = "CRITICAL".into();
        item.template_id = Some(42);
        item.dedup_key = "critical_anomaly:template:42".into();
        item.source = Some(String::new());
        let a = postable(&item, Utc::now(), None);
        assert_eq!(a.labels["alertname"], "LogcanaryCriticalAnomaly");
        assert_eq!(a.labels["severity"], "critical");
        assert_eq!(a.labels["kind"], "critical_anomaly");
        assert_eq!(a.labels["template_id"], "42");
        assert!(!a.labels.contains_key("source"));
        assert_eq!(a.annotations["dashboard_url"], "http://canary/api/logs/7/");
        assert_eq!(a.generator_url, "http://canary/api/logs/7/");
        let json = serde_json::to_value(&a).unwrap();
        assert!(json.get("endsAt").is_none() && json["startsAt"].is_string());

        item.kind = KIND_PATTERN.into();
        item.pattern_kind = Some("error_spike".into());
        item.severity = "WARNING".into();
        assert_eq!(alert_name(&item), "LogcanaryPatternErrorSpike");
        assert_eq!(severity(&item), "warning");
        let start = Utc::now();
        let ended = postable(&item, start, Some(start - chrono::Duration::seconds(1)));
        assert_eq!(ended.ends_at, Some(ended.starts_at.clone()));
    }
}
