//! The notifier: consumes `notifications` (`logs.tasks.send_critical_anomaly_alert`,
//! `logs.tasks.send_pattern_alert`) and delivers alerts by email over SMTP and by JSON
//! webhooks (Slack-compatible, HMAC-signed), with dedup and cooldown, grouping of alerts
//! that arrive together, and every attempt recorded in the `alerts` table.
//!
//! Retries of a failed delivery happen in-process with backoff (so a group stays one
//! message); a message whose delivery failed for good is dead-lettered and its task marked
//! FAILURE. Failures before delivery (database down) go through the broker's retry queues.
//! This crate must not depend on the detector (no ONNX Runtime) nor on other binaries.

pub mod alert;
pub mod config;
pub mod deliver;
pub mod handler;
pub mod render;

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use common::admin::ReadinessFn;
use tokio_util::sync::CancellationToken;

use crate::{
    config::Settings,
    deliver::{Channel, Email, Webhook},
    handler::NotifierHandler,
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
    if channels.is_empty() {
        tracing::warn!("No delivery channel configured (LOGCANARY_SMTP_URL, LOGCANARY_WEBHOOK_URLS): alerts are recorded, not sent.");
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
        "Notifier settings."
    );
    let service = mq::service::Service::new(
        "Notifier",
        &settings.service,
        settings.admin_addr,
        readiness,
        consumer,
    );
    mq::service::serve(service, handler, shutdown).await
}
