//! Broker object names and their declaration.
//!
//! Layout, for each logical queue `q` (see `contracts::queues`) and prefix `p`:
//!
//! - `{p}logcanary.tasks`: durable direct exchange; `{p}q` is bound with routing key `q`.
//! - `{p}q`: durable work queue.
//! - `{p}q.retry.{level}` for each of [`RETRY_LEVELS`]: durable, `x-message-ttl` = level,
//!   dead-lettering expired messages back to `{p}q` through the default exchange. One queue
//!   per delay because RabbitMQ only expires messages at a queue's head: a short delay in a
//!   shared queue would wait behind a long one.
//! - `{p}q.dlq`: durable dead-letter queue, read by operators.

use std::time::Duration;

use lapin::{
    options::{
        ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
        QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable, LongString, ShortString},
    Channel, ExchangeKind,
};

use crate::MqError;

/// Delays a retried message can wait. A requested delay is rounded up to the next level
/// (and capped at the last), so the set of retry queues does not depend on any process's
/// configuration and declaring them never conflicts.
pub const RETRY_LEVELS: [Duration; 14] = [
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(120),
    Duration::from_secs(300),
    Duration::from_secs(600),
    Duration::from_secs(1800),
    Duration::from_secs(3600),
];

/// Names of everything on the broker. `prefix` lets each test have its own names (`""` in
/// production).
#[derive(Clone, Debug)]
pub struct Topology {
    pub prefix: String,
    /// Declare quorum queues (production clusters) instead of classic ones (development).
    /// A queue's type cannot change once declared: declaring with the other type fails.
    pub quorum: bool,
}

impl Topology {
    /// Classic queues with names starting with `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            quorum: false,
        }
    }

    /// Same names, quorum queues.
    #[must_use]
    pub fn with_quorum_queues(mut self, quorum: bool) -> Self {
        self.quorum = quorum;
        self
    }

    /// `"{prefix}logcanary.tasks"`.
    pub fn exchange(&self) -> String {
        format!("{}{}", self.prefix, contracts::EXCHANGE)
    }

    /// `"{prefix}{queue}"`, e.g. `"analysis"`.
    pub fn queue(&self, queue: &str) -> String {
        format!("{}{queue}", self.prefix)
    }

    /// The retry queue that holds a message of `queue` for `delay` rounded up to a
    /// [`RETRY_LEVELS`] level, e.g. `"analysis.retry.1s"`.
    pub fn retry_queue(&self, queue: &str, delay: Duration) -> String {
        format!(
            "{}{queue}.retry.{}",
            self.prefix,
            level_label(retry_level(delay))
        )
    }

    /// `"{prefix}{queue}.dlq"`.
    pub fn dead_letter_queue(&self, queue: &str) -> String {
        format!("{}{queue}.dlq", self.prefix)
    }

    /// Every queue name of this topology: work, retry and dead-letter queues.
    pub fn all_queue_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for queue in contracts::queues::ALL {
            names.push(self.queue(queue));
            for level in RETRY_LEVELS {
                names.push(self.retry_queue(queue, level));
            }
            names.push(self.dead_letter_queue(queue));
        }
        names
    }

    /// Declares the exchange, the five work queues and their bindings, and their retry and
    /// dead-letter queues, all durable. Idempotent.
    ///
    /// # Errors
    ///
    /// [`MqError::Amqp`] on a broker error. A queue that exists with other arguments (for
    /// example classic vs quorum) fails with `PRECONDITION_FAILED`, which also closes
    /// `channel`.
    pub async fn declare(&self, channel: &Channel) -> Result<(), MqError> {
        let exchange = self.exchange();
        channel
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(MqError::amqp("exchange.declare"))?;

        for queue in contracts::queues::ALL {
            let work = self.queue(queue);
            self.declare_queue(channel, &work, self.base_arguments())
                .await?;
            channel
                .queue_bind(
                    work.as_str().into(),
                    exchange.as_str().into(),
                    queue.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(MqError::amqp("queue.bind"))?;

            for level in RETRY_LEVELS {
                let mut arguments = self.base_arguments();
                arguments.insert(
                    "x-message-ttl".into(),
                    AMQPValue::LongLongInt(millis(level)),
                );
                arguments.insert(
                    "x-dead-letter-exchange".into(),
                    AMQPValue::LongString(LongString::from("")),
                );
                arguments.insert(
                    "x-dead-letter-routing-key".into(),
                    AMQPValue::LongString(LongString::from(work.as_str())),
                );
                self.declare_queue(channel, &self.retry_queue(queue, level), arguments)
                    .await?;
            }

            self.declare_queue(
                channel,
                &self.dead_letter_queue(queue),
                self.base_arguments(),
            )
            .await?;
        }
        Ok(())
    }

    /// Deletes every queue and the exchange of this topology, messages included. Meant for
    /// tests with their own prefix; never call it on the production names.
    ///
    /// # Errors
    ///
    /// [`MqError::Amqp`] on a broker error.
    pub async fn delete(&self, channel: &Channel) -> Result<(), MqError> {
        for name in self.all_queue_names() {
            channel
                .queue_delete(name.into(), QueueDeleteOptions::default())
                .await
                .map_err(MqError::amqp("queue.delete"))?;
        }
        channel
            .exchange_delete(self.exchange().into(), ExchangeDeleteOptions::default())
            .await
            .map_err(MqError::amqp("exchange.delete"))?;
        Ok(())
    }

    fn base_arguments(&self) -> FieldTable {
        let mut arguments = FieldTable::default();
        if self.quorum {
            arguments.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
        }
        arguments
    }

    async fn declare_queue(
        &self,
        channel: &Channel,
        name: &str,
        arguments: FieldTable,
    ) -> Result<(), MqError> {
        channel
            .queue_declare(
                ShortString::from(name),
                QueueDeclareOptions::durable(),
                arguments,
            )
            .await
            .map_err(MqError::amqp("queue.declare"))?;
        Ok(())
    }
}

/// [`Topology::delete`] as a free function.
///
/// # Errors
///
/// As [`Topology::delete`].
pub async fn delete_topology(topology: &Topology, channel: &Channel) -> Result<(), MqError> {
    topology.delete(channel).await
}

/// Number of ready messages (not counting unacknowledged ones) in the queue with the full
/// name `queue_full_name`, via a passive declare.
///
/// # Errors
///
/// [`MqError::Amqp`]; a missing queue is `NOT_FOUND` and closes `channel`.
pub async fn queue_depth(channel: &Channel, queue_full_name: &str) -> Result<u32, MqError> {
    let queue = channel
        .queue_declare(
            queue_full_name.into(),
            QueueDeclareOptions::durable().passive(),
            FieldTable::default(),
        )
        .await
        .map_err(MqError::amqp("queue.declare passive"))?;
    Ok(queue.message_count())
}

/// What one logical queue holds right now: the broker's own counts, read with passive
/// declares (no management plugin needed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueDepth {
    /// The logical queue, e.g. `"analysis"` (without the prefix).
    pub queue: &'static str,
    /// Messages waiting in the work queue (not counting those delivered but unacked).
    pub ready: u32,
    /// Consumers attached to the work queue: worker processes times their channels.
    pub consumers: u32,
    /// Messages waiting out a retry delay, over all of the queue's retry levels.
    pub retrying: u32,
    /// Messages in the queue's dead-letter queue, waiting for an operator.
    pub dead_lettered: u32,
}

impl Topology {
    /// [`QueueDepth`] of every logical queue, in `contracts::queues::ALL` order. All the
    /// passive declares go out at once on `channel` (one round trip in effect).
    ///
    /// # Errors
    ///
    /// [`MqError::Amqp`]; a queue that was never declared is `NOT_FOUND`, which closes
    /// `channel`, so use a channel of its own.
    pub async fn depths(&self, channel: &Channel) -> Result<Vec<QueueDepth>, MqError> {
        async fn counts(channel: &Channel, name: String) -> Result<(u32, u32), MqError> {
            let queue = channel
                .queue_declare(
                    name.as_str().into(),
                    QueueDeclareOptions::durable().passive(),
                    FieldTable::default(),
                )
                .await
                .map_err(MqError::amqp("queue.declare passive"))?;
            Ok((queue.message_count(), queue.consumer_count()))
        }
        let per_queue = contracts::queues::ALL.iter().map(|queue| async move {
            let work = counts(channel, self.queue(queue));
            let retries = futures::future::try_join_all(
                RETRY_LEVELS
                    .iter()
                    .map(|level| counts(channel, self.retry_queue(queue, *level))),
            );
            let dead = counts(channel, self.dead_letter_queue(queue));
            let ((ready, consumers), retries, (dead_lettered, _)) =
                futures::try_join!(work, retries, dead)?;
            Ok::<_, MqError>(QueueDepth {
                queue,
                ready,
                consumers,
                retrying: retries.iter().map(|(n, _)| n).sum(),
                dead_lettered,
            })
        });
        futures::future::try_join_all(per_queue).await
    }
}

/// The smallest level at least `delay`, or the largest level.
pub(crate) fn retry_level(delay: Duration) -> Duration {
    RETRY_LEVELS
        .iter()
        .copied()
        .find(|level| *level >= delay)
        .unwrap_or(RETRY_LEVELS[RETRY_LEVELS.len() - 1])
}

fn level_label(level: Duration) -> String {
    let ms = level.as_millis();
    if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix() {
        let t = Topology::new("t1.");
        assert_eq!(t.exchange(), "t1.logcanary.tasks");
        assert_eq!(t.queue("analysis"), "t1.analysis");
        assert_eq!(t.dead_letter_queue("analysis"), "t1.analysis.dlq");
        assert_eq!(
            t.retry_queue("analysis", Duration::from_secs(1)),
            "t1.analysis.retry.1s"
        );
        let prod = Topology::new("");
        assert_eq!(prod.exchange(), "logcanary.tasks");
        assert_eq!(prod.queue("real_time"), "real_time");
    }

    #[test]
    fn delays_round_up_to_a_level() {
        assert_eq!(retry_level(Duration::ZERO), Duration::from_millis(100));
        assert_eq!(
            retry_level(Duration::from_millis(100)),
            Duration::from_millis(100)
        );
        assert_eq!(
            retry_level(Duration::from_millis(101)),
            Duration::from_millis(250)
        );
        assert_eq!(retry_level(Duration::from_secs(4)), Duration::from_secs(5));
        assert_eq!(
            retry_level(Duration::from_secs(60)),
            Duration::from_secs(60)
        );
        assert_eq!(
            retry_level(Duration::from_secs(86_400)),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn level_names_are_short_and_unique() {
        let labels: Vec<String> = RETRY_LEVELS.iter().map(|l| level_label(*l)).collect();
        assert_eq!(labels[0], "100ms");
        assert_eq!(labels[3], "1s");
        assert_eq!(labels[8], "1m");
        assert_eq!(labels[13], "60m");
        let mut unique = labels.clone();
        unique.dedup();
        assert_eq!(unique.len(), labels.len());
    }

    #[test]
    fn every_name_is_listed_once() {
        let names = Topology::new("p.").all_queue_names();
        assert_eq!(names.len(), 5 * (2 + RETRY_LEVELS.len()));
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
    }
}
