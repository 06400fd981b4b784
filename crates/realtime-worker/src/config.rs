//! Settings of the real-time worker: flags that are also environment variables. The
//! scoring knobs are the analysis worker's (same variables), so both score alike.

use std::{net::SocketAddr, time::Duration};

use common::config::{parse_listen_addr, ServiceArgs};
use scoring::config::PatternSettings;

#[derive(clap::Parser, Clone, Debug)]
#[command(
    name = "realtime-worker",
    version,
    about = "logcanary real-time worker: scores streamed log entries, keeps per-source sliding windows and alerts on critical anomalies, clusters and spikes at once."
)]
pub struct Settings {
    #[command(flatten)]
    pub service: ServiceArgs,

    #[command(flatten)]
    pub patterns: PatternSettings,

    /// Address of the admin server (/livez, /readyz, /metrics).
    #[arg(long, env = "LOGCANARY_ADMIN_ADDR", value_name = "LOGCANARY_ADMIN_ADDR", default_value = ":9102", value_parser = parse_listen_addr)]
    pub admin_addr: SocketAddr,

    /// Queues to consume, comma-separated (like Celery's -Q).
    #[arg(short = 'Q', long, env = "LOGCANARY_QUEUES", value_name = "LOGCANARY_QUEUES", value_delimiter = ',', default_value = "real_time", value_parser = parse_queue)]
    pub queues: Vec<String>,

    /// How long to wait for a micro-batch to fill, in milliseconds (short: this is the
    /// low-latency path).
    #[arg(
        long,
        env = "LOGCANARY_BATCH_WAIT_MS",
        value_name = "LOGCANARY_BATCH_WAIT_MS",
        default_value_t = 5
    )]
    pub batch_wait_ms: u64,

    #[command(flatten)]
    pub consumer: mq::service::ConsumerArgs,

    #[command(flatten)]
    pub scoring: scoring::config::ScoringArgs,

    /// Past buckets (of LOGCANARY_PATTERN_BUCKET_SECS) each source's spike baseline keeps
    /// in memory.
    #[arg(long, env = "LOGCANARY_REALTIME_HISTORY_BUCKETS", value_name = "LOGCANARY_REALTIME_HISTORY_BUCKETS", default_value_t = 36, value_parser = clap::value_parser!(u32).range(2..=10_000))]
    pub history_buckets: u32,

    /// Most sources whose sliding windows are kept in memory; past it the least recently
    /// active source is forgotten (clients name sources, so this bounds memory).
    #[arg(long, env = "LOGCANARY_MAX_SOURCES", value_name = "LOGCANARY_MAX_SOURCES", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub max_sources: u32,

    /// How far ahead of this worker's clock an entry's timestamp may be, in seconds; the
    /// sliding windows take a later one as now plus this, so a line stamped in the far
    /// future cannot hold its source's windows open.
    #[arg(long, env = "LOGCANARY_CLOCK_SKEW_SECS", value_name = "LOGCANARY_CLOCK_SKEW_SECS", default_value_t = 300, value_parser = clap::value_parser!(u32).range(0..=86_400))]
    pub clock_skew_secs: u32,
}

fn parse_queue(raw: &str) -> Result<String, String> {
    let q = raw.trim();
    if q == contracts::queues::REAL_TIME {
        Ok(q.to_owned())
    } else {
        Err(format!(
            "realtime-worker consumes {}; got {q:?}",
            contracts::queues::REAL_TIME
        ))
    }
}

impl mq::service::ConsumerSettings for Settings {
    const CONSUMER_DEFAULTS: mq::service::ConsumerDefaults = mq::service::ConsumerDefaults {
        concurrency: "2",
        prefetch: "64",
        batch_max: "32",
    };
}

impl Settings {
    pub fn consumer_config(&self) -> mq::ConsumerConfig {
        self.consumer.config(
            self.queues.clone(),
            Duration::from_millis(self.batch_wait_ms),
            "realtime-worker",
        )
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use mq::service::ConsumerSettings;

    use super::*;

    #[test]
    fn secrets_never_show_in_help_or_debug() {
        let secrets = test_support::SERVICE_SECRETS;
        let (help, debug) = test_support::with_env(&secrets, || {
            let help = Settings::CONSUMER_DEFAULTS
                .apply(Settings::command())
                .render_long_help()
                .to_string();
            let parsed = Settings::load_from(["realtime-worker"]).expect("settings parse");
            assert_eq!(parsed.service.database_url(), secrets[0].1);
            assert_eq!(parsed.service.amqp_url(), secrets[1].1);
            (help, format!("{parsed:?}"))
        });
        test_support::assert_secrets_hidden(&secrets, "s3cret", &help, &debug);
    }
}
