//! Settings of the analysis worker: flags that are also environment variables.

use std::{net::SocketAddr, time::Duration};

use common::config::{parse_listen_addr, ServiceArgs};

#[derive(clap::Parser, Clone, Debug)]
#[command(
    name = "analysis-worker",
    version,
    about = "logcanary analysis worker: scores log entries taken from RabbitMQ and stores the results."
)]
pub struct Settings {
    #[command(flatten)]
    pub service: ServiceArgs,

    #[command(flatten)]
    pub patterns: scoring::config::PatternSettings,

    /// Address of the admin server (/livez, /readyz, /metrics).
    #[arg(long, env = "LOGCANARY_ADMIN_ADDR", value_name = "LOGCANARY_ADMIN_ADDR", default_value = ":9101", value_parser = parse_listen_addr)]
    pub admin_addr: SocketAddr,

    /// Queues to consume, comma-separated (like Celery's -Q).
    #[arg(short = 'Q', long, env = "LOGCANARY_QUEUES", value_name = "LOGCANARY_QUEUES", value_delimiter = ',', default_value = "analysis,batch_processing", value_parser = parse_queue)]
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

    /// How long to wait for a micro-batch to fill, in milliseconds.
    #[arg(
        long,
        env = "LOGCANARY_BATCH_WAIT_MS",
        value_name = "LOGCANARY_BATCH_WAIT_MS",
        default_value_t = 10
    )]
    pub batch_wait_ms: u64,

    #[command(flatten)]
    pub retry: common::config::RetryArgs,

    #[command(flatten)]
    pub scoring: scoring::config::ScoringArgs,
}

fn parse_queue(raw: &str) -> Result<String, String> {
    let q = raw.trim();
    const HANDLED: [&str; 3] = [
        contracts::queues::ANALYSIS,
        contracts::queues::BATCH_PROCESSING,
        contracts::queues::MAINTENANCE,
    ];
    if HANDLED.contains(&q) {
        Ok(q.to_owned())
    } else {
        Err(format!(
            "analysis-worker consumes {}; got {q:?}",
            HANDLED.join(", ")
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
            connection_name: "analysis-worker".into(),
            ..mq::ConsumerConfig::default()
        }
    }
}
