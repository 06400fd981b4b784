//! Configuration shared by every binary.
//!
//! Each binary parses its settings with `clap`, where every flag is also an environment
//! variable (12-factor). The variable names are the contract in ARCHITECTURE.md; clap
//! names the variable in its error, so a bad value fails fast at start-up with a message
//! like `invalid value 'x' for '--admin-addr <LOGCANARY_ADMIN_ADDR>'`.

use std::net::SocketAddr;

pub use secrecy::{ExposeSecret, SecretString};

/// Connection settings every process needs.
#[derive(clap::Args, Clone, Debug)]
pub struct ServiceArgs {
    /// Postgres connection URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/logcanary"
    )]
    pub database_url: SecretString,

    /// RabbitMQ connection URL.
    #[arg(
        long,
        env = "AMQP_URL",
        value_name = "AMQP_URL",
        hide_env_values = true,
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: SecretString,

    /// Prefix for every exchange and queue name; empty in production. Lets tests and
    /// several stacks share one broker without seeing each other's messages.
    #[arg(
        long,
        env = "LOGCANARY_AMQP_PREFIX",
        value_name = "LOGCANARY_AMQP_PREFIX",
        default_value = ""
    )]
    pub amqp_prefix: String,

    /// Declare quorum queues (replicated across a RabbitMQ cluster, so a node loss loses
    /// no task) instead of classic ones. Every process must agree: a queue's type is fixed
    /// when it is first declared, and a process declaring the other type is refused
    /// (`PRECONDITION_FAILED`). Switching an existing broker means draining and deleting
    /// the queues first.
    #[arg(
        long,
        env = "LOGCANARY_AMQP_QUORUM",
        value_name = "LOGCANARY_AMQP_QUORUM",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub amqp_quorum: bool,

    /// Maximum number of pooled database connections.
    #[arg(long, env = "LOGCANARY_DB_POOL_SIZE", value_name = "LOGCANARY_DB_POOL_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_pool_size: u32,

    /// Log format: `pretty` or `json`; by default `pretty` on a terminal, `json` otherwise.
    #[arg(
        long,
        env = "LOGCANARY_LOG_FORMAT",
        value_name = "LOGCANARY_LOG_FORMAT"
    )]
    pub log_format: Option<crate::telemetry::LogFormat>,
}

impl ServiceArgs {
    /// `DATABASE_URL`. A secret (it can hold a password): log it only through
    /// [`redact_url`].
    pub fn database_url(&self) -> &str {
        self.database_url.expose_secret()
    }

    /// `AMQP_URL`. A secret, like [`ServiceArgs::database_url`].
    pub fn amqp_url(&self) -> &str {
        self.amqp_url.expose_secret()
    }
}

/// How a worker retries a task that failed with a transient error, shared by every
/// consumer binary (the broker holds the message between attempts).
#[derive(clap::Args, Clone, Debug)]
pub struct RetryArgs {
    /// Attempts before a failing task is dead-lettered and marked FAILURE.
    #[arg(long, env = "LOGCANARY_MAX_ATTEMPTS", value_name = "LOGCANARY_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,

    /// First retry delay in milliseconds; doubles per attempt.
    #[arg(
        long,
        env = "LOGCANARY_RETRY_BASE_MS",
        value_name = "LOGCANARY_RETRY_BASE_MS",
        default_value_t = 1000
    )]
    pub retry_base_ms: u64,

    /// Longest retry delay in milliseconds.
    #[arg(
        long,
        env = "LOGCANARY_RETRY_MAX_MS",
        value_name = "LOGCANARY_RETRY_MAX_MS",
        default_value_t = 60_000
    )]
    pub retry_max_ms: u64,
}

impl RetryArgs {
    pub fn base_delay(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.retry_base_ms)
    }

    pub fn max_delay(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.retry_max_ms)
    }
}

/// Parses a listen address; a bare `:port` means every interface (`0.0.0.0:port`).
pub fn parse_listen_addr(raw: &str) -> Result<SocketAddr, String> {
    let full = if raw.starts_with(':') {
        format!("0.0.0.0{raw}")
    } else {
        raw.to_owned()
    };
    full.parse()
        .map_err(|e| format!("expected HOST:PORT or :PORT, got {raw:?} ({e})"))
}

/// Reads a URL-ish secret for logging without leaking the password.
/// The password of a `scheme://user:password@host/...` URL, as written (not decoded).
pub fn url_password(url: &str) -> Option<&str> {
    let scheme_end = url.find("://")?;
    let at = url.rfind('@').filter(|at| *at > scheme_end)?;
    url[scheme_end + 3..at].split_once(':').map(|(_, p)| p)
}

pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_port_listens_everywhere() {
        assert_eq!(
            parse_listen_addr(":9100").unwrap(),
            "0.0.0.0:9100".parse().unwrap()
        );
        assert_eq!(
            parse_listen_addr("127.0.0.1:0").unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert!(parse_listen_addr("nonsense").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/x"),
            "postgres://postgres@127.0.0.1/x"
        );
    }
}
