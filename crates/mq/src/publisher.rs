//! Confirmed publishing that survives broker restarts.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use contracts::{Task, TaskMessage};
use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    BasicProperties, Channel, Confirmation, Connection, PublisherConfirm,
};
use tracing::{debug, info, warn};

use crate::{connect_with_timeout, properties, MqError, QueueDepth, Topology};

/// Knobs of a [`Publisher`].
#[derive(Clone, Debug)]
pub struct PublisherConfig {
    /// Upper bound on one `publish`/`publish_many` call, reconnecting included.
    pub timeout: Duration,
    /// AMQP `app_id` of every message, e.g. the binary's name.
    pub app_id: String,
    /// After a failed connection attempt, publishes fail at once with
    /// [`MqError::Backoff`] for this long instead of each trying (and waiting) again.
    /// Zero: every publish tries.
    pub reconnect_backoff: Duration,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            app_id: "logcanary".to_owned(),
            reconnect_backoff: Duration::ZERO,
        }
    }
}

/// Publisher with confirms on its own connection and channel. Cheap to clone (an `Arc`
/// inside) and usable from many tasks at once: publishes share the channel and only a
/// reconnect is serialised.
///
/// When the connection or channel is gone (broker restart, network cut, channel closed by
/// an error), the next publish reconnects and re-declares the topology before publishing.
/// No call waits longer than [`PublisherConfig::timeout`].
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    topology: Topology,
    connection_name: String,
    config: PublisherConfig,
    /// The live link, cloned out for each publish; never held across an await.
    live: Mutex<Option<Live>>,
    /// Serialises reconnects so a burst of publishes after an outage opens one connection.
    reconnect: tokio::sync::Mutex<()>,
    /// When the last connection attempt failed, for [`PublisherConfig::reconnect_backoff`].
    failed_at: Mutex<Option<std::time::Instant>>,
}

#[derive(Clone)]
struct Live {
    connection: Arc<Connection>,
    channel: Channel,
}

impl Live {
    fn usable(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topology", &self.inner.topology)
            .field("connection_name", &self.inner.connection_name)
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl Publisher {
    /// Connects, declares `topology` and enables confirms, with the default
    /// [`PublisherConfig`].
    ///
    /// # Errors
    ///
    /// [`MqError::Timeout`] or [`MqError::Amqp`] when the broker cannot be reached or the
    /// topology cannot be declared. Use [`Publisher::lazy`] to start without a broker.
    pub async fn connect(
        url: &str,
        topology: Topology,
        connection_name: &str,
    ) -> Result<Self, MqError> {
        Self::connect_with(url, topology, connection_name, PublisherConfig::default()).await
    }

    /// [`Publisher::connect`] with explicit settings.
    ///
    /// # Errors
    ///
    /// As [`Publisher::connect`].
    pub async fn connect_with(
        url: &str,
        topology: Topology,
        connection_name: &str,
        config: PublisherConfig,
    ) -> Result<Self, MqError> {
        let publisher = Self::lazy(url, topology, connection_name, config);
        let timeout = publisher.inner.config.timeout;
        with_deadline("connect", timeout, publisher.channel()).await?;
        Ok(publisher)
    }

    /// A publisher that connects on its first publish, for processes that must start (and
    /// keep accepting work into their outbox) while the broker is down.
    pub fn lazy(
        url: &str,
        topology: Topology,
        connection_name: &str,
        config: PublisherConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                topology,
                connection_name: connection_name.to_owned(),
                config,
                live: Mutex::new(None),
                reconnect: tokio::sync::Mutex::new(()),
                failed_at: Mutex::new(None),
            }),
        }
    }

    /// The topology this publisher declares and routes through.
    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// Publishes a persistent message to the queue that `contracts::tasks::queue_for`
    /// names for `M::TASK_NAME` and waits for the broker's confirm.
    ///
    /// Cancel-safe in the sense that dropping the future never corrupts the publisher, but
    /// the message may or may not have reached the broker.
    ///
    /// # Errors
    ///
    /// [`MqError::Nacked`], [`MqError::Unroutable`] (the message reached no queue),
    /// [`MqError::Timeout`] (no connection or confirm within the timeout; the message may
    /// still have been taken), [`MqError::Amqp`].
    pub async fn publish<M: TaskMessage>(&self, msg: &M) -> Result<(), MqError> {
        let body = msg.encode_to_vec();
        self.publish_parts(M::TASK_NAME, msg.task_id(), &body).await
    }

    /// Publishes any decoded [`Task`] (for relays that hold tasks of several kinds).
    ///
    /// # Errors
    ///
    /// As [`Publisher::publish`].
    pub async fn publish_task(&self, task: &Task) -> Result<(), MqError> {
        self.publish_parts(task.task_name(), task.task_id(), &task.encode_body())
            .await
    }

    /// Publishes every message, then waits for all confirms at once (pipelined). Succeeds
    /// only if every message was confirmed; on error some messages may have been taken, so
    /// republishing all of them relies on consumers being idempotent.
    ///
    /// # Errors
    ///
    /// As [`Publisher::publish`], for the first failing message.
    pub async fn publish_many<M: TaskMessage>(&self, msgs: &[M]) -> Result<(), MqError> {
        let items: Vec<Outgoing<'_>> = msgs
            .iter()
            .map(|m| Outgoing {
                task_name: M::TASK_NAME,
                task_id: m.task_id(),
                body: m.encode_to_vec(),
            })
            .collect();
        self.publish_pipelined(&items).await
    }

    /// [`Publisher::publish_many`] for tasks of any kinds at once (an outbox holding
    /// several task names): one round of confirms for all.
    ///
    /// # Errors
    ///
    /// As [`Publisher::publish`], for the first failing message.
    pub async fn publish_tasks(&self, tasks: &[Task]) -> Result<(), MqError> {
        let items: Vec<Outgoing<'_>> = tasks
            .iter()
            .map(|t| Outgoing {
                task_name: t.task_name(),
                task_id: t.task_id(),
                body: t.encode_body(),
            })
            .collect();
        self.publish_pipelined(&items).await
    }

    async fn publish_pipelined(&self, items: &[Outgoing<'_>]) -> Result<(), MqError> {
        if items.is_empty() {
            return Ok(());
        }
        let mut per_queue: Vec<(&'static str, usize)> = Vec::new();
        let mut routes = Vec::with_capacity(items.len());
        for item in items {
            let queue = route(item.task_name)?;
            routes.push(queue);
            match per_queue.iter_mut().find(|(q, _)| *q == queue) {
                Some((_, n)) => *n += 1,
                None => per_queue.push((queue, 1)),
            }
        }
        let timeout = self.inner.config.timeout;
        let result = with_deadline("publish", timeout, async {
            let channel = self.channel().await?;
            let exchange = self.inner.topology.exchange();
            let mut pending = Vec::with_capacity(items.len());
            for (item, queue) in items.iter().zip(&routes) {
                let props = properties::for_new_task(
                    item.task_name,
                    item.task_id,
                    &self.inner.config.app_id,
                );
                let confirm = start_publish(&channel, &exchange, queue, &item.body, props).await?;
                pending.push(confirm);
            }
            let results = futures::future::join_all(pending).await;
            for (item, result) in items.iter().zip(results) {
                let confirmation = result.map_err(MqError::amqp("publisher confirm"))?;
                check_confirmation(confirmation, item.task_name, item.task_id)?;
            }
            Ok(())
        })
        .await;
        for (queue, count) in per_queue {
            record(queue, &result, count);
        }
        result
    }

    /// How much every queue of the topology holds ([`Topology::depths`]), read on a
    /// channel of its own over the publisher's connection (connecting if needed), so a
    /// failed read never disturbs publishing. Bounded by the publish timeout.
    ///
    /// # Errors
    ///
    /// [`MqError::Timeout`] or [`MqError::Amqp`].
    pub async fn queue_depths(&self) -> Result<Vec<QueueDepth>, MqError> {
        with_deadline("queue depths", self.inner.config.timeout, async {
            let channel = self
                .live()
                .await?
                .connection
                .create_channel()
                .await
                .map_err(MqError::amqp("channel.open"))?;
            let depths = self.inner.topology.depths(&channel).await;
            if channel.status().connected() {
                let _ = channel.close(200, "queue depths read".into()).await;
            }
            depths
        })
        .await
    }

    /// Whether the publisher currently holds an open connection and channel. A `false`
    /// only means the next publish will try to reconnect first.
    pub fn is_connected(&self) -> bool {
        self.current().is_some_and(|live| live.usable())
    }

    /// Closes the connection (best effort). Later publishes reconnect.
    pub async fn close(&self) {
        let live = match self.inner.live.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(live) = live {
            let closing = live.connection.close(200, "publisher closed".into());
            let _ = tokio::time::timeout(self.inner.config.timeout, closing).await;
        }
    }

    async fn publish_parts(
        &self,
        task_name: &str,
        task_id: &str,
        body: &[u8],
    ) -> Result<(), MqError> {
        let queue = route(task_name)?;
        let timeout = self.inner.config.timeout;
        let result = with_deadline("publish", timeout, async {
            let exchange = self.inner.topology.exchange();
            let props = properties::for_new_task(task_name, task_id, &self.inner.config.app_id);
            let channel = self.channel().await?;
            let confirm = match start_publish(&channel, &exchange, queue, body, props.clone()).await
            {
                Ok(confirm) => confirm,
                // The channel died between the check and the publish: nothing was sent, so
                // one more try on a fresh channel cannot duplicate the message.
                Err(error) if !channel.status().connected() => {
                    debug!(%error, "Channel closed before publishing; reconnecting once.");
                    let channel = self.channel().await?;
                    start_publish(&channel, &exchange, queue, body, props).await?
                }
                Err(error) => return Err(error),
            };
            let confirmation = confirm.await.map_err(MqError::amqp("publisher confirm"))?;
            check_confirmation(confirmation, task_name, task_id)
        })
        .await;
        record(queue, &result, 1);
        result
    }

    fn current(&self) -> Option<Live> {
        match self.inner.live.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn store(&self, live: Option<Live>) {
        match self.inner.live.lock() {
            Ok(mut guard) => *guard = live,
            Err(poisoned) => *poisoned.into_inner() = live,
        }
    }

    /// An open confirm channel, reconnecting if needed. Not bounded in time by itself:
    /// callers wrap it in their deadline.
    async fn channel(&self) -> Result<Channel, MqError> {
        Ok(self.live().await?.channel)
    }

    /// The open connection and its confirm channel, reconnecting if needed.
    async fn live(&self) -> Result<Live, MqError> {
        if let Some(live) = self.current().filter(Live::usable) {
            return Ok(live);
        }
        let _reconnecting = self.inner.reconnect.lock().await;
        // Another task may have reconnected while this one waited for the lock.
        if let Some(live) = self.current().filter(Live::usable) {
            return Ok(live);
        }
        let backoff = self.inner.config.reconnect_backoff;
        let recently_failed =
            |guard: &Option<std::time::Instant>| guard.is_some_and(|at| at.elapsed() < backoff);
        let failed_recently = match self.inner.failed_at.lock() {
            Ok(guard) => recently_failed(&guard),
            Err(poisoned) => recently_failed(&poisoned.into_inner()),
        };
        if failed_recently {
            return Err(MqError::Backoff { backoff });
        }
        let had_connection = self.current().is_some();
        self.store(None);
        let opened = self.open().await;
        let failed = opened.as_ref().err().map(|_| std::time::Instant::now());
        match self.inner.failed_at.lock() {
            Ok(mut guard) => *guard = failed,
            Err(poisoned) => *poisoned.into_inner() = failed,
        }
        let live = opened?;
        if had_connection {
            info!(connection_name = %self.inner.connection_name, "Publisher reconnected.");
        }
        self.store(Some(live.clone()));
        Ok(live)
    }

    async fn open(&self) -> Result<Live, MqError> {
        let inner = &self.inner;
        let connection = connect_with_timeout(
            &inner.url,
            &inner.connection_name,
            inner.config.timeout,
        )
        .await
        .inspect_err(|error| {
            warn!(%error, connection_name = %inner.connection_name, "Publisher cannot connect.");
        })?;
        let channel = connection
            .create_channel()
            .await
            .map_err(MqError::amqp("channel.open"))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(MqError::amqp("confirm.select"))?;
        inner.topology.declare(&channel).await?;
        Ok(Live {
            connection: Arc::new(connection),
            channel,
        })
    }
}

/// One encoded message of a pipelined publish.
struct Outgoing<'a> {
    task_name: &'static str,
    task_id: &'a str,
    body: Vec<u8>,
}

fn route(task_name: &str) -> Result<&'static str, MqError> {
    contracts::tasks::queue_for(task_name).ok_or_else(|| MqError::UnknownTask(task_name.to_owned()))
}

fn record(queue: &'static str, result: &Result<(), MqError>, count: usize) {
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics::counter!("logcanary_mq_published_total", "queue" => queue, "outcome" => outcome)
        .increment(u64::try_from(count).unwrap_or(u64::MAX));
}

async fn with_deadline<T>(
    op: &'static str,
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, MqError>>,
) -> Result<T, MqError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(result) => result,
        Err(_) => Err(MqError::Timeout { op, after: timeout }),
    }
}

/// Sends one mandatory publish; the returned future resolves to the broker's confirm.
pub(crate) async fn start_publish(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    props: BasicProperties,
) -> Result<PublisherConfirm, MqError> {
    channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            body,
            props,
        )
        .await
        .map_err(MqError::amqp("basic.publish"))
}

/// Publishes and waits for the confirm, within `timeout`.
pub(crate) async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    props: BasicProperties,
    timeout: Duration,
) -> Result<(), MqError> {
    let task_name = props
        .kind()
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_default();
    let task_id = props
        .message_id()
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_default();
    with_deadline("publish", timeout, async {
        let confirm = start_publish(channel, exchange, routing_key, body, props).await?;
        let confirmation = confirm.await.map_err(MqError::amqp("publisher confirm"))?;
        check_confirmation(confirmation, &task_name, &task_id)
    })
    .await
}

fn check_confirmation(
    confirmation: Confirmation,
    task_name: &str,
    task_id: &str,
) -> Result<(), MqError> {
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(returned)) => Err(MqError::Unroutable {
            exchange: returned.delivery.exchange.to_string(),
            routing_key: returned.delivery.routing_key.to_string(),
            reply_text: returned.reply_text.to_string(),
        }),
        Confirmation::Nack(_) => Err(MqError::Nacked {
            task_name: task_name.to_owned(),
            task_id: task_id.to_owned(),
        }),
        Confirmation::NotRequested => Err(MqError::ConfirmsNotEnabled),
    }
}
