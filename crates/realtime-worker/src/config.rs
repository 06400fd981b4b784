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

    /// Batches processed at the same time.
    #[arg(short = 'c', long, env = "LOGCANARY_CONCURRENCY", value_name = "LOGCANARY_CONCURRENCY", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,

    /// Unacknowledged messages the broker may hand this worker.
    #[arg(long, env = "LOGCANARY_PREFETCH", value_name = "LOGCANARY_PREFETCH", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: u16,

    /// Most deliveries scored together in one micro-batch.
    #[arg(long, env = "LOGCANARY_BATCH_MAX", value_name = "LOGCANARY_BATCH_MAX", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_max: u32,

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
    pub retry: common::config::RetryArgs,

    #[command(flatten)]
    pub scoring: scoring::config::ScoringArgs,

    /// Past buckets (of LOGCANARY_PATTERN_BUCKET_SECS) each source's spike baseline keeps
    /// in memory.
    #[arg(long, env = "LOGCANARY_REALTIME_HISTORY_BUCKETS", value_name = "LOGCANARY_REALTIME_HISTORY_BUCKETS", default_value_t = 36, value_parser = clap::value_parser!(u32).range(2..=10_000))]
    pub history_buckets: u32,
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

impl Settings {
    pub fn consumer_config(&self) -> mq::ConsumerConfig {
        mq::ConsumerConfig {
            queues: self.queues.clone(),
            prefetch: self.prefetch,
            concurrency: self.concurrency as usize,
            batch_max: self.batch_max as usize,
            batch_wait: Duration::from_millis(self.batch_wait_ms),
            max_attempts: self.retry.max_attempts,
            retry_base_delay: self.retry.base_delay(),
            retry_max_delay: self.retry.max_delay(),
            connection_name: "realtime-worker".into(),
            ..mq::ConsumerConfig::default()
        }
    }
}
