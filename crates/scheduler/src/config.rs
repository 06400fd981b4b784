//! Settings of the scheduler: flags that are also environment variables.

use std::{net::SocketAddr, time::Duration};

use common::config::{parse_listen_addr, ServiceArgs};

#[derive(clap::Parser, Clone, Debug)]
#[command(
    name = "scheduler",
    version,
    about = "logcanary scheduler: fires the periodic tasks stored in Postgres (one leader at a time) and re-publishes tasks that never reached a worker."
)]
pub struct Settings {
    #[command(flatten)]
    pub service: ServiceArgs,

    /// Address of the admin server (/livez, /readyz, /metrics).
    #[arg(long, env = "LOGCANARY_ADMIN_ADDR", value_name = "LOGCANARY_ADMIN_ADDR", default_value = ":9104", value_parser = parse_listen_addr)]
    pub admin_addr: SocketAddr,

    /// How often the scheduler looks for due tasks (and a standby tries to take over), in
    /// milliseconds.
    #[arg(long, env = "LOGCANARY_SCHEDULER_TICK_MS", value_name = "LOGCANARY_SCHEDULER_TICK_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub tick_ms: u64,

    /// How often the relay looks for tasks to re-publish, in milliseconds.
    #[arg(long, env = "LOGCANARY_RELAY_EVERY_MS", value_name = "LOGCANARY_RELAY_EVERY_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub relay_every_ms: u64,

    /// Age under which an unpublished task is left to the process that created it, in
    /// seconds.
    #[arg(long, env = "LOGCANARY_RELAY_GRACE_SECS", value_name = "LOGCANARY_RELAY_GRACE_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub relay_grace_secs: u64,

    /// A published task that no worker started after this many seconds is published
    /// again.
    #[arg(long, env = "LOGCANARY_RELAY_STUCK_SECS", value_name = "LOGCANARY_RELAY_STUCK_SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=30 * 86_400))]
    pub relay_stuck_secs: u64,

    /// Least seconds between two publish attempts of one task.
    #[arg(long, env = "LOGCANARY_RELAY_RETRY_SECS", value_name = "LOGCANARY_RELAY_RETRY_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub relay_retry_secs: u64,

    /// Publish attempts of one task before it is marked FAILURE.
    #[arg(long, env = "LOGCANARY_RELAY_MAX_ATTEMPTS", value_name = "LOGCANARY_RELAY_MAX_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub relay_max_attempts: i32,
}

impl Settings {
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms)
    }

    pub fn relay_every(&self) -> Duration {
        Duration::from_millis(self.relay_every_ms)
    }

    pub fn relay_policy(&self) -> db::relay::RelayPolicy {
        let secs = |s: u64| chrono::Duration::seconds(s as i64);
        db::relay::RelayPolicy {
            grace: secs(self.relay_grace_secs),
            stuck_after: secs(self.relay_stuck_secs),
            retry_every: secs(self.relay_retry_secs),
            max_attempts: self.relay_max_attempts,
            ..db::relay::RelayPolicy::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn secrets_never_show_in_help_or_debug() {
        let secrets = test_support::SERVICE_SECRETS;
        let (help, debug) = test_support::with_env(&secrets, || {
            let help = Settings::command().render_long_help().to_string();
            let parsed =
                <Settings as clap::Parser>::try_parse_from(["scheduler"]).expect("settings parse");
            assert_eq!(parsed.service.database_url(), secrets[0].1);
            assert_eq!(parsed.service.amqp_url(), secrets[1].1);
            (help, format!("{parsed:?}"))
        });
        test_support::assert_secrets_hidden(&secrets, "s3cret", &help, &debug);
    }
}
