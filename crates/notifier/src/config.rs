//! Settings of the notifier: flags that are also environment variables.
//!
//! The channel settings are read as text and checked by [`Settings::channels`], so a bad
//! value stops the binary at start-up with a message naming the variable.

use std::{net::SocketAddr, time::Duration};

use common::config::{parse_listen_addr, ExposeSecret, SecretString, ServiceArgs};
use lettre::message::Mailbox;
use url::Url;

#[derive(clap::Parser, Clone, Debug)]
#[command(
    name = "notifier",
    version,
    about = "logcanary notifier: delivers critical-anomaly and pattern alerts by email (SMTP), webhooks, Prometheus Alertmanager and PagerDuty, with dedup, cooldown and grouping."
)]
pub struct Settings {
    #[command(flatten)]
    pub service: ServiceArgs,

    /// Address of the admin server (/livez, /readyz, /metrics).
    #[arg(long, env = "LOGCANARY_ADMIN_ADDR", value_name = "LOGCANARY_ADMIN_ADDR", default_value = ":9103", value_parser = parse_listen_addr)]
    pub admin_addr: SocketAddr,

    /// Queues to consume (like Celery's -Q); the notifier handles `notifications` only.
    #[arg(short = 'Q', long, env = "LOGCANARY_QUEUES", value_name = "LOGCANARY_QUEUES", value_delimiter = ',', default_value = "notifications", value_parser = parse_queue)]
    pub queues: Vec<String>,

    /// Grouping window in milliseconds: alerts arriving within this time of the first one
    /// go out as one message per channel.
    #[arg(
        long,
        env = "LOGCANARY_ALERT_GROUP_WINDOW_MS",
        value_name = "LOGCANARY_ALERT_GROUP_WINDOW_MS",
        default_value_t = 2000
    )]
    pub group_window_ms: u64,

    /// Cooldown in seconds: the same alert (kind + template, or pattern kind + source) on
    /// the same channel within this time is recorded as suppressed, not sent again.
    #[arg(
        long,
        env = "LOGCANARY_ALERT_COOLDOWN_SECS",
        value_name = "LOGCANARY_ALERT_COOLDOWN_SECS",
        default_value_t = 900
    )]
    pub cooldown_secs: u64,

    /// SMTP server: `smtp://host:port` (plain), `smtp://host:port?tls=required` (STARTTLS),
    /// `smtps://user:pass@host:port` (TLS). Unset: no email.
    #[arg(
        long,
        env = "LOGCANARY_SMTP_URL",
        value_name = "LOGCANARY_SMTP_URL",
        hide_env_values = true
    )]
    pub smtp_url: Option<SecretString>,

    /// Alert email recipients, comma-separated (`ops@example.com,Jo <jo@example.com>`).
    #[arg(
        long,
        env = "LOGCANARY_ALERT_EMAILS",
        value_name = "LOGCANARY_ALERT_EMAILS"
    )]
    pub alert_emails: Option<String>,

    /// Sender of alert emails.
    #[arg(
        long,
        env = "LOGCANARY_ALERT_FROM",
        value_name = "LOGCANARY_ALERT_FROM",
        default_value = "logcanary <logcanary@localhost>"
    )]
    pub alert_from: String,

    /// Webhook URLs, comma-separated (Slack incoming webhooks or any JSON receiver).
    #[arg(
        long,
        env = "LOGCANARY_WEBHOOK_URLS",
        value_name = "LOGCANARY_WEBHOOK_URLS",
        hide_env_values = true
    )]
    pub webhook_urls: Option<SecretString>,

    /// Secret for the webhooks' `X-HMAC-Signature: t=..,v1=..` header. Unset: unsigned.
    #[arg(
        long,
        env = "LOGCANARY_WEBHOOK_SECRET",
        value_name = "LOGCANARY_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    pub webhook_secret: Option<SecretString>,

    /// Prometheus Alertmanager base URLs, comma-separated (`http://alertmanager:9093`):
    /// alerts are posted to `<base>/api/v2/alerts`, re-posted while they keep firing and
    /// ended with `endsAt`. Unset: no Alertmanager.
    #[arg(
        long,
        env = "LOGCANARY_ALERTMANAGER_URLS",
        value_name = "LOGCANARY_ALERTMANAGER_URLS",
        hide_env_values = true
    )]
    pub alertmanager_urls: Option<SecretString>,

    /// Seconds between re-posts of a firing alert to Alertmanager; keep it well below
    /// Alertmanager's `resolve_timeout` (5 min by default), after which an alert that was
    /// not posted again counts as resolved.
    #[arg(long, env = "LOGCANARY_ALERTMANAGER_REPOST_SECS", value_name = "LOGCANARY_ALERTMANAGER_REPOST_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub alertmanager_repost_secs: u64,

    /// PagerDuty Events API v2 routing key (the integration key of a service's Events API
    /// v2 integration). Unset: no PagerDuty.
    #[arg(
        long,
        env = "LOGCANARY_PAGERDUTY_ROUTING_KEY",
        value_name = "LOGCANARY_PAGERDUTY_ROUTING_KEY",
        hide_env_values = true
    )]
    pub pagerduty_routing_key: Option<SecretString>,

    /// PagerDuty Events API v2 endpoint (another one for a proxy or a test receiver).
    #[arg(
        long,
        env = "LOGCANARY_PAGERDUTY_URL",
        value_name = "LOGCANARY_PAGERDUTY_URL",
        hide_env_values = true,
        default_value = crate::pagerduty::DEFAULT_URL
    )]
    pub pagerduty_url: SecretString,

    /// Seconds without a new alert of the same key (kind + template, or pattern kind +
    /// source; sent or suppressed) after which its incident ends: Alertmanager gets the
    /// alert with `endsAt`, PagerDuty a `resolve`. Unset: the cooldown.
    #[arg(long, env = "LOGCANARY_INCIDENT_RESOLVE_SECS", value_name = "LOGCANARY_INCIDENT_RESOLVE_SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub incident_resolve_secs: Option<u64>,

    /// Base URL of the dashboard, for the links in alerts.
    #[arg(
        long,
        env = "LOGCANARY_DASHBOARD_URL",
        value_name = "LOGCANARY_DASHBOARD_URL",
        default_value = "http://127.0.0.1:8000/"
    )]
    pub dashboard_url: String,

    /// Delivery attempts per message and channel (5xx, timeouts, SMTP 4xx are retried;
    /// HTTP 4xx and SMTP 5xx are not) before the alert is failed and dead-lettered.
    #[arg(long, env = "LOGCANARY_DELIVERY_ATTEMPTS", value_name = "LOGCANARY_DELIVERY_ATTEMPTS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub delivery_attempts: u32,

    /// Pause before the second delivery attempt, in milliseconds; doubles per attempt.
    #[arg(
        long,
        env = "LOGCANARY_DELIVERY_BACKOFF_MS",
        value_name = "LOGCANARY_DELIVERY_BACKOFF_MS",
        default_value_t = 1000
    )]
    pub delivery_backoff_ms: u64,

    /// Longest pause between delivery attempts, in milliseconds.
    #[arg(
        long,
        env = "LOGCANARY_DELIVERY_BACKOFF_MAX_MS",
        value_name = "LOGCANARY_DELIVERY_BACKOFF_MAX_MS",
        default_value_t = 30_000
    )]
    pub delivery_backoff_max_ms: u64,

    /// Time limit of one delivery attempt (HTTP request or SMTP command), in milliseconds.
    #[arg(long, env = "LOGCANARY_DELIVERY_TIMEOUT_MS", value_name = "LOGCANARY_DELIVERY_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub delivery_timeout_ms: u64,

    #[command(flatten)]
    pub consumer: mq::service::ConsumerArgs,

    /// `production` refuses channel secrets that are still a placeholder (`CHANGE-ME`,
    /// `dev-secret`, a `...` path as in the docs).
    #[arg(
        long,
        env = "LOGCANARY_ENV",
        value_name = "LOGCANARY_ENV",
        default_value = "development"
    )]
    pub environment: String,
}

fn parse_queue(raw: &str) -> Result<String, String> {
    let q = raw.trim();
    if q == contracts::queues::NOTIFICATIONS {
        Ok(q.to_owned())
    } else {
        Err(format!(
            "notifier consumes {}; got {q:?}",
            contracts::queues::NOTIFICATIONS
        ))
    }
}

/// A channel setting is invalid. Always permanent: the binary stops at start-up, and the
/// message names the variable at fault (never a secret: URLs are redacted).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("LOGCANARY_ALERT_EMAILS: {raw:?} is not an email address ({reason})")]
    Recipient {
        raw: String,
        reason: lettre::address::AddressError,
    },
    #[error("LOGCANARY_SMTP_URL: {redacted} is not a usable SMTP URL ({reason}); expected smtp://host:port, smtp://host:port?tls=required or smtps://user:pass@host:port")]
    SmtpUrl {
        redacted: String,
        reason: lettre::transport::smtp::Error,
    },
    #[error("LOGCANARY_ALERT_EMAILS is empty but LOGCANARY_SMTP_URL is set: name at least one recipient, or unset LOGCANARY_SMTP_URL")]
    NoRecipients,
    #[error(
        "LOGCANARY_ALERT_EMAILS is set but LOGCANARY_SMTP_URL is not: emails need an SMTP server"
    )]
    NoSmtpServer,
    #[error("LOGCANARY_ALERT_FROM: {raw:?} is not an email address ({reason})")]
    Sender {
        raw: String,
        reason: lettre::address::AddressError,
    },
    #[error("LOGCANARY_WEBHOOK_URLS: {redacted:?} is not an http(s) URL")]
    WebhookUrl { redacted: String },
    #[error("LOGCANARY_ALERTMANAGER_URLS: {redacted:?} is not an http(s) URL")]
    AlertmanagerUrl { redacted: String },
    #[error("LOGCANARY_PAGERDUTY_URL: {redacted:?} is not an http(s) URL")]
    PagerDutyUrl { redacted: String },
    #[error("LOGCANARY_PAGERDUTY_ROUTING_KEY is not a routing key: expected the integration key of an Events API v2 integration (32 characters, no spaces)")]
    PagerDutyRoutingKey,
    #[error("{var} still holds a placeholder ({placeholder}); set the real secret, LOGCANARY_ENV=production refuses it")]
    Placeholder {
        var: &'static str,
        placeholder: &'static str,
    },
    #[error("LOGCANARY_DASHBOARD_URL: {raw:?} is not a URL ({reason})")]
    DashboardUrl {
        raw: String,
        reason: url::ParseError,
    },
}

/// The delivery channels, checked. Its `Debug` shows no secret: the SMTP URL without its
/// password, webhooks and Alertmanagers by host, whether a webhook secret is set,
/// PagerDuty's endpoint by host and never its routing key.
#[derive(Clone, Default)]
pub struct ChannelSettings {
    pub smtp_url: Option<String>,
    pub recipients: Vec<Mailbox>,
    pub from: Option<Mailbox>,
    pub webhooks: Vec<Url>,
    pub webhook_secret: Option<String>,
    /// Base URLs.
    pub alertmanagers: Vec<Url>,
    pub pagerduty: Option<PagerDutySettings>,
    pub dashboard_url: Option<Url>,
}

/// PagerDuty's endpoint and routing key, checked.
#[derive(Clone)]
pub struct PagerDutySettings {
    pub url: Url,
    pub routing_key: String,
}

impl std::fmt::Debug for PagerDutySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagerDutySettings")
            .field("url", &redact_path(self.url.as_str()))
            .field("routing_key", &"[redacted]")
            .finish()
    }
}

impl std::fmt::Debug for ChannelSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let webhooks: Vec<String> = self
            .webhooks
            .iter()
            .map(|u| redact_path(u.as_str()))
            .collect();
        let alertmanagers: Vec<String> = self
            .alertmanagers
            .iter()
            .map(|u| redact_path(u.as_str()))
            .collect();
        f.debug_struct("ChannelSettings")
            .field(
                "smtp_url",
                &self.smtp_url.as_deref().map(common::config::redact_url),
            )
            .field("recipients", &self.recipients)
            .field("from", &self.from)
            .field("webhooks", &webhooks)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("alertmanagers", &alertmanagers)
            .field("pagerduty", &self.pagerduty)
            .field("dashboard_url", &self.dashboard_url)
            .finish()
    }
}

/// Stand-ins for a real secret that the manifests (`deploy/k8s/base/common/secret.yaml`:
/// `CHANGE-ME`) and docs (a webhook path `...`) ship, and the development HMAC key.
const PLACEHOLDERS: [&str; 5] = ["change-me", "changeme", "change_me", "dev-secret", "/..."];

/// The placeholder in `value`, if it holds one (ignoring case).
fn placeholder_in(value: &str) -> Option<&'static str> {
    let lower = value.to_ascii_lowercase();
    PLACEHOLDERS.into_iter().find(|p| lower.contains(p))
}

fn list(raw: Option<&str>) -> Vec<&str> {
    raw.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

impl mq::service::ConsumerSettings for Settings {
    const CONSUMER_DEFAULTS: mq::service::ConsumerDefaults = mq::service::ConsumerDefaults {
        concurrency: "1",
        prefetch: "256",
        batch_max: "100",
    };
}

impl Settings {
    /// Checks the channel settings; the error names the variable at fault.
    ///
    /// # Errors
    ///
    /// A setting is invalid ([`ConfigError`]).
    pub fn channels(&self) -> Result<ChannelSettings, ConfigError> {
        if self.environment == "production" {
            for (var, value) in [
                ("LOGCANARY_SMTP_URL", self.smtp_url.as_ref()),
                ("LOGCANARY_WEBHOOK_URLS", self.webhook_urls.as_ref()),
                ("LOGCANARY_WEBHOOK_SECRET", self.webhook_secret.as_ref()),
                (
                    "LOGCANARY_ALERTMANAGER_URLS",
                    self.alertmanager_urls.as_ref(),
                ),
                (
                    "LOGCANARY_PAGERDUTY_ROUTING_KEY",
                    self.pagerduty_routing_key.as_ref(),
                ),
                ("LOGCANARY_PAGERDUTY_URL", Some(&self.pagerduty_url)),
            ] {
                if let Some(placeholder) = value.and_then(|v| placeholder_in(v.expose_secret())) {
                    return Err(ConfigError::Placeholder { var, placeholder });
                }
            }
        }
        let smtp_url = self
            .smtp_url
            .as_ref()
            .map(|s| s.expose_secret().trim())
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let recipients = list(self.alert_emails.as_deref())
            .into_iter()
            .map(|r| {
                r.parse::<Mailbox>()
                    .map_err(|reason| ConfigError::Recipient {
                        raw: r.to_owned(),
                        reason,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(url) = &smtp_url {
            if let Err(reason) = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url)
            {
                return Err(ConfigError::SmtpUrl {
                    redacted: common::config::redact_url(url),
                    reason,
                });
            }
            if recipients.is_empty() {
                return Err(ConfigError::NoRecipients);
            }
        } else if !recipients.is_empty() {
            return Err(ConfigError::NoSmtpServer);
        }
        let from = self
            .alert_from
            .parse::<Mailbox>()
            .map_err(|reason| ConfigError::Sender {
                raw: self.alert_from.clone(),
                reason,
            })?;
        let webhooks = list(self.webhook_urls.as_ref().map(|s| s.expose_secret()))
            .into_iter()
            .map(|raw| match Url::parse(raw) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(u),
                _ => Err(ConfigError::WebhookUrl {
                    redacted: redact_path(raw),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let alertmanagers = list(self.alertmanager_urls.as_ref().map(|s| s.expose_secret()))
            .into_iter()
            .map(|raw| {
                http_url(raw).ok_or_else(|| ConfigError::AlertmanagerUrl {
                    redacted: redact_path(raw),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let pagerduty = match self
            .pagerduty_routing_key
            .as_ref()
            .map(|k| k.expose_secret().trim())
            .filter(|k| !k.is_empty())
        {
            None => None,
            Some(key) => {
                if !key.chars().all(|c| c.is_ascii_graphic()) {
                    return Err(ConfigError::PagerDutyRoutingKey);
                }
                let raw = self.pagerduty_url.expose_secret().trim();
                let url = http_url(raw).ok_or_else(|| ConfigError::PagerDutyUrl {
                    redacted: redact_path(raw),
                })?;
                Some(PagerDutySettings {
                    url,
                    routing_key: key.to_owned(),
                })
            }
        };
        let mut dashboard_url =
            Url::parse(self.dashboard_url.trim()).map_err(|reason| ConfigError::DashboardUrl {
                raw: self.dashboard_url.clone(),
                reason,
            })?;
        if !dashboard_url.path().ends_with('/') {
            let path = format!("{}/", dashboard_url.path());
            dashboard_url.set_path(&path);
        }
        Ok(ChannelSettings {
            smtp_url,
            recipients,
            from: Some(from),
            webhooks,
            webhook_secret: self
                .webhook_secret
                .as_ref()
                .map(|s| s.expose_secret().to_owned())
                .filter(|s| !s.trim().is_empty()),
            alertmanagers,
            pagerduty,
            dashboard_url: Some(dashboard_url),
        })
    }

    pub fn consumer_config(&self) -> mq::ConsumerConfig {
        self.consumer.config(
            self.queues.clone(),
            Duration::from_millis(self.group_window_ms),
            "notifier",
        )
    }

    /// How long an incident stays open without a new alert of its key.
    pub fn incident_resolve(&self) -> Duration {
        Duration::from_secs(
            self.incident_resolve_secs
                .unwrap_or(self.cooldown_secs)
                .max(1),
        )
    }

    pub fn delivery_policy(&self) -> crate::deliver::RetryPolicy {
        crate::deliver::RetryPolicy {
            attempts: self.delivery_attempts,
            backoff: Duration::from_millis(self.delivery_backoff_ms),
            backoff_max: Duration::from_millis(self.delivery_backoff_max_ms),
        }
    }
}

/// `raw` as an http(s) URL with a host.
fn http_url(raw: &str) -> Option<Url> {
    Url::parse(raw)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// A webhook URL for messages: scheme and host only (Slack puts its secret in the path).
pub fn redact_path(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(u) => format!("{}://{}/…", u.scheme(), u.host_str().unwrap_or_default()),
        Err(_) => "<unparsable>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use mq::service::ConsumerSettings;

    use super::*;

    fn settings(args: &[&str]) -> Settings {
        let mut all = vec!["notifier"];
        all.extend_from_slice(args);
        // Not while `secrets_never_show_in_help_or_debug` has secrets in the environment.
        let _env = test_support::env_lock();
        Settings::load_from(all).expect("valid flags")
    }

    #[test]
    fn secrets_never_show_in_help_or_debug() {
        use clap::CommandFactory;

        let secrets = [
            ("DATABASE_URL", "postgres://lc:pg-s3cret-1@db:5432/lc"),
            ("AMQP_URL", "amqp://lc:mq-s3cret-2@mq:5672/%2f"),
            (
                "LOGCANARY_SMTP_URL",
                "smtps://alerts:smtp-s3cret-3@mail.example.com:465",
            ),
            (
                "LOGCANARY_WEBHOOK_URLS",
                "https://hooks.example.com/services/T0/B0/hook-s3cret-4",
            ),
            ("LOGCANARY_WEBHOOK_SECRET", "sign-s3cret-5"),
            (
                "LOGCANARY_ALERTMANAGER_URLS",
                "http://am:am-s3cret-6@alertmanager:9093,https://am2.example.com/am-s3cret-7/",
            ),
            // 32 characters, like a real integration key.
            (
                "LOGCANARY_PAGERDUTY_ROUTING_KEY",
                "R0s3cret8pd0000000000000000000FF",
            ),
            (
                "LOGCANARY_PAGERDUTY_URL",
                "https://relay:px-s3cret-9@pd-relay.example.com/v2/enqueue",
            ),
        ];
        let (help, debug, channels) = test_support::with_env(&secrets, || {
            let help = Settings::CONSUMER_DEFAULTS
                .apply(Settings::command())
                .render_long_help()
                .to_string();
            let parsed = Settings::load_from(["notifier", "--alert-emails=ops@example.com"])
                .expect("settings parse");
            assert_eq!(parsed.service.database_url(), secrets[0].1);
            assert_eq!(
                parsed.webhook_secret.as_ref().map(|s| s.expose_secret()),
                Some(secrets[4].1)
            );
            let channels = parsed.channels().expect("valid channels");
            assert_eq!(channels.webhooks[0].as_str(), secrets[3].1);
            assert_eq!(channels.alertmanagers.len(), 2);
            let pd = channels.pagerduty.as_ref().expect("PagerDuty on");
            assert_eq!(pd.routing_key, secrets[6].1);
            assert_eq!(pd.url.as_str(), secrets[7].1);
            (help, format!("{parsed:?}"), format!("{channels:?}"))
        });
        test_support::assert_secrets_hidden(&secrets, "s3cret", &help, &debug);
        assert!(
            !channels.contains("s3cret"),
            "a secret is shown: {channels}"
        );
        assert!(
            help.contains("https://events.pagerduty.com/v2/enqueue"),
            "the default endpoint is shown"
        );
        // Flags are secrets too.
        let parsed = settings(&[
            "--smtp-url=smtp://u:flag-s3cret@h:25",
            "--webhook-secret=flag-s3cret",
            "--pagerduty-routing-key=flag-s3cret",
        ]);
        assert!(!format!("{parsed:?}").contains("s3cret"));
    }

    #[test]
    fn channel_errors_never_show_the_routing_key_or_url_secrets() {
        for (args, var) in [
            (
                vec!["--pagerduty-routing-key=not a s3cret key"],
                "LOGCANARY_PAGERDUTY_ROUTING_KEY",
            ),
            (
                vec![
                    "--pagerduty-routing-key=R0s3cret8pd0000000000000000000FF",
                    "--pagerduty-url=ftp://u:s3cret@pd/v2/enqueue",
                ],
                "LOGCANARY_PAGERDUTY_URL",
            ),
            (
                vec!["--alertmanager-urls=http://am:9093,mailto:s3cret@x"],
                "LOGCANARY_ALERTMANAGER_URLS",
            ),
            (
                vec![
                    "--environment=production",
                    "--pagerduty-routing-key=s3cret-CHANGE-ME",
                ],
                "LOGCANARY_PAGERDUTY_ROUTING_KEY",
            ),
        ] {
            let err = settings(&args).channels().unwrap_err();
            let (text, debug) = (err.to_string(), format!("{err:?}"));
            assert!(text.contains(var), "{text}");
            assert!(
                !text.contains("s3cret") && !debug.contains("s3cret"),
                "{text} / {debug}"
            );
        }
        // PagerDuty is off without a routing key, whatever the endpoint.
        let off = settings(&["--pagerduty-url=https://pd.example.com/v2/enqueue"]);
        assert!(off.channels().unwrap().pagerduty.is_none());
    }

    #[test]
    fn incidents_resolve_after_the_cooldown_unless_told_otherwise() {
        let s = settings(&[]);
        assert_eq!(s.incident_resolve(), Duration::from_secs(900));
        assert_eq!(s.alertmanager_repost_secs, 60);
        let s = settings(&["--cooldown-secs=120"]);
        assert_eq!(s.incident_resolve(), Duration::from_secs(120));
        let s = settings(&["--incident-resolve-secs=30"]);
        assert_eq!(s.incident_resolve(), Duration::from_secs(30));
        assert!(Settings::load_from(["notifier", "--alertmanager-repost-secs=0"]).is_err());
    }

    #[test]
    fn production_refuses_placeholder_channel_secrets() {
        for (flag, var) in [
            (
                "--smtp-url=smtps://alerts:CHANGE-ME@mail:465",
                "LOGCANARY_SMTP_URL",
            ),
            (
                "--webhook-urls=https://hooks.slack.com/services/...",
                "LOGCANARY_WEBHOOK_URLS",
            ),
            ("--webhook-secret=change-me", "LOGCANARY_WEBHOOK_SECRET"),
            (
                "--alertmanager-urls=http://am:CHANGE-ME@alertmanager:9093",
                "LOGCANARY_ALERTMANAGER_URLS",
            ),
            (
                "--pagerduty-routing-key=CHANGE-ME",
                "LOGCANARY_PAGERDUTY_ROUTING_KEY",
            ),
            (
                "--pagerduty-url=https://relay:change-me@pd-relay/v2/enqueue",
                "LOGCANARY_PAGERDUTY_URL",
            ),
        ] {
            let mut args = vec![flag, "--alert-emails=ops@example.com"];
            if !flag.starts_with("--smtp-url") {
                args = vec![flag];
            }
            let err = settings(&[&args[..], &["--environment=production"][..]].concat())
                .channels()
                .unwrap_err()
                .to_string();
            assert!(err.contains(var) && err.contains("placeholder"), "{err}");
            assert!(!err.contains("alerts:"), "{err}");
            // Outside production the same value is accepted (a developer's stack).
            assert!(settings(&args).channels().is_ok(), "{flag}");
        }
        let real = settings(&[
            "--environment=production",
            "--webhook-urls=https://hooks.example.com/services/T0/B0/real",
            "--webhook-secret=9f2c1e77a0",
        ]);
        assert_eq!(real.channels().expect("real secrets").webhooks.len(), 1);
    }

    #[test]
    fn the_consumer_flags_default_to_the_notifiers_values() {
        let s = settings(&[]);
        let c = s.consumer_config();
        assert_eq!((c.concurrency, c.prefetch, c.batch_max), (1, 256, 100));
        assert_eq!(c.connection_name, "notifier");
        let s = settings(&["-c", "3"]);
        assert_eq!(s.consumer_config().concurrency, 3);
    }

    #[test]
    fn channels_are_checked_naming_the_variable() {
        let ok = settings(&[
            "--smtp-url",
            "smtp://127.0.0.1:2525",
            "--alert-emails",
            "ops@example.com, Jo <jo@example.com>",
            "--webhook-urls",
            "https://hooks.example.com/services/T/B/secret",
            "--dashboard-url",
            "https://canary.example.com/app",
        ])
        .channels()
        .unwrap();
        assert_eq!(ok.recipients.len(), 2);
        assert_eq!(ok.webhooks.len(), 1);
        assert_eq!(
            ok.dashboard_url.unwrap().as_str(),
            "https://canary.example.com/app/"
        );

        let err = settings(&["--alert-emails", "ops@example.com"])
            .channels()
            .unwrap_err()
            .to_string();
        assert!(err.contains("LOGCANARY_SMTP_URL"), "{err}");
        let err = settings(&["--smtp-url", "smtp://h:25", "--alert-emails", "nope"])
            .channels()
            .unwrap_err()
            .to_string();
        assert!(err.contains("LOGCANARY_ALERT_EMAILS"), "{err}");
        let err = settings(&["--smtp-url", "ftp://h:25", "--alert-emails", "a@b.c"])
            .channels()
            .unwrap_err()
            .to_string();
        assert!(err.contains("LOGCANARY_SMTP_URL"), "{err}");
        let err = settings(&["--webhook-urls", "ftp://x/secret"])
            .channels()
            .unwrap_err()
            .to_string();
        assert!(err.contains("LOGCANARY_WEBHOOK_URLS"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        // Nothing configured is valid: alerts are recorded, not delivered.
        let none = settings(&[]).channels().unwrap();
        assert!(none.smtp_url.is_none() && none.webhooks.is_empty());
    }

    #[test]
    fn only_the_notifications_queue() {
        assert!(Settings::load_from(["notifier", "-Q", "analysis"]).is_err());
        assert_eq!(settings(&[]).queues, vec!["notifications"]);
    }
}
