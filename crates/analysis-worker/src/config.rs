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
    pub patterns: crate::patterns::PatternSettings,

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
    pub scoring: ScoringArgs,
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

/// Detector settings shared by every worker that scores (analysis-worker and
/// realtime-worker flatten this, so both read the same variables with the same defaults).
#[derive(clap::Args, Clone, Debug)]
pub struct ScoringArgs {
    /// Score at or above which an entry is flagged anomalous (0..=1); the detector's
    /// default when unset.
    #[arg(long, env = "LOGCANARY_ANOMALY_THRESHOLD", value_name = "LOGCANARY_ANOMALY_THRESHOLD", value_parser = parse_unit)]
    pub anomaly_threshold: Option<f64>,

    /// Lines the detector learns from before it flags anything (shared by all replicas:
    /// lines counted in the `templates` table count); the detector's default when unset.
    #[arg(
        long,
        env = "LOGCANARY_WARMUP_LINES",
        value_name = "LOGCANARY_WARMUP_LINES"
    )]
    pub warmup_lines: Option<u64>,

    /// Severity weight (0..=1; ERROR is 0.8) a template can get for reading like a failure,
    /// whatever its log level; 0 judges lines by their level only. The detector's default
    /// (0.8) when unset.
    #[arg(long, env = "LOGCANARY_MEANING_SEVERITY_MAX", value_name = "LOGCANARY_MEANING_SEVERITY_MAX", value_parser = parse_unit)]
    pub meaning_severity_max: Option<f64>,

    /// How stale this replica's copy of the shared templates and labels may get before a
    /// batch pulls the changes, in milliseconds (0: before every batch).
    #[arg(
        long,
        env = "LOGCANARY_TEMPLATE_REFRESH_MS",
        value_name = "LOGCANARY_TEMPLATE_REFRESH_MS",
        default_value_t = 5000
    )]
    pub template_refresh_ms: u64,
}

impl ScoringArgs {
    /// The detector's configuration: its defaults with this worker's overrides.
    pub fn scorer_config(&self) -> detector::scorer::ScorerConfig {
        let defaults = detector::scorer::ScorerConfig::default();
        detector::scorer::ScorerConfig {
            threshold: self
                .anomaly_threshold
                .map_or(defaults.threshold, |t| t as f32),
            warmup_lines: self.warmup_lines.unwrap_or(defaults.warmup_lines),
            meaning_severity_max: self
                .meaning_severity_max
                .map_or(defaults.meaning_severity_max, |m| m as f32),
            ..defaults
        }
    }

    pub fn template_refresh(&self) -> Duration {
        Duration::from_millis(self.template_refresh_ms)
    }
}

fn parse_unit(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("expected a number from 0 to 1, got {raw:?}")),
    }
}
