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
    about = "logcanary notifier: delivers critical-anomaly and pattern alerts by email (SMTP) and webhooks, with dedup, cooldown and grouping."
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
/// password, webhooks by host, whether a webhook secret is set.
#[derive(Clone, Default)]
pub struct ChannelSettings {
    pub smtp_url: Option<String>,
    pub recipients: Vec<Mailbox>,
    pub from: Option<Mailbox>,
    pub webhooks: Vec<Url>,
    pub webhook_secret: Option<String>,
    pub dashboard_url: Option<Url>,
}

impl std::fmt::Debug for ChannelSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let webhooks: Vec<String> = self
            .webhooks
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
                ("LOGCANARY_SMTP_URL", &self.smtp_url),
                ("LOGCANARY_WEBHOOK_URLS", &self.webhook_urls),
                ("LOGCANARY_WEBHOOK_SECRET", &self.webhook_secret),
            ] {
                if let Some(placeholder) = value
                    .as_ref()
                    .and_then(|v| placeholder_in(v.expose_secret()))
                {
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

    pub fn delivery_policy(&self) -> crate::deliver::RetryPolicy {
        crate::deliver::RetryPolicy {
            attempts: self.delivery_attempts,
            backoff: Duration::from_millis(self.delivery_backoff_ms),
            backoff_max: Duration::from_millis(self.delivery_backoff_max_ms),
        }
    }
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
            (help, format!("{parsed:?}"), format!("{channels:?}"))
        });
        for (var, _) in secrets {
            assert!(help.contains(var), "{var} is not in --help");
        }
        for shown in [&help, &debug, &channels] {
            assert!(!shown.contains("s3cret"), "a secret is shown: {shown}");
        }
        // Flags are secrets too.
        let parsed = settings(&[
            "--smtp-url=smtp://u:flag-s3cret@h:25",
            "--webhook-secret=flag-s3cret",
        ]);
        assert!(!format!("{parsed:?}").contains("s3cret"));
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
