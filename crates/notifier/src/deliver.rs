//! The delivery channels: email over SMTP (`lettre`) and signed JSON webhooks
//! (`reqwest`) here, Prometheus Alertmanager and PagerDuty in their own modules. One
//! [`Channel::send`] is one attempt; it says whether a failure is worth another attempt
//! ([`DeliveryError::is_retryable`]): HTTP 5xx, 408, 425, 429, timeouts, connection errors
//! and SMTP 4xx are; other HTTP 4xx and SMTP 5xx are not.
//!
//! Channels that follow an incident after its first alert ([`Channel::tracking`]:
//! Alertmanager, PagerDuty) also get [`Channel::update`] from the incident sweep
//! (`crate::incident`): re-posts while the incident lasts and its end.

use std::time::Duration;

use chrono::{DateTime, Utc};

use lettre::{
    message::{Mailbox, MultiPart},
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
};
use sha2::{Digest, Sha256};
use url::Url;

use crate::{alert::AlertItem, render::Rendered};

/// Why one attempt failed, and whether another attempt may succeed
/// ([`DeliveryError::is_retryable`]). The message (`Display`) carries the whole reason,
/// since it is what `alerts.last_error` keeps; it holds no secret (no webhook path, no
/// SMTP password).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The email could not be put together (an address lettre refuses): permanent.
    #[error("building the email failed: {0}")]
    EmailBuild(lettre::error::Error),
    /// The SMTP server refused or could not be reached: a 4xx reply, a refused or broken
    /// connection or a timeout is retryable; a 5xx reply (bad recipient, auth refused) or
    /// a client-side error is permanent.
    #[error("SMTP: {0}")]
    Smtp(lettre::transport::smtp::Error),
    /// The webhook body could not be encoded: permanent.
    #[error("encoding the webhook body failed: {0}")]
    WebhookEncode(serde_json::Error),
    /// The receiver answered with a non-2xx status: 5xx, 408, 425 and 429 are retryable,
    /// other 4xx permanent. `body` is the start of its answer, maybe empty.
    #[error("HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    WebhookStatus {
        status: reqwest::StatusCode,
        body: String,
    },
    /// No answer within the delivery timeout: retryable.
    #[error("HTTP request timed out")]
    WebhookTimeout,
    /// The request did not get an answer (connection refused, TLS, ...): retryable, unless
    /// the request could not even be built.
    #[error("HTTP request failed: {reason}")]
    WebhookRequest { reason: String, builder: bool },
}

impl DeliveryError {
    /// Another attempt of the same message may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::EmailBuild(_) | Self::WebhookEncode(_) => false,
            Self::Smtp(e) => !(e.is_permanent() || e.is_client()),
            Self::WebhookStatus { status, .. } => {
                status.is_server_error() || matches!(status.as_u16(), 408 | 425 | 429)
            }
            Self::WebhookTimeout => true,
            Self::WebhookRequest { builder, .. } => !builder,
        }
    }
}

/// How often and how patiently a message is re-sent on a transient failure.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// Pause after the first failed attempt; doubles per attempt.
    pub backoff: Duration,
    pub backoff_max: Duration,
}

impl RetryPolicy {
    /// Pause after failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32
            .checked_pow(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.backoff
            .checked_mul(factor)
            .unwrap_or(self.backoff_max)
            .min(self.backoff_max)
    }
}

/// How a channel follows an incident (the alerts of one dedup key) after its first alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracking {
    /// Re-post a firing incident this often (Alertmanager counts an alert that is not
    /// re-posted within its `resolve_timeout` as resolved); `None`: the receiver keeps it
    /// open until told otherwise (PagerDuty).
    pub repost_every: Option<Duration>,
}

/// An open incident sent again, or its end, by [`Channel::update`].
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentUpdate {
    /// The alert that opened the incident: its labels and dedup key are the incident's.
    pub alert: AlertItem,
    pub started_at: DateTime<Utc>,
    /// `Some`: the incident ended then; `None`: it is still firing.
    pub ended_at: Option<DateTime<Utc>>,
}

/// A place alerts are sent to.
#[async_trait::async_trait]
pub trait Channel: Send + Sync + 'static {
    /// The `alerts.channel` value: `email`, `webhook:<host>#<hash of the URL>`,
    /// `alertmanager:<host>#<hash>` or `pagerduty:<host>#<hash>`.
    fn name(&self) -> &str;
    /// `email`, `webhook`, `alertmanager` or `pagerduty`: a bounded metrics label.
    fn kind(&self) -> &'static str;
    /// One attempt. `delivery_id` is the same for every attempt of one message, so a
    /// receiver can drop repeats.
    ///
    /// # Errors
    ///
    /// The attempt failed; [`DeliveryError::is_retryable`] says whether to try again.
    async fn send(&self, message: &Rendered, delivery_id: &str) -> Result<(), DeliveryError>;

    /// `Some` for a channel that keeps incidents open and gets [`Channel::update`] calls;
    /// `None` (the default) for one-off messages (email, webhooks).
    fn tracking(&self) -> Option<Tracking> {
        None
    }

    /// One attempt at re-posting firing incidents and sending ended ones. The default
    /// does nothing (channels without [`Channel::tracking`] are never asked).
    ///
    /// # Errors
    ///
    /// As [`Channel::send`].
    async fn update(
        &self,
        incidents: &[IncidentUpdate],
        delivery_id: &str,
    ) -> Result<(), DeliveryError> {
        let _ = (incidents, delivery_id);
        Ok(())
    }
}

/// The HTTP client of the HTTP channels.
///
/// # Errors
///
/// The client cannot be built (TLS roots).
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("logcanary-notifier/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Sends `request` (a JSON body set) and turns anything but a 2xx answer into a
/// [`DeliveryError`] that holds no URL.
pub(crate) async fn send_http(request: reqwest::RequestBuilder) -> Result<(), DeliveryError> {
    match request.send().await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            Err(DeliveryError::WebhookStatus {
                status,
                body: text.trim().chars().take(200).collect(),
            })
        }
        Err(e) if e.is_timeout() => Err(DeliveryError::WebhookTimeout),
        Err(e) => Err(DeliveryError::WebhookRequest {
            builder: e.is_builder(),
            reason: error_chain(&e.without_url()),
        }),
    }
}

/// `<prefix>:<host>#<8 hex of sha256(secret material)>`: tells channels apart without
/// showing a path or key.
pub(crate) fn channel_name(prefix: &str, url: &Url, material: &[&str]) -> String {
    let mut hash = Sha256::new();
    for m in material {
        hash.update(m.as_bytes());
        hash.update([0]);
    }
    let hash = hex::encode(hash.finalize());
    format!(
        "{prefix}:{}#{}",
        url.host_str().unwrap_or("unknown"),
        &hash[..8]
    )
}

/// Email to a fixed list of recipients, one SMTP transaction per message.
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Email {
    /// Builds the transport from `smtp_url` (see [`AsyncSmtpTransport::from_url`]); no
    /// connection is made until the first message.
    ///
    /// # Errors
    ///
    /// The URL is not an SMTP URL lettre can use.
    pub fn new(
        smtp_url: &str,
        from: Mailbox,
        to: Vec<Mailbox>,
        timeout: Duration,
    ) -> Result<Self, lettre::transport::smtp::Error> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)?
            .timeout(Some(timeout))
            .build();
        Ok(Self {
            transport,
            from,
            to,
        })
    }
}

#[async_trait::async_trait]
impl Channel for Email {
    fn name(&self) -> &str {
        "email"
    }

    fn kind(&self) -> &'static str {
        "email"
    }

    async fn send(&self, message: &Rendered, delivery_id: &str) -> Result<(), DeliveryError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(message.subject.clone())
            .message_id(Some(format!(
                "<{delivery_id}@{}>",
                self.from.email.domain()
            )));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let email = builder
            .multipart(MultiPart::alternative_plain_html(
                message.text.clone(),
                message.html.clone(),
            ))
            .map_err(DeliveryError::EmailBuild)?;
        self.transport
            .send(email)
            .await
            .map(drop)
            .map_err(DeliveryError::Smtp)
    }
}

/// A JSON webhook, signed with `X-HMAC-Signature: t=<unix>,v1=<hex>` when a secret is set.
pub struct Webhook {
    client: reqwest::Client,
    url: Url,
    secret: Option<String>,
    name: String,
}

impl Webhook {
    /// # Errors
    ///
    /// The HTTP client cannot be built (TLS roots).
    pub fn new(
        url: Url,
        secret: Option<String>,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let client = http_client(timeout)?;
        Ok(Self {
            name: webhook_channel(&url),
            client,
            url,
            secret,
        })
    }
}

/// `webhook:<host>#<8 hex of sha256(url)>`: tells webhooks apart without showing their
/// paths, where Slack keeps the secret.
pub fn webhook_channel(url: &Url) -> String {
    let hash = hex::encode(Sha256::digest(url.as_str().as_bytes()));
    format!(
        "webhook:{}#{}",
        url.host_str().unwrap_or("unknown"),
        &hash[..8]
    )
}

#[async_trait::async_trait]
impl Channel for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "webhook"
    }

    async fn send(&self, message: &Rendered, delivery_id: &str) -> Result<(), DeliveryError> {
        let body = serde_json::to_vec(&message.webhook).map_err(DeliveryError::WebhookEncode)?;
        let mut request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Logcanary-Delivery", delivery_id);
        if let Some(secret) = &self.secret {
            let t = chrono::Utc::now().timestamp();
            request = request.header(
                "X-HMAC-Signature",
                common::signing::sign_timestamped(secret.as_bytes(), t, &body),
            );
        }
        send_http(request.body(body)).await
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            attempts: 5,
            backoff: Duration::from_millis(100),
            backoff_max: Duration::from_millis(350),
        };
        assert_eq!(p.delay(1), Duration::from_millis(100));
        assert_eq!(p.delay(2), Duration::from_millis(200));
        assert_eq!(p.delay(3), Duration::from_millis(350));
        assert_eq!(p.delay(40), Duration::from_millis(350));
    }

    #[test]
    fn failures_say_whether_another_attempt_may_succeed() {
        let status = |code: u16, body: &str| DeliveryError::WebhookStatus {
            status: reqwest::StatusCode::from_u16(code).unwrap(),
            body: body.into(),
        };
        for code in [500, 502, 503, 408, 425, 429] {
            assert!(status(code, "").is_retryable(), "{code}");
        }
        for code in [400, 401, 404, 410, 422] {
            assert!(!status(code, "").is_retryable(), "{code}");
        }
        assert!(DeliveryError::WebhookTimeout.is_retryable());
        assert_eq!(status(502, "").to_string(), "HTTP 502 Bad Gateway");
        assert_eq!(
            status(400, "no such channel").to_string(),
            "HTTP 400 Bad Request: no such channel"
        );
    }

    #[test]
    fn webhook_channels_hide_the_path() {
        let url = Url::parse("https://hooks.slack.com/services/T0/B0/secret").unwrap();
        let name = webhook_channel(&url);
        assert!(name.starts_with("webhook:hooks.slack.com#"));
        assert!(!name.contains("secret"));
        let other = Url::parse("https://hooks.slack.com/services/T0/B0/other").unwrap();
        assert_ne!(name, webhook_channel(&other));
    }
}
