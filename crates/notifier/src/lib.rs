//! The notifier: consumes `notifications` (`logs.tasks.send_critical_anomaly_alert`,
//! `logs.tasks.send_pattern_alert`) and delivers alerts by email over SMTP, by JSON
//! webhooks (Slack-compatible, HMAC-signed), to Prometheus Alertmanager and to PagerDuty
//! (Events API v2), with dedup and cooldown, grouping of alerts that arrive together, and
//! every attempt recorded in the `alerts` table. On Alertmanager and PagerDuty an alert is
//! an incident that lasts while its alerts keep coming (`incident`): re-posted, then ended.
//!
//! Retries of a failed delivery happen in-process with backoff (so a group stays one
//! message); a message whose delivery failed for good is dead-lettered and its task marked
//! FAILURE. Failures before delivery (database down) go through the broker's retry queues.
//! This crate must not depend on the detector (no ONNX Runtime) nor on other binaries.

pub mod alert;
pub mod alertmanager;
pub mod config;
pub mod deliver;
pub mod handler;
pub mod incident;
pub mod pagerduty;
pub mod render;

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use common::admin::ReadinessFn;
use tokio_util::sync::CancellationToken;

use crate::{
    alertmanager::Alertmanager,
    config::Settings,
    deliver::{Channel, Email, Webhook},
    handler::NotifierHandler,
    incident::Sweeper,
    pagerduty::PagerDuty,
};

/// Builds the delivery channels from the settings (no connection is made yet).
///
/// # Errors
///
/// A setting is invalid; the message names its variable.
pub fn channels(settings: &Settings) -> anyhow::Result<Vec<Arc<dyn Channel>>> {
    let checked = settings.channels()?;
    let timeout = Duration::from_millis(settings.delivery_timeout_ms);
    let mut channels: Vec<Arc<dyn Channel>> = Vec::new();
    if let (Some(url), Some(from)) = (&checked.smtp_url, &checked.from) {
        let email = Email::new(url, from.clone(), checked.recipients.clone(), timeout)
            .context("LOGCANARY_SMTP_URL")?;
        tracing::info!(smtp = %common::config::redact_url(url), recipients = checked.recipients.len(), "Email alerts on.");
        channels.push(Arc::new(email));
    }
    if !checked.webhooks.is_empty() && checked.webhook_secret.is_none() {
        tracing::warn!("LOGCANARY_WEBHOOK_SECRET is unset: webhooks are sent unsigned.");
    }
    for url in &checked.webhooks {
        let hook = Webhook::new(url.clone(), checked.webhook_secret.clone(), timeout)
            .context("building the webhook HTTP client")?;
        tracing::info!(channel = hook.name(), "Webhook alerts on.");
        channels.push(Arc::new(hook));
    }
    let repost = Duration::from_secs(settings.alertmanager_repost_secs);
    for base in &checked.alertmanagers {
        let am = Alertmanager::new(base, repost, timeout)
            .context("building the Alertmanager HTTP client")?;
        tracing::info!(
            channel = am.name(),
            repost_secs = settings.alertmanager_repost_secs,
            "Alertmanager alerts on."
        );
        channels.push(Arc::new(am));
    }
    if let Some(pd) = &checked.pagerduty {
        if pd.routing_key.len() != 32 {
            tracing::warn!(
                length = pd.routing_key.len(),
                "LOGCANARY_PAGERDUTY_ROUTING_KEY is not 32 characters long: PagerDuty refuses such events."
            );
        }
        let pd = PagerDuty::new(pd.url.clone(), pd.routing_key.clone(), timeout)
            .context("building the PagerDuty HTTP client")?;
        tracing::info!(channel = pd.name(), "PagerDuty alerts on.");
        channels.push(Arc::new(pd));
    }
    if channels.is_empty() {
        tracing::warn!("No delivery channel configured (LOGCANARY_SMTP_URL, LOGCANARY_WEBHOOK_URLS, LOGCANARY_ALERTMANAGER_URLS, LOGCANARY_PAGERDUTY_ROUTING_KEY): alerts are recorded, not sent.");
    }
    Ok(channels)
}

/// Runs the notifier until `shutdown` fires; then finishes in-flight groups (cutting
/// retry pauses short: what is still pending goes back to the broker) and returns.
///
/// # Errors
///
/// Invalid settings (naming the variable), the admin address cannot be bound.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let channels = channels(&settings)?;
    let checked = settings.channels()?;
    let db = db::Db::connect_lazy(
        settings.service.database_url(),
        settings.service.db_pool_size,
    )
    .context("creating the database pool (DATABASE_URL)")?;
    let sweeper = Sweeper {
        db: db.clone(),
        every: incident::tick(settings.incident_resolve(), &channels),
        channels: channels.clone(),
        resolve_after: settings.incident_resolve(),
        policy: settings.delivery_policy(),
        timeout: Duration::from_millis(settings.delivery_timeout_ms),
        shutdown: shutdown.clone(),
    };
    let handler = Arc::new(NotifierHandler {
        db: db.clone(),
        channels,
        cooldown: Duration::from_secs(settings.cooldown_secs),
        policy: settings.delivery_policy(),
        dashboard_url: checked.dashboard_url.context("LOGCANARY_DASHBOARD_URL")?,
        shutdown: shutdown.clone(),
    });

    let consumer = settings.consumer_config();
    let broker = consumer.connected.clone();
    let readiness: ReadinessFn = Arc::new(move || {
        let db = db.clone();
        let broker = mq::service::broker_check(&broker);
        Box::pin(async move {
            vec![
                ("database", db.ping().await.map_err(|e| e.to_string())),
                broker,
            ]
        })
    });
    tracing::info!(
        cooldown_secs = settings.cooldown_secs,
        group_window_ms = settings.group_window_ms,
        incident_resolve_secs = settings.incident_resolve().as_secs(),
        "Notifier settings."
    );
    let service = mq::service::Service::new(
        "Notifier",
        &settings.service,
        settings.admin_addr,
        readiness,
        consumer,
    );
    let sweeping = tokio::spawn(sweeper.run());
    let served = mq::service::serve(service, handler, shutdown.clone()).await;
    // The sweep stops with the same token (a serve that failed on its own stops it too).
    shutdown.cancel();
    if let Err(error) = sweeping.await {
        tracing::error!(%error, "The incident sweep panicked.");
    }
    served
}
