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

    /// How long to wait for a micro-batch to fill, in milliseconds.
    #[arg(
        long,
        env = "LOGCANARY_BATCH_WAIT_MS",
        value_name = "LOGCANARY_BATCH_WAIT_MS",
        default_value_t = 10
    )]
    pub batch_wait_ms: u64,

    #[command(flatten)]
    pub consumer: mq::service::ConsumerArgs,

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

impl mq::service::ConsumerSettings for Settings {
    const CONSUMER_DEFAULTS: mq::service::ConsumerDefaults = mq::service::ConsumerDefaults {
        concurrency: "2",
        prefetch: "1024",
        batch_max: "256",
    };
}

impl Settings {
    pub fn consumer_config(&self) -> mq::ConsumerConfig {
        self.consumer.config(
            self.queues.clone(),
            Duration::from_millis(self.batch_wait_ms),
            "analysis-worker",
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
            let parsed = Settings::load_from(["analysis-worker"]).expect("settings parse");
            assert_eq!(parsed.service.database_url(), secrets[0].1);
            assert_eq!(parsed.service.amqp_url(), secrets[1].1);
            (help, format!("{parsed:?}"))
        });
        test_support::assert_secrets_hidden(&secrets, "s3cret", &help, &debug);
    }
}
