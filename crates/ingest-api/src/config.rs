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

    /// HMAC secrets as `id:secret,id2:secret2`. Unset: the development key
    /// `default:dev-secret`, refused when LOGCANARY_ENV=production.
    #[arg(long, env = "LOGCANARY_HMAC_KEYS", value_name = "LOGCANARY_HMAC_KEYS", value_parser = crate::auth::parse_keys, hide_env_values = true)]
    pub hmac_keys: Option<crate::auth::HmacKeys>,

    /// Accept the old clients' plain body signature (no replay protection).
    #[arg(long, env = "LOGCANARY_HMAC_LEGACY", value_name = "LOGCANARY_HMAC_LEGACY", default_value_t = true, action = clap::ArgAction::Set)]
    pub hmac_legacy: bool,

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

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "LOGCANARY_MAX_BODY_BYTES", value_name = "LOGCANARY_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// If set, reads (GET) need `Authorization: Bearer <token>`.
    #[arg(
        long,
        env = "LOGCANARY_READ_TOKEN",
        value_name = "LOGCANARY_READ_TOKEN",
        hide_env_values = true,
        value_parser = parse_secret
    )]
    pub read_token: Option<Secret>,

    /// Operator token of the dashboard's feedback buttons (`Authorization: Bearer
    /// <token>`). Unset or empty: the page is read-only (its feedback endpoints answer 403).
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

    /// `production` refuses development defaults such as the dev HMAC key.
    #[arg(
        long,
        env = "LOGCANARY_ENV",
        value_name = "LOGCANARY_ENV",
        default_value = "development"
    )]
    pub environment: String,

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
}

/// A secret setting (a token): its `Debug` shows that it is set, never its value, so
/// logging the settings cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for comparing with what a request presents.
    pub fn expose(&self) -> &str {
        &self.0
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
