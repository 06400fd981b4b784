//! The consumer runner: prefetch, micro-batching, and outcome -> ack / retry /
//! dead-letter, with reconnects and a clean stop on shutdown.

use std::{
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, Instant},
};

use contracts::{headers, ContractError, Task, TaskMessage};
use futures::{stream::BoxStream, FutureExt, StreamExt};
use lapin::{
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
        ConfirmSelectOptions,
    },
    types::{AMQPValue, FieldTable},
    Acker, BasicProperties, Channel, Connection,
};
use tokio::{sync::OwnedSemaphorePermit, sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::{connect_with_timeout, properties, publisher::publish_confirmed, MqError, Topology};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
const RECONNECT_MIN: Duration = Duration::from_millis(500);
const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// A session that lasted this long was healthy: the next reconnect starts from the
/// shortest backoff again.
const HEALTHY_SESSION: Duration = Duration::from_secs(30);

/// One task message taken from a work queue.
pub struct Delivery {
    /// AMQP `message_id`: the task id (idempotency key). Empty only on a poison message.
    pub task_id: String,
    /// AMQP `type`: the task name. Empty only on a poison message.
    pub task_name: String,
    /// The protobuf payload.
    pub body: Vec<u8>,
    /// Zero-based attempt number (`x-attempt`): 0 the first time, +1 per retry.
    pub attempt: u32,
    /// The broker delivered this message before (to a consumer that did not ack it).
    pub redelivered: bool,
    /// The logical queue it came from, e.g. `"analysis"`.
    pub queue: String,
    last_error: Option<String>,
    properties: BasicProperties,
    /// `None` for deliveries built by tests.
    acker: Option<Acker>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("task_id", &self.task_id)
            .field("task_name", &self.task_name)
            .field("body_len", &self.body.len())
            .field("attempt", &self.attempt)
            .field("redelivered", &self.redelivered)
            .field("queue", &self.queue)
            .field("last_error", &self.last_error)
            .finish()
    }
}

impl Delivery {
    /// A delivery that did not come from a broker, for unit tests of handlers. Acking it
    /// does nothing.
    pub fn new(
        queue: impl Into<String>,
        task_name: impl Into<String>,
        task_id: impl Into<String>,
        body: Vec<u8>,
    ) -> Self {
        Self {
            task_id: task_id.into(),
            task_name: task_name.into(),
            body,
            attempt: 0,
            redelivered: false,
            queue: queue.into(),
            last_error: None,
            properties: BasicProperties::default(),
            acker: None,
        }
    }

    /// A test delivery of a typed message, routed as a publisher would route it.
    pub fn of<M: TaskMessage>(msg: &M) -> Self {
        let queue = contracts::tasks::queue_for(M::TASK_NAME).unwrap_or_default();
        Self::new(queue, M::TASK_NAME, msg.task_id(), msg.encode_to_vec())
    }

    /// The error of the previous attempt (`x-last-error`), on a retried message.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The message id (the task id) as a UUID.
    ///
    /// # Errors
    ///
    /// [`crate::DeliveryError::TaskId`] (permanent) when it is not one.
    pub fn task_uuid(&self) -> Result<uuid::Uuid, crate::DeliveryError> {
        uuid::Uuid::parse_str(&self.task_id)
            .map_err(|_| crate::DeliveryError::TaskId(self.task_id.clone()))
    }

    /// A message decoded as `M`, with the task id it carries as a UUID.
    ///
    /// # Errors
    ///
    /// [`crate::DeliveryError`] (permanent) when the body does not decode or its task id
    /// is not a UUID.
    pub fn decode_task<M: TaskMessage>(&self) -> Result<(M, uuid::Uuid), crate::DeliveryError> {
        let msg = self.decode::<M>()?;
        let id = uuid::Uuid::parse_str(msg.task_id())
            .map_err(|_| crate::DeliveryError::TaskId(msg.task_id().to_owned()))?;
        Ok((msg, id))
    }

    /// Decodes the body as `M`.
    ///
    /// # Errors
    ///
    /// [`ContractError::UnknownTask`] when the task name is not `M`'s,
    /// [`ContractError::Decode`] on a malformed body. Both are permanent.
    pub fn decode<M: TaskMessage>(&self) -> Result<M, ContractError> {
        if self.task_name != M::TASK_NAME {
            return Err(ContractError::UnknownTask(self.task_name.clone()));
        }
        M::decode_body(&self.body)
    }

    /// Decodes the body as whichever task the task name says.
    ///
    /// # Errors
    ///
    /// As [`Task::decode`]; permanent.
    pub fn task(&self) -> Result<Task, ContractError> {
        Task::decode(&self.task_name, &self.body)
    }

    /// Reads a broker delivery; the second value says why it is poison, if it is.
    fn from_amqp(queue: String, d: lapin::message::Delivery) -> (Self, Option<&'static str>) {
        let task_id = d.properties.message_id().as_ref().map(|s| s.to_string());
        let task_name = d.properties.kind().as_ref().map(|s| s.to_string());
        let poison = match (&task_id, &task_name) {
            (None, _) => Some("missing message_id (task id)"),
            (_, None) => Some("missing type (task name)"),
            (Some(id), _) if id.is_empty() => Some("empty message_id (task id)"),
            (_, Some(name)) if name.is_empty() => Some("empty type (task name)"),
            _ => None,
        };
        let delivery = Self {
            task_id: task_id.unwrap_or_default(),
            task_name: task_name.unwrap_or_default(),
            attempt: properties::attempt(&d.properties),
            last_error: properties::header_str(&d.properties, headers::LAST_ERROR),
            redelivered: d.redelivered,
            queue,
            body: d.data,
            properties: d.properties,
            acker: Some(d.acker),
        };
        (delivery, poison)
    }
}

/// What became of one delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The work is durable: ack.
    Done,
    /// A transient error: try again later with backoff, dead-letter after
    /// [`ConsumerConfig::max_attempts`].
    Retry(String),
    /// A permanent error or a poison message: dead-letter now.
    Fail(String),
}

impl Outcome {
    /// `Retry` for an error that may clear on a later attempt, `Fail` otherwise, with the
    /// error's message as the reason.
    pub fn from_error<E: crate::Classify + ?Sized>(error: &E) -> Self {
        if error.is_retryable() {
            Outcome::Retry(error.to_string())
        } else {
            Outcome::Fail(error.to_string())
        }
    }
}

/// The work a consumer does.
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Processes a micro-batch (1..=`batch_max` deliveries, possibly of mixed task names
    /// and queues) and returns one outcome per delivery, in the same order. Return
    /// [`Outcome::Done`] only once the work is durable: the message is acked right after.
    /// A missing outcome counts as a retry. A panic re-runs each message of the batch
    /// alone, so only the one that panics is retried.
    async fn handle(&self, batch: &[Delivery]) -> Vec<Outcome>;

    /// Called once just before a message is dead-lettered (after its last retry, on
    /// [`Outcome::Fail`], or for a poison message, whose `task_id`/`task_name` may then be
    /// empty), so the task can be marked FAILURE with `error`. If dead-lettering then fails
    /// the message is redelivered and this may be called again: keep it idempotent.
    async fn dead_lettered(&self, delivery: &Delivery, error: &str);
}

/// Knobs of [`run_consumer`], named after Celery's.
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// Logical queues to consume, e.g. `["analysis"]` (see `contracts::queues`).
    pub queues: Vec<String>,
    /// Unacked messages the broker may hand this consumer at once (basic.qos).
    pub prefetch: u16,
    /// Batches processed at the same time.
    pub concurrency: usize,
    /// Largest batch given to [`Handler::handle`].
    pub batch_max: usize,
    /// How long a batch waits to fill up after its first delivery.
    pub batch_wait: Duration,
    /// Attempts before a retried message is dead-lettered (1 = never retry).
    pub max_attempts: u32,
    /// Delay before the first retry; doubles per attempt up to `retry_max_delay`, then
    /// rounds up to a [`crate::RETRY_LEVELS`] level.
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
    /// Connection name shown in the RabbitMQ management UI.
    pub connection_name: String,
    /// Upper bound on each retry or dead-letter publish (confirm included).
    pub publish_timeout: Duration,
    /// True while the runner holds a consuming connection; read it for readiness probes.
    pub connected: Arc<std::sync::atomic::AtomicBool>,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            queues: Vec::new(),
            prefetch: 64,
            concurrency: 2,
            batch_max: 32,
            batch_wait: Duration::from_millis(20),
            max_attempts: 5,
            retry_base_delay: Duration::from_secs(1),
            retry_max_delay: Duration::from_secs(60),
            connection_name: "logcanary-consumer".to_owned(),
            publish_timeout: Duration::from_secs(5),
            connected: Arc::default(),
        }
    }
}

impl ConsumerConfig {
    /// `min(retry_base_delay * 2^attempt, retry_max_delay)`, before rounding to a level.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.checked_pow(attempt).unwrap_or(u32::MAX);
        self.retry_base_delay
            .checked_mul(factor)
            .unwrap_or(self.retry_max_delay)
            .min(self.retry_max_delay)
    }

    fn validate(&self) -> Result<(), MqError> {
        let invalid = |what: String| Err(MqError::InvalidConfig(what));
        if self.queues.is_empty() {
            return invalid("no queues to consume".to_owned());
        }
        if let Some(q) = self
            .queues
            .iter()
            .find(|q| !contracts::queues::ALL.contains(&q.as_str()))
        {
            return invalid(format!(
                "unknown queue {q:?}; expected some of {:?}",
                contracts::queues::ALL
            ));
        }
        if self.concurrency == 0 || self.batch_max == 0 || self.max_attempts == 0 {
            return invalid("concurrency, batch_max and max_attempts must be at least 1".into());
        }
        if self.prefetch == 0 {
            return invalid("prefetch must be at least 1 (0 would mean unlimited)".into());
        }
        Ok(())
    }
}

/// Consumes `config.queues` until `shutdown` is cancelled, then stops consuming
/// (basic.cancel), lets in-flight batches finish and settle (ack, retry or dead-letter),
/// closes the connection and returns `Ok(())`.
///
/// Declares the topology on every (re)connect. When the connection drops or the broker
/// cancels the consumer, logs at warn and reconnects with exponential backoff
/// (0.5 s to 30 s) until shutdown: a broker outage never ends the runner. Before
/// reconnecting it waits for the batches in flight to return from the handler; their
/// messages cannot be acked on the dead channel, so the broker redelivers them and
/// handlers must be idempotent.
///
/// The future borrows `url`; to spawn it, move an owned URL into an `async move` block.
///
/// # Errors
///
/// Only [`MqError::InvalidConfig`], before connecting.
pub async fn run_consumer<H: Handler>(
    url: &str,
    topology: Topology,
    config: ConsumerConfig,
    handler: Arc<H>,
    shutdown: CancellationToken,
) -> Result<(), MqError> {
    config.validate()?;
    let mut backoff = RECONNECT_MIN;
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let started = Instant::now();
        let error = match session(url, &topology, &config, &handler, &shutdown).await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        if started.elapsed() >= HEALTHY_SESSION {
            backoff = RECONNECT_MIN;
        }
        warn!(
            %error,
            queues = ?config.queues,
            retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
            "Consumer lost its broker connection; reconnecting."
        );
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

struct Shared<H> {
    handler: Arc<H>,
    topology: Topology,
    config: ConsumerConfig,
    /// Confirm channel for retry and dead-letter copies, separate from the consuming one
    /// so publishing never waits behind deliveries.
    publish_channel: Channel,
}

type Deliveries = BoxStream<'static, (String, Option<lapin::Result<lapin::message::Delivery>>)>;

struct Session {
    connection: Connection,
    consume_channel: Channel,
    publish_channel: Channel,
    consumer_tags: Vec<String>,
    deliveries: Deliveries,
}

/// One connection's life. `Ok` only on shutdown.
async fn session<H: Handler>(
    url: &str,
    topology: &Topology,
    config: &ConsumerConfig,
    handler: &Arc<H>,
    shutdown: &CancellationToken,
) -> Result<(), MqError> {
    let opened = tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        opened = open_session(url, topology, config) => opened?,
    };
    let Session {
        connection,
        consume_channel,
        publish_channel,
        consumer_tags,
        mut deliveries,
    } = opened;
    info!(queues = ?config.queues, prefetch = config.prefetch, "Consuming.");
    set_connected(config, true);

    let shared = Arc::new(Shared {
        handler: Arc::clone(handler),
        topology: topology.clone(),
        config: config.clone(),
        publish_channel: publish_channel.clone(),
    });
    let mut in_flight = JoinSet::new();
    let result = consume(&shared, &mut deliveries, &mut in_flight, shutdown).await;
    set_connected(config, false);

    if result.is_ok() {
        // Stop new deliveries first; those already prefetched but not batched stay unacked
        // and go back to the queue when the channel closes.
        for tag in consumer_tags {
            let cancel = consume_channel.basic_cancel(tag.as_str().into(), Default::default());
            match tokio::time::timeout(CLOSE_TIMEOUT, cancel).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => warn!(%error, consumer_tag = %tag, "Could not cancel consumer."),
                Err(_) => warn!(consumer_tag = %tag, "Cancelling the consumer timed out."),
            }
        }
        info!(
            in_flight = in_flight.len(),
            "Consumer stopping; finishing in-flight batches."
        );
    }
    while let Some(joined) = in_flight.join_next().await {
        if let Err(error) = joined {
            error!(%error, "Batch task ended abnormally.");
        }
    }
    drop(deliveries);
    // Closing waits for close-ok, so every ack sent before is processed by the broker.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, consume_channel.close(200, "OK".into())).await;
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, publish_channel.close(200, "OK".into())).await;
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection.close(200, "OK".into())).await;
    if result.is_ok() {
        info!(queues = ?config.queues, "Consumer stopped.");
    }
    result
}

fn set_connected(config: &ConsumerConfig, connected: bool) {
    config
        .connected
        .store(connected, std::sync::atomic::Ordering::Relaxed);
    metrics::gauge!("logcanary_amqp_connected").set(if connected { 1.0 } else { 0.0 });
}

async fn open_session(
    url: &str,
    topology: &Topology,
    config: &ConsumerConfig,
) -> Result<Session, MqError> {
    let connection = connect_with_timeout(url, &config.connection_name, CONNECT_TIMEOUT).await?;
    let publish_channel = connection
        .create_channel()
        .await
        .map_err(MqError::amqp("channel.open"))?;
    publish_channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(MqError::amqp("confirm.select"))?;
    topology.declare(&publish_channel).await?;

    let consume_channel = connection
        .create_channel()
        .await
        .map_err(MqError::amqp("channel.open"))?;
    consume_channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await
        .map_err(MqError::amqp("basic.qos"))?;

    let mut consumer_tags = Vec::with_capacity(config.queues.len());
    let mut streams = Vec::with_capacity(config.queues.len());
    for queue in &config.queues {
        let tag = format!(
            "{}.{queue}.{}",
            config.connection_name,
            uuid::Uuid::new_v4().simple()
        );
        let consumer = consume_channel
            .basic_consume(
                topology.queue(queue).into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(MqError::amqp("basic.consume"))?;
        let label = queue.clone();
        let end_label = queue.clone();
        // A trailing `None` marks the end of one consumer, so losing any single queue
        // (deleted, or cancelled by the broker) ends the session instead of going unnoticed.
        let stream = consumer
            .map(move |delivery| (label.clone(), Some(delivery)))
            .chain(futures::stream::once(async move { (end_label, None) }));
        streams.push(stream.boxed());
        consumer_tags.push(tag);
    }
    Ok(Session {
        connection,
        consume_channel,
        publish_channel,
        consumer_tags,
        deliveries: futures::stream::select_all(streams).boxed(),
    })
}

/// Reads deliveries into batches and spawns them until shutdown (`Ok`) or the consumer
/// fails (`Err`).
async fn consume<H: Handler>(
    shared: &Arc<Shared<H>>,
    deliveries: &mut Deliveries,
    in_flight: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> Result<(), MqError> {
    let config = &shared.config;
    let slots = Arc::new(Semaphore::new(config.concurrency));
    loop {
        let permit = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
            permit = Arc::clone(&slots).acquire_owned() => permit
                .map_err(|_| MqError::InvalidConfig("batch semaphore closed".into()))?,
        };
        while let Some(joined) = in_flight.try_join_next() {
            if let Err(error) = joined {
                error!(%error, "Batch task ended abnormally.");
            }
        }
        let first = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
            next = deliveries.next() => next,
        };
        let mut batch = vec![take(first)?];
        let deadline = tokio::time::Instant::now() + config.batch_wait;
        while batch.len() < config.batch_max {
            match tokio::time::timeout_at(deadline, deliveries.next()).await {
                Ok(next) => batch.push(take(next)?),
                Err(_elapsed) => break,
            }
        }
        in_flight.spawn(process_batch(Arc::clone(shared), batch, permit));
    }
}

fn take(
    next: Option<(String, Option<lapin::Result<lapin::message::Delivery>>)>,
) -> Result<(String, lapin::message::Delivery), MqError> {
    match next {
        Some((queue, Some(Ok(delivery)))) => Ok((queue, delivery)),
        Some((_, Some(Err(source)))) => Err(MqError::Amqp {
            op: "consume",
            source,
        }),
        Some((queue, None)) => Err(MqError::ConsumerCancelled(queue)),
        None => Err(MqError::ConsumerCancelled(String::new())),
    }
}

async fn process_batch<H: Handler>(
    shared: Arc<Shared<H>>,
    raw: Vec<(String, lapin::message::Delivery)>,
    permit: OwnedSemaphorePermit,
) {
    let span = info_span!("batch", size = raw.len());
    async move {
        let _permit = permit;
        let mut batch = Vec::with_capacity(raw.len());
        for (queue, delivery) in raw {
            match Delivery::from_amqp(queue, delivery) {
                (delivery, None) => batch.push(delivery),
                (delivery, Some(reason)) => {
                    warn!(queue = %delivery.queue, reason, "Poison message; dead-lettering it.");
                    dead_letter(&shared, &delivery, reason, "poison").await;
                }
            }
        }
        if batch.is_empty() {
            return;
        }

        #[allow(clippy::cast_precision_loss)] // batch sizes are small
        metrics::histogram!("logcanary_mq_batch_size").record(batch.len() as f64);
        let started = Instant::now();
        let handled = AssertUnwindSafe(shared.handler.handle(&batch))
            .catch_unwind()
            .await;
        metrics::histogram!("logcanary_mq_processing_seconds")
            .record(started.elapsed().as_secs_f64());

        let outcomes = match handled {
            Ok(mut outcomes) => {
                if outcomes.len() != batch.len() {
                    error!(
                        expected = batch.len(),
                        got = outcomes.len(),
                        "Handler returned the wrong number of outcomes; retrying the rest."
                    );
                    let missing = Outcome::Retry("handler returned no outcome".to_owned());
                    outcomes.resize(batch.len(), missing);
                }
                outcomes
            }
            Err(_) if batch.len() > 1 => {
                // Find the message that panics: each one alone, so the others do not spend
                // attempts (and risk the dead-letter queue) for it. Handlers are idempotent
                // per task, so work the panicked call did commit is not done twice.
                error!(
                    batch = batch.len(),
                    "Handler panicked; handling each message of the batch alone."
                );
                let mut outcomes = Vec::with_capacity(batch.len());
                for delivery in &batch {
                    let alone = AssertUnwindSafe(shared.handler.handle(std::slice::from_ref(delivery)))
                        .catch_unwind()
                        .await;
                    outcomes.push(match alone {
                        Ok(mut one) if one.len() == 1 => one.remove(0),
                        Ok(_) => Outcome::Retry("handler returned no outcome".to_owned()),
                        Err(_) => {
                            error!(task_id = %delivery.task_id, "Handler panicked on this message alone.");
                            Outcome::Retry("handler panicked".to_owned())
                        }
                    });
                }
                outcomes
            }
            Err(_) => {
                error!("Handler panicked.");
                vec![Outcome::Retry("handler panicked".to_owned())]
            }
        };
        futures::future::join_all(
            batch
                .iter()
                .zip(outcomes)
                .map(|(delivery, outcome)| settle(&shared, delivery, outcome)),
        )
        .await;
    }
    .instrument(span)
    .await;
}

async fn settle<H: Handler>(shared: &Shared<H>, delivery: &Delivery, outcome: Outcome) {
    let span = info_span!(
        "delivery",
        task_id = %delivery.task_id,
        task_name = %delivery.task_name,
        attempt = delivery.attempt,
    );
    async move {
        match outcome {
            Outcome::Done => {
                if ack(delivery).await {
                    count(delivery, "done");
                    record_queue_latency(delivery);
                    debug!(queue = %delivery.queue, "Task done.");
                }
            }
            Outcome::Retry(error) if delivery.attempt + 1 < shared.config.max_attempts => {
                retry(shared, delivery, &error).await;
            }
            Outcome::Retry(error) => {
                warn!(%error, queue = %delivery.queue, "Task failed on its last attempt; dead-lettering it.");
                dead_letter(shared, delivery, &error, "dead_lettered").await;
            }
            Outcome::Fail(error) => {
                warn!(%error, queue = %delivery.queue, "Task failed permanently; dead-lettering it.");
                dead_letter(shared, delivery, &error, "dead_lettered").await;
            }
        }
    }
    .instrument(span)
    .await;
}

async fn retry<H: Handler>(shared: &Shared<H>, delivery: &Delivery, error: &str) {
    let delay = shared.config.retry_delay(delivery.attempt);
    let retry_queue = shared.topology.retry_queue(&delivery.queue, delay);
    let props = properties::with_headers(
        &delivery.properties,
        [
            (
                headers::ATTEMPT,
                properties::attempt_value(delivery.attempt + 1),
            ),
            (headers::LAST_ERROR, properties::error_value(error)),
        ],
    );
    let published = publish_confirmed(
        &shared.publish_channel,
        "",
        &retry_queue,
        &delivery.body,
        props,
        shared.config.publish_timeout,
    )
    .await;
    match published {
        Ok(()) => {
            if ack(delivery).await {
                count(delivery, "retry");
                warn!(
                    %error,
                    retry_queue,
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "Task failed; retrying later."
                );
            }
        }
        Err(publish_error) => {
            error!(%publish_error, %error, "Could not schedule a retry; requeueing the task.");
            requeue(delivery).await;
        }
    }
}

async fn dead_letter<H: Handler>(
    shared: &Shared<H>,
    delivery: &Delivery,
    error: &str,
    outcome: &'static str,
) {
    let notified = AssertUnwindSafe(shared.handler.dead_lettered(delivery, error))
        .catch_unwind()
        .await;
    if notified.is_err() {
        error!("Handler panicked in dead_lettered; dead-lettering anyway.");
    }
    let props = properties::with_headers(
        &delivery.properties,
        [
            (headers::ERROR, properties::error_value(error)),
            (
                headers::ATTEMPT,
                properties::attempt_value(delivery.attempt),
            ),
            (
                headers::ORIGINAL_QUEUE,
                AMQPValue::LongString(shared.topology.queue(&delivery.queue).into()),
            ),
        ],
    );
    let dlq = shared.topology.dead_letter_queue(&delivery.queue);
    let published = publish_confirmed(
        &shared.publish_channel,
        "",
        &dlq,
        &delivery.body,
        props,
        shared.config.publish_timeout,
    )
    .await;
    match published {
        Ok(()) => {
            if ack(delivery).await {
                count(delivery, outcome);
            }
        }
        Err(publish_error) => {
            error!(%publish_error, %error, dlq, "Could not dead-letter; requeueing the task.");
            requeue(delivery).await;
        }
    }
}

/// Acks; `false` when the channel is gone, in which case the broker redelivers.
async fn ack(delivery: &Delivery) -> bool {
    let Some(acker) = &delivery.acker else {
        return true;
    };
    match acker.ack(BasicAckOptions::default()).await {
        Ok(true) => true,
        Ok(false) => {
            warn!(queue = %delivery.queue, "Channel closed before the ack; the broker will redeliver.");
            false
        }
        Err(error) => {
            warn!(%error, queue = %delivery.queue, "Ack failed; the broker will redeliver.");
            false
        }
    }
}

async fn requeue(delivery: &Delivery) {
    let Some(acker) = &delivery.acker else {
        return;
    };
    let nack = acker.nack(BasicNackOptions {
        requeue: true,
        ..BasicNackOptions::default()
    });
    if let Err(error) = nack.await {
        warn!(%error, queue = %delivery.queue, "Nack failed; the broker will redeliver.");
    }
}

/// Enqueue -> done, from the AMQP `timestamp` of the first publish (whole seconds; kept
/// across retries), so the histogram includes queue wait and retries, not only handling.
fn record_queue_latency(delivery: &Delivery) {
    let Some(sent) = delivery.properties.timestamp() else {
        return;
    };
    #[allow(clippy::cast_precision_loss)] // epoch seconds fit an f64 exactly
    let waited = (chrono::Utc::now().timestamp_millis() as f64 / 1000.0 - *sent as f64).max(0.0);
    metrics::histogram!("logcanary_queue_latency_seconds", "queue" => delivery.queue.clone())
        .record(waited);
}

fn count(delivery: &Delivery, outcome: &'static str) {
    metrics::counter!(
        "logcanary_mq_deliveries_total",
        "queue" => delivery.queue.clone(),
        "outcome" => outcome,
    )
    .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_and_caps() {
        let config = ConsumerConfig::default();
        assert_eq!(config.retry_delay(0), Duration::from_secs(1));
        assert_eq!(config.retry_delay(1), Duration::from_secs(2));
        assert_eq!(config.retry_delay(3), Duration::from_secs(8));
        assert_eq!(config.retry_delay(6), Duration::from_secs(60));
        assert_eq!(config.retry_delay(40), Duration::from_secs(60));
        assert_eq!(config.retry_delay(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn config_is_validated() {
        let ok = ConsumerConfig {
            queues: vec!["analysis".into()],
            ..ConsumerConfig::default()
        };
        assert!(ok.validate().is_ok());
        assert!(ConsumerConfig::default().validate().is_err());
        let bad_queue = ConsumerConfig {
            queues: vec!["analysys".into()],
            ..ConsumerConfig::default()
        };
        assert!(bad_queue.validate().is_err());
        let no_concurrency = ConsumerConfig {
            concurrency: 0,
            ..ok
        };
        assert!(no_concurrency.validate().is_err());
    }

    #[test]
    fn test_deliveries_decode_their_message() {
        let msg = contracts::v1::AnalyzeLogEntry {
            task_id: "t".into(),
            log_entry_id: 5,
        };
        let delivery = Delivery::of(&msg);
        assert_eq!(delivery.queue, "analysis");
        assert_eq!(
            delivery.decode::<contracts::v1::AnalyzeLogEntry>().ok(),
            Some(msg)
        );
        assert!(delivery
            .decode::<contracts::v1::CleanupOldResults>()
            .is_err());
        assert!(matches!(delivery.task(), Ok(Task::AnalyzeLogEntry(_))));
    }
}
