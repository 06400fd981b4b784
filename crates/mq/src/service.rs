//! What every consuming binary (analysis-worker, realtime-worker, notifier) shares at
//! start-up: the consumer flags ([`ConsumerArgs`], flattened into each binary's clap
//! settings with that binary's defaults) and [`serve`], which starts the admin server,
//! consumes until shutdown and stops the admin server.

use std::{
    net::SocketAddr,
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use anyhow::Context;
use common::admin::{AdminServer, CheckResult, ReadinessFn};
use tokio_util::sync::CancellationToken;

use crate::{run_consumer, ConsumerConfig, Handler, Topology};

/// Consumer flags; also environment variables. Each binary sets its own defaults with
/// [`ConsumerDefaults::apply`] (shown by `--help`).
#[derive(clap::Args, Clone, Debug)]
pub struct ConsumerArgs {
    /// Batches processed at the same time.
    #[arg(short = 'c', long, env = "LOGCANARY_CONCURRENCY", value_name = "LOGCANARY_CONCURRENCY", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,

    /// Unacknowledged messages the broker may hand this worker.
    #[arg(long, env = "LOGCANARY_PREFETCH", value_name = "LOGCANARY_PREFETCH", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: u16,

    /// Most deliveries handled together in one batch.
    #[arg(long, env = "LOGCANARY_BATCH_MAX", value_name = "LOGCANARY_BATCH_MAX", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_max: u32,

    #[command(flatten)]
    pub retry: common::config::RetryArgs,
}

/// A binary's defaults for [`ConsumerArgs`] (strings, as clap keeps defaults).
#[derive(Clone, Copy, Debug)]
pub struct ConsumerDefaults {
    pub concurrency: &'static str,
    pub prefetch: &'static str,
    pub batch_max: &'static str,
}

impl ConsumerDefaults {
    /// The command with these defaults in place of [`ConsumerArgs`]'s own.
    pub fn apply(self, command: clap::Command) -> clap::Command {
        command
            .mut_arg("concurrency", |a| a.default_value(self.concurrency))
            .mut_arg("prefetch", |a| a.default_value(self.prefetch))
            .mut_arg("batch_max", |a| a.default_value(self.batch_max))
    }

    /// Parses the process's arguments and environment into `T` with these defaults; on
    /// bad input prints clap's message and exits, as `T::parse()` does.
    pub fn parse<T: clap::Parser>(self) -> T {
        let matches = self.apply(T::command()).get_matches();
        T::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    /// [`ConsumerDefaults::parse`] over given arguments (tests).
    ///
    /// # Errors
    ///
    /// clap's error for arguments that do not parse.
    pub fn try_parse_from<T: clap::Parser, I, S>(self, args: I) -> Result<T, clap::Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString> + Clone,
    {
        let matches = self.apply(T::command()).try_get_matches_from(args)?;
        T::from_arg_matches(&matches)
    }
}

/// Settings of a consuming binary: its clap settings with its own consumer defaults.
pub trait ConsumerSettings: clap::Parser {
    /// This binary's defaults of the consumer flags.
    const CONSUMER_DEFAULTS: ConsumerDefaults;

    /// The settings from the process's arguments and environment (exits with clap's
    /// message on bad input).
    fn load() -> Self {
        Self::CONSUMER_DEFAULTS.parse()
    }

    /// The settings from `args` (and the environment).
    ///
    /// # Errors
    ///
    /// clap's error for arguments that do not parse.
    fn load_from<I, S>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString> + Clone,
    {
        Self::CONSUMER_DEFAULTS.try_parse_from(args)
    }
}

impl ConsumerArgs {
    /// The consumer's configuration for `queues`, waiting up to `batch_wait` for a batch
    /// to fill; `connection_name` names the broker connection (the binary).
    pub fn config(
        &self,
        queues: Vec<String>,
        batch_wait: Duration,
        connection_name: &str,
    ) -> ConsumerConfig {
        ConsumerConfig {
            queues,
            prefetch: self.prefetch,
            concurrency: self.concurrency as usize,
            batch_max: self.batch_max as usize,
            batch_wait,
            max_attempts: self.retry.max_attempts,
            retry_base_delay: self.retry.base_delay(),
            retry_max_delay: self.retry.max_delay(),
            connection_name: connection_name.into(),
            ..ConsumerConfig::default()
        }
    }
}

/// The readiness check of a consumer: `connected` is [`ConsumerConfig::connected`].
pub fn broker_check(connected: &AtomicBool) -> CheckResult {
    (
        "broker",
        if connected.load(std::sync::atomic::Ordering::Relaxed) {
            Ok(())
        } else {
            Err("not consuming".to_owned())
        },
    )
}

/// A consuming binary, ready to run.
pub struct Service<'a> {
    /// Its name in logs (`"Analysis worker"`).
    pub name: &'static str,
    pub admin_addr: SocketAddr,
    pub readiness: ReadinessFn,
    pub amqp_url: &'a str,
    pub topology: Topology,
    pub consumer: ConsumerConfig,
}

impl<'a> Service<'a> {
    /// A service on the broker and queue-name prefix of `service` (`AMQP_URL`,
    /// `LOGCANARY_AMQP_PREFIX`, quorum queues).
    pub fn new(
        name: &'static str,
        service: &'a common::config::ServiceArgs,
        admin_addr: SocketAddr,
        readiness: ReadinessFn,
        consumer: ConsumerConfig,
    ) -> Self {
        Self {
            name,
            admin_addr,
            readiness,
            amqp_url: service.amqp_url(),
            topology: Topology::new(service.amqp_prefix.clone())
                .with_quorum_queues(service.amqp_quorum),
            consumer,
        }
    }
}

/// Starts the admin server (`/livez`, `/readyz`, `/metrics`), consumes with `handler`
/// until `shutdown` fires (then drains in-flight batches), and stops the admin server.
///
/// # Errors
///
/// The admin address cannot be bound (naming `LOGCANARY_ADMIN_ADDR`), or consuming
/// failed for good (an invalid configuration).
pub async fn serve<H: Handler>(
    service: Service<'_>,
    handler: Arc<H>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Service {
        name,
        admin_addr,
        readiness,
        amqp_url,
        topology,
        consumer,
    } = service;
    let admin = AdminServer::bind(admin_addr, readiness)?;
    tracing::info!(queues = ?consumer.queues, admin_port = admin.addr.port(), "{name} starting.");
    let result = run_consumer(amqp_url, topology, consumer, handler, shutdown).await;
    admin.stop().await;
    result.context("consuming tasks")?;
    tracing::info!("{name} stopped cleanly.");
    Ok(())
}
