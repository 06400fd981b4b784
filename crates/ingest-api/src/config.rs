//! Settings of the ingest API: flags that are also environment variables.

use std::{fmt, net::SocketAddr, time::Duration};

use common::config::{parse_listen_addr, ServiceArgs};

/// The variable of the dashboard's operator token ([`Settings::dashboard_token`]).
pub const DASHBOARD_TOKEN_ENV: &str = "LOGCANARY_DASHBOARD_TOKEN";

#[derive(clap::Parser, Clone, Debug)]
#[command(
    name = "ingest-api",
    version,
    about = "logcanary ingest API: signed log entries in, analysis tasks out."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(clap::Subcommand, Clone, Debug)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply database migrations (under an advisory lock) and create log partitions, then exit.
    Migrate,
    /// Print the OpenAPI document.
    Openapi,
    /// Make an API token for a log shipper, store its SHA-256 in `api_tokens` and print
    /// the token (shown this once). Creating a token again under a name replaces it.
    CreateToken {
        /// Name of the token (the shipper or team it is for), shown in logs and errors.
        #[arg(long)]
        name: String,
        /// Scopes, `+`-separated (ingest, read, operate, admin).
        #[arg(long, default_value = "ingest")]
        scopes: String,
        /// Store nothing: print the token and the `LOGCANARY_API_TOKENS` entry that
        /// holds its digest, for configuration instead of the database.
        #[arg(long)]
        no_store: bool,
    },
    /// Revoke the stored API token of this name (replicas stop accepting it within 10 s).
    RevokeToken {
        #[arg(long)]
        name: String,
    },
}

#[derive(clap::Args, Clone, Debug)]
pub struct Settings {
    #[command(flatten)]
    pub service: ServiceArgs,

    /// Address of the public API.
    #[arg(long, env = "LOGCANARY_HTTP_ADDR", value_name = "LOGCANARY_HTTP_ADDR", default_value = "0.0.0.0:8000", value_parser = parse_listen_addr)]
    pub http_addr: SocketAddr,

    /// Address of the admin server (/livez, /readyz, /metrics).
    #[arg(long, env = "LOGCANARY_ADMIN_ADDR", value_name = "LOGCANARY_ADMIN_ADDR", default_value = ":9100", value_parser = parse_listen_addr)]
    pub admin_addr: SocketAddr,

    /// HMAC keys as `id@scope+scope:secret,...` (scopes: ingest, read, operate, admin;
    /// `id:secret` alone gets `ingest`). Unset: the development key `default:dev-secret`
    /// with every scope, refused when LOGCANARY_ENV=production.
    #[arg(long, env = "LOGCANARY_HMAC_KEYS", value_name = "LOGCANARY_HMAC_KEYS", value_parser = crate::auth::parse_keys, hide_env_values = true)]
    pub hmac_keys: Option<crate::auth::HmacKeys>,

    /// API tokens of the log shippers (OTLP, Loki, Elasticsearch bulk) as
    /// `name@scope+scope:<sha256 hex>,...` (`name:<hex>` gets `ingest`): digests only,
    /// made by `ingest-api create-token --no-store`. Tokens in `api_tokens` count too.
    #[arg(long, env = "LOGCANARY_API_TOKENS", value_name = "LOGCANARY_API_TOKENS", value_parser = crate::tokens::parse_tokens, hide_env_values = true)]
    pub api_tokens: Option<crate::tokens::ConfiguredTokens>,

    /// Accept the old clients' plain body signature (no replay protection) on the old
    /// API's POST endpoints. Default: on in development, off in production.
    #[arg(long, env = "LOGCANARY_HMAC_LEGACY", value_name = "LOGCANARY_HMAC_LEGACY", action = clap::ArgAction::Set)]
    pub hmac_legacy: Option<bool>,

    /// Accepted clock difference for timestamped signatures, in seconds.
    #[arg(
        long,
        env = "LOGCANARY_HMAC_TOLERANCE_SECS",
        value_name = "LOGCANARY_HMAC_TOLERANCE_SECS",
        default_value_t = 300
    )]
    pub hmac_tolerance_secs: u64,

    /// Where used timestamped signatures are remembered: `postgres` (shared by every
    /// replica, so a replay to another replica is refused too) or `memory` (this process
    /// only; enough for a single replica, one database statement less per request).
    #[arg(
        long,
        env = "LOGCANARY_REPLAY_GUARD",
        value_name = "LOGCANARY_REPLAY_GUARD",
        value_enum,
        default_value_t = crate::auth::ReplayGuard::Postgres
    )]
    pub replay_guard: crate::auth::ReplayGuard,

    /// Largest accepted body of a batch (`POST /api/batch-analysis/`), in bytes. The other
    /// endpoints have smaller limits of their own (API.md).
    #[arg(long, env = "LOGCANARY_MAX_BODY_BYTES", value_name = "LOGCANARY_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Request-body bytes all requests together may hold while they are read; a request
    /// past it answers 503 with `Retry-After`.
    #[arg(long, env = "LOGCANARY_MAX_INFLIGHT_BODY_BYTES", value_name = "LOGCANARY_MAX_INFLIGHT_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_inflight_body_bytes: usize,

    /// Seconds a request body may take to arrive, whole; slower ones answer 408.
    #[arg(
        long,
        env = "LOGCANARY_BODY_TIMEOUT_SECS",
        value_name = "LOGCANARY_BODY_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub body_timeout_secs: u64,

    /// Bearer token with the `read` scope. Set, reads (GET) need a credential in every
    /// environment; in production they always do.
    #[arg(
        long,
        env = "LOGCANARY_READ_TOKEN",
        value_name = "LOGCANARY_READ_TOKEN",
        hide_env_values = true,
        value_parser = parse_secret
    )]
    pub read_token: Option<Secret>,

    /// Operator token of the dashboard (`Authorization: Bearer <token>`), with the `read`
    /// and `operate` scopes: the page sends it on every call. Unset or empty: the page's
    /// feedback endpoints answer 403.
    #[arg(
        long,
        env = DASHBOARD_TOKEN_ENV,
        value_name = "LOGCANARY_DASHBOARD_TOKEN",
        hide_env_values = true,
        value_parser = parse_secret
    )]
    pub dashboard_token: Option<Secret>,

    /// Score at or above which the analysis workers flag an entry (0..=1); give ingest-api
    /// the workers' value. The review queue (`GET /api/review/`) asks first about the
    /// templates whose scores sit closest to it.
    #[arg(long, env = "LOGCANARY_ANOMALY_THRESHOLD", value_name = "LOGCANARY_ANOMALY_THRESHOLD", default_value_t = 0.6, value_parser = parse_unit)]
    pub anomaly_threshold: f64,

    /// HTTP worker threads (default: one per core).
    #[arg(
        long,
        env = "LOGCANARY_HTTP_WORKERS",
        value_name = "LOGCANARY_HTTP_WORKERS"
    )]
    pub http_workers: Option<usize>,

    /// Concurrent committers of the write path.
    #[arg(
        long,
        env = "LOGCANARY_INGEST_COMMITTERS",
        value_name = "LOGCANARY_INGEST_COMMITTERS",
        default_value_t = 4
    )]
    pub committers: usize,

    /// `production` requires a credential on every read and refuses development defaults,
    /// weak secrets and the old body-only signatures (unless LOGCANARY_HMAC_LEGACY=true).
    #[arg(
        long,
        env = "LOGCANARY_ENV",
        value_name = "LOGCANARY_ENV",
        value_enum,
        default_value_t = Environment::Development
    )]
    pub environment: Environment,

    /// Database connections of the reads (every GET), a pool apart from the writes'
    /// (LOGCANARY_DB_POOL_SIZE), so slow reads cannot take the connections ingest needs.
    #[arg(long, env = "LOGCANARY_READ_POOL_SIZE", value_name = "LOGCANARY_READ_POOL_SIZE", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub read_pool_size: u32,

    /// Time limit of one read statement, in milliseconds (0: none); a read cancelled by it
    /// answers 503.
    #[arg(
        long,
        env = "LOGCANARY_READ_STATEMENT_TIMEOUT_MS",
        value_name = "LOGCANARY_READ_STATEMENT_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub read_statement_timeout_ms: u64,

    /// Time limit of one statement of the write pool (ingest, signatures, feedback,
    /// periodic-task changes), in milliseconds (0: none).
    #[arg(
        long,
        env = "LOGCANARY_WRITE_STATEMENT_TIMEOUT_MS",
        value_name = "LOGCANARY_WRITE_STATEMENT_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub write_statement_timeout_ms: u64,
}

/// Where the API runs (`LOGCANARY_ENV`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Environment {
    /// Reads open unless a read token is set, development key allowed.
    Development,
    /// Every read needs a credential; secrets must be strong.
    Production,
}

impl Settings {
    pub fn hmac_tolerance(&self) -> Duration {
        Duration::from_secs(self.hmac_tolerance_secs)
    }

    pub fn read_statement_timeout(&self) -> Duration {
        Duration::from_millis(self.read_statement_timeout_ms)
    }

    pub fn write_statement_timeout(&self) -> Duration {
        Duration::from_millis(self.write_statement_timeout_ms)
    }

    pub fn production(&self) -> bool {
        self.environment == Environment::Production
    }

    /// Whether the old body-only signatures are accepted on the old API's POST endpoints.
    pub fn legacy_signatures(&self) -> bool {
        self.hmac_legacy.unwrap_or(!self.production())
    }

    /// The configured HMAC keys, or the development key with every scope. In production
    /// the keys must be set and every secret strong (see [`weak_secret`]); errors name
    /// the key id and the variable, never the secret.
    pub fn checked_keys(&self) -> Result<Vec<crate::auth::HmacKey>, String> {
        use crate::auth::{HmacKey, Scopes};
        let production = self.production();
        let keys = match &self.hmac_keys {
            Some(keys) => keys.0.clone(),
            None if production => {
                return Err("LOGCANARY_HMAC_KEYS must be set when LOGCANARY_ENV=production".into())
            }
            None => {
                tracing::warn!(
                    "LOGCANARY_HMAC_KEYS is not set; using the development key default:dev-secret with every scope."
                );
                vec![HmacKey::new("default", "dev-secret", Scopes::all())]
            }
        };
        if production {
            for key in &keys {
                if let Some(problem) =
                    weak_secret(secrecy::ExposeSecret::expose_secret(&key.secret))
                {
                    return Err(format!(
                        "LOGCANARY_HMAC_KEYS: the secret of key {:?} {problem}; LOGCANARY_ENV=production needs strong secrets",
                        key.id
                    ));
                }
            }
            for (name, url) in [
                ("DATABASE_URL", self.service.database_url()),
                ("AMQP_URL", self.service.amqp_url()),
            ] {
                if common::config::url_password(url).is_some_and(is_placeholder) {
                    return Err(format!(
                        "{name} has a placeholder password; LOGCANARY_ENV=production needs real secrets"
                    ));
                }
            }
            let dev = crate::tokens::digest(crate::tokens::DEV_TOKEN);
            if let Some(t) = self
                .api_tokens
                .iter()
                .flat_map(|t| &t.0)
                .find(|t| t.sha256 == dev)
            {
                return Err(format!(
                    "LOGCANARY_API_TOKENS: token {:?} is the development token of make run; LOGCANARY_ENV=production needs tokens from ingest-api create-token",
                    t.name
                ));
            }
            for (name, token) in [
                ("LOGCANARY_READ_TOKEN", &self.read_token),
                (DASHBOARD_TOKEN_ENV, &self.dashboard_token),
            ] {
                if let Some(problem) = token.as_ref().and_then(|t| weak_secret(t.expose())) {
                    return Err(format!(
                        "{name} {problem}; LOGCANARY_ENV=production needs strong secrets"
                    ));
                }
            }
        }
        Ok(keys)
    }
}

/// Shortest secret accepted in production, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// Why `secret` is too weak for production, if it is: shorter than [`MIN_SECRET_BYTES`],
/// a known placeholder (`CHANGE-ME`, `dev-secret`, ...) or one character repeated.
pub fn weak_secret(secret: &str) -> Option<&'static str> {
    if is_placeholder(secret) {
        return Some("is a placeholder");
    }
    if secret.len() < MIN_SECRET_BYTES {
        Some("is shorter than 32 bytes")
    } else if secret.chars().all(|c| secret.starts_with(c)) {
        Some("is one character repeated")
    } else {
        None
    }
}

/// Whether `secret` is (or contains) a known placeholder such as `CHANGE-ME`. Checked on
/// the passwords of `DATABASE_URL` and `AMQP_URL` too, which may be shorter than 32 bytes.
pub fn is_placeholder(secret: &str) -> bool {
    const PLACEHOLDERS: [&str; 10] = [
        "change-me",
        "changeme",
        "change_me",
        "replace-me",
        "replaceme",
        "placeholder",
        "dev-secret",
        "example",
        "your-secret",
        "secret-here",
    ];
    let lower = secret.to_ascii_lowercase();
    PLACEHOLDERS.iter().any(|p| lower.contains(p))
}

/// A secret setting (a token), held as a [`secrecy::SecretString`]: its `Debug` shows
/// that it is set, never its value, so logging the settings cannot leak it.
#[derive(Clone)]
pub struct Secret(secrecy::SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(secrecy::SecretString::from(value.into()))
    }

    /// The value, for comparing with what a request presents.
    pub fn expose(&self) -> &str {
        secrecy::ExposeSecret::expose_secret(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

fn parse_secret(raw: &str) -> Result<Secret, String> {
    Ok(Secret::new(raw))
}

/// A number from 0 to 1.
fn parse_unit(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("expected a number from 0 to 1, got {raw:?}")),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn tokens_are_read_from_the_flags_and_never_shown() {
        let cli = Cli::try_parse_from([
            "ingest-api",
            "--dashboard-token=operator-s3cret",
            "--read-token=reader-s3cret",
            "--hmac-keys=k1:hmac-s3cret",
        ])
        .expect("settings parse");
        let settings = &cli.settings;
        assert_eq!(
            settings.dashboard_token.as_ref().map(Secret::expose),
            Some("operator-s3cret")
        );
        assert_eq!(
            settings.read_token.as_ref().map(Secret::expose),
            Some("reader-s3cret")
        );
        let debug = format!("{cli:?}");
        for secret in ["operator-s3cret", "reader-s3cret", "hmac-s3cret"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
    }

    #[test]
    fn secret_variables_hide_their_values_in_help() {
        let command = Cli::command();
        for id in ["dashboard_token", "read_token", "hmac_keys"] {
            let arg = command
                .get_arguments()
                .find(|a| a.get_id() == id)
                .unwrap_or_else(|| panic!("no argument {id}"));
            assert!(arg.is_hide_env_values_set(), "{id}");
        }
        let dashboard = command
            .get_arguments()
            .find(|a| a.get_id() == "dashboard_token")
            .and_then(|a| a.get_env())
            .and_then(|e| e.to_str());
        assert_eq!(dashboard, Some(DASHBOARD_TOKEN_ENV));
    }
}
