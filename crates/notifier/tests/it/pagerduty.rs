//! The notifier against a local PagerDuty Events API v2 receiver that checks every event
//! against the documented schema (<https://developer.pagerduty.com/api-reference/YXBpOjI3NDgyNjU-pager-duty-v2-events-api>)
//! and answers as PagerDuty does: `202` with `{"status":"success",...}`, or `400` with the
//! errors found.

use std::time::Duration;

use serde_json::{json, Value};
use test_support::webhook::{Received, WebhookSink};

use crate::delivery::{args, Notifier, T};

/// An integration key has 32 characters.
const ROUTING_KEY: &str = "R0UT1NGKEY0TEST00000000000000042";

/// What is wrong with `r` as an Events API v2 request; empty when nothing.
fn schema_errors(r: &Received) -> Vec<String> {
    let mut errors = Vec::new();
    if r.method != "POST" || r.path != "/v2/enqueue" {
        errors.push(format!("{} {} is not POST /v2/enqueue", r.method, r.path));
    }
    if !r
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
    {
        errors.push("Content-Type is not application/json".into());
    }
    let Ok(Value::Object(event)) = serde_json::from_slice::<Value>(&r.body) else {
        errors.push("the body is not a JSON object".into());
        return errors;
    };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    match text(event.get("routing_key")) {
        Some(k) if k.chars().count() == 32 => {}
        Some(_) => {
            errors.push("Length of 'routing_key' is incorrect (should be 32 characters)".into())
        }
        None => errors.push("'routing_key' is missing or not a string".into()),
    }
    let action = text(event.get("event_action")).unwrap_or_default();
    if !["trigger", "acknowledge", "resolve"].contains(&action.as_str()) {
        errors.push(format!("'event_action' {action:?} is invalid"));
    }
    match event.get("dedup_key") {
        None if action == "trigger" => {}
        Some(Value::String(k)) if !k.is_empty() && k.chars().count() <= 255 => {}
        other => errors.push(format!("'dedup_key' {other:?} is invalid (a string of 1 to 255 characters, required but for a trigger)")),
    }
    if action == "trigger" {
        let Some(Value::Object(payload)) = event.get("payload") else {
            errors.push("'payload' is missing".into());
            return errors;
        };
        match text(payload.get("summary")) {
            Some(s) if !s.is_empty() && s.chars().count() <= 1024 => {}
            other => errors.push(format!(
                "'payload.summary' {other:?} is invalid (1 to 1024 characters)"
            )),
        }
        if text(payload.get("source")).is_none_or(|s| s.is_empty()) {
            errors.push("'payload.source' is missing".into());
        }
        let severity = text(payload.get("severity")).unwrap_or_default();
        if !["critical", "error", "warning", "info"].contains(&severity.as_str()) {
            errors.push(format!("'payload.severity' {severity:?} is invalid"));
        }
        if let Some(t) = payload.get("timestamp") {
            if t.as_str()
                .is_none_or(|t| chrono::DateTime::parse_from_rfc3339(t).is_err())
            {
                errors.push(format!("'payload.timestamp' {t} is not RFC 3339"));
            }
        }
        for field in ["component", "group", "class"] {
            if payload.get(field).is_some_and(|v| !v.is_string()) {
                errors.push(format!("'payload.{field}' is not a string"));
            }
        }
        if payload
            .get("custom_details")
            .is_some_and(|v| !v.is_object())
        {
            errors.push("'payload.custom_details' is not an object".into());
        }
        if let Some(links) = event.get("links") {
            let ok = links.as_array().is_some_and(|l| {
                l.iter().all(|l| {
                    l["href"].as_str().is_some_and(|h| h.starts_with("http"))
                        && l.get("text").is_none_or(Value::is_string)
                })
            });
            if !ok {
                errors.push("'links' is not a list of {href, text}".into());
            }
        }
    }
    errors
}

/// A receiver that answers like the Events API.
async fn pagerduty() -> WebhookSink {
    let sink = WebhookSink::start().await;
    sink.respond_by(|r| {
        let errors = schema_errors(r);
        if errors.is_empty() {
            let key = r.json()["dedup_key"].clone();
            (
                202,
                json!({"status": "success", "message": "Event processed", "dedup_key": key})
                    .to_string(),
            )
        } else {
            (
                400,
                json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors})
                    .to_string(),
            )
        }
    });
    sink
}

fn flags(sink: &WebhookSink, resolve_secs: u64) -> Vec<String> {
    args(&[
        ("--pagerduty-routing-key", ROUTING_KEY.into()),
        ("--pagerduty-url", sink.url("/v2/enqueue")),
        ("--incident-resolve-secs", resolve_secs.to_string()),
    ])
}

#[tokio::test]
async fn an_incident_triggers_then_resolves_with_one_dedup_key_across_a_restart() {
    let pd = pagerduty().await;
    let mut n = Notifier::start(&flags(&pd, 3)).await;
    n.critical_of("CRITICAL", &["Payment gateway unreachable"], Some(77))
        .await;
    n.wait_tasks("SUCCESS", 1).await;
    let trigger = pd.wait_for(1, T).await[0].clone();
    assert!(
        schema_errors(&trigger).is_empty(),
        "{:?}",
        schema_errors(&trigger)
    );
    assert_eq!(trigger.status, 202);
    let t = trigger.json();
    assert_eq!(t["event_action"], "trigger");
    assert_eq!(t["routing_key"], ROUTING_KEY);
    assert_eq!(t["dedup_key"], "critical_anomaly:template:77");
    assert_eq!(t["payload"]["severity"], "critical");
    assert_eq!(t["payload"]["source"], "payments");
    assert!(t["payload"]["summary"]
        .as_str()
        .unwrap()
        .contains("Payment gateway unreachable"));
    assert_eq!(t["payload"]["custom_details"]["template_id"], 77);
    assert!(t["links"][0]["href"]
        .as_str()
        .unwrap()
        .starts_with("http://canary.test/api/logs/"));

    // The incident is in Postgres: a restarted notifier ends it.
    n.restart().await;
    let got = pd.wait_for(2, T).await;
    assert_eq!(got.len(), 2, "one trigger, one resolve");
    let r = got[1].json();
    assert!(
        schema_errors(&got[1]).is_empty(),
        "{:?}",
        schema_errors(&got[1])
    );
    assert_eq!(got[1].status, 202);
    assert_eq!(r["event_action"], "resolve");
    assert_eq!(r["dedup_key"], t["dedup_key"]);
    assert!(
        got[1].at.duration_since(trigger.at) >= Duration::from_secs(3),
        "resolved after the resolve time"
    );
    // Nothing more: PagerDuty keeps an incident open by itself, so no re-posts.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(pd.requests().len(), 2);
    n.stop().await;
}

#[tokio::test]
async fn pagerduty_5xx_is_retried_and_4xx_is_not() {
    let pd = pagerduty().await;
    pd.respond_with(&[500]);
    let n = Notifier::start(&flags(&pd, 600)).await;
    n.critical("ERROR", &["Queue consumer crashed"]).await;
    n.wait_tasks("SUCCESS", 1).await;
    let got = pd.requests();
    assert_eq!(
        got.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![500, 202]
    );
    assert_eq!(got[1].json()["payload"]["severity"], "error");
    let rows = n.alerts().await;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("sent", 2));
    assert!(rows[0].channel.starts_with("pagerduty:127.0.0.1#"));
    assert!(!rows[0].channel.contains(ROUTING_KEY));

    pd.respond_with(&[400]);
    n.critical("CRITICAL", &["A different failure entirely"])
        .await;
    n.wait_tasks("FAILURE", 1).await;
    assert_eq!(pd.requests().len(), 3, "a 400 is not retried");
    let failed: Vec<_> = n
        .alerts()
        .await
        .into_iter()
        .filter(|a| a.status == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    let error = failed[0].last_error.as_deref().unwrap_or_default();
    assert!(error.contains("400"), "{error}");
    assert!(!error.contains(ROUTING_KEY), "{error}");
    n.stop().await;
}
