//! Against the real RabbitMQ (`AMQP_URL`, default the local broker). Each test declares
//! its own prefixed topology and deletes it at the end, so tests run in parallel.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use contracts::{headers, v1, TaskMessage};
use lapin::{
    options::{BasicGetOptions, BasicPublishOptions},
    types::AMQPValue,
    BasicProperties, Channel, Connection,
};
use logcanary_mq as mq;
use mq::{
    queue_depth, run_consumer, ConsumerConfig, Delivery, Handler, MqError, Outcome, Publisher,
    PublisherConfig, Topology, RETRY_LEVELS,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

struct Broker {
    url: String,
    topology: Topology,
    channel: Channel,
    _connection: Connection,
}

impl Broker {
    async fn new() -> Self {
        Self::with(Topology::new(format!(
            "t{}.",
            uuid::Uuid::new_v4().simple()
        )))
        .await
    }

    async fn with(topology: Topology) -> Self {
        let url = amqp_url();
        let connection = mq::connect(&url, "mq-tests")
            .await
            .expect("a RabbitMQ broker at AMQP_URL");
        let channel = connection.create_channel().await.expect("a channel");
        topology.declare(&channel).await.expect("topology declared");
        Self {
            url,
            topology,
            channel,
            _connection: connection,
        }
    }

    async fn publisher(&self) -> Publisher {
        Publisher::connect(&self.url, self.topology.clone(), "mq-tests-publisher")
            .await
            .expect("publisher connected")
    }

    async fn depth(&self, full_name: &str) -> u32 {
        queue_depth(&self.channel, full_name)
            .await
            .expect("queue depth")
    }

    async fn total_depth(&self) -> u32 {
        let mut total = 0;
        for name in self.topology.all_queue_names() {
            total += self.depth(&name).await;
        }
        total
    }

    fn consume<H: Handler>(
        &self,
        config: ConsumerConfig,
        handler: Arc<H>,
    ) -> (CancellationToken, JoinHandle<Result<(), MqError>>) {
        let shutdown = CancellationToken::new();
        let url = self.url.clone();
        let topology = self.topology.clone();
        let token = shutdown.clone();
        let run =
            tokio::spawn(async move { run_consumer(&url, topology, config, handler, token).await });
        (shutdown, run)
    }

    async fn delete(self) {
        self.topology
            .delete(&self.channel)
            .await
            .expect("topology deleted");
    }
}

fn config(queue: &str) -> ConsumerConfig {
    ConsumerConfig {
        queues: vec![queue.to_owned()],
        prefetch: 16,
        concurrency: 2,
        batch_max: 8,
        batch_wait: Duration::from_millis(20),
        max_attempts: 5,
        retry_base_delay: Duration::from_millis(100),
        retry_max_delay: Duration::from_millis(200),
        connection_name: "mq-tests-consumer".to_owned(),
        publish_timeout: Duration::from_secs(5),
        ..ConsumerConfig::default()
    }
}

fn analyze(i: i64) -> v1::AnalyzeLogEntry {
    v1::AnalyzeLogEntry {
        task_id: contracts::new_task_id(),
        log_entry_id: i,
    }
}

/// Records what it saw and answers with `script(delivery)`.
struct Scripted<F> {
    script: F,
    delay: Duration,
    seen: Mutex<Vec<(String, u32, Option<String>)>>,
    dead: Mutex<Vec<(String, String)>>,
    finished: Mutex<usize>,
}

impl<F: Fn(&Delivery) -> Outcome + Send + Sync + 'static> Scripted<F> {
    fn new(script: F) -> Arc<Self> {
        Self::slow(Duration::ZERO, script)
    }

    fn slow(delay: Duration, script: F) -> Arc<Self> {
        Arc::new(Self {
            script,
            delay,
            seen: Mutex::new(Vec::new()),
            dead: Mutex::new(Vec::new()),
            finished: Mutex::new(0),
        })
    }

    fn seen(&self) -> Vec<(String, u32, Option<String>)> {
        self.seen.lock().unwrap().clone()
    }

    fn dead(&self) -> Vec<(String, String)> {
        self.dead.lock().unwrap().clone()
    }

    fn finished(&self) -> usize {
        *self.finished.lock().unwrap()
    }
}

#[async_trait::async_trait]
impl<F: Fn(&Delivery) -> Outcome + Send + Sync + 'static> Handler for Scripted<F> {
    async fn handle(&self, batch: &[Delivery]) -> Vec<Outcome> {
        self.seen.lock().unwrap().extend(batch.iter().map(|d| {
            (
                d.task_id.clone(),
                d.attempt,
                d.last_error().map(str::to_owned),
            )
        }));
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let outcomes = batch.iter().map(&self.script).collect();
        *self.finished.lock().unwrap() += batch.len();
        outcomes
    }

    async fn dead_lettered(&self, delivery: &Delivery, error: &str) {
        self.dead
            .lock()
            .unwrap()
            .push((delivery.task_id.clone(), error.to_owned()));
    }
}

async fn eventually(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn stop(shutdown: CancellationToken, run: JoinHandle<Result<(), MqError>>) {
    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("run_consumer returns after shutdown")
        .expect("run_consumer did not panic");
    assert!(result.is_ok(), "run_consumer failed: {result:?}");
}

fn header<'a>(props: &'a BasicProperties, name: &str) -> Option<&'a AMQPValue> {
    props
        .headers()
        .as_ref()?
        .inner()
        .iter()
        .find(|(k, _)| k.as_str() == name)
        .map(|(_, v)| v)
}

fn header_string(props: &BasicProperties, name: &str) -> Option<String> {
    match header(props, name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_published_task_is_handled_once_and_acked() {
    let broker = Broker::new().await;
    let publisher = broker.publisher().await;
    assert!(publisher.is_connected());

    let many: Vec<_> = (0..40).map(analyze).collect();
    publisher
        .publish_many(&many)
        .await
        .expect("batch published");
    let single: Vec<_> = (40..50).map(analyze).collect();
    for msg in &single {
        publisher.publish(msg).await.expect("published");
    }
    let work = broker.topology.queue("analysis");
    assert_eq!(broker.depth(&work).await, 50);

    let handler = Scripted::new(|d: &Delivery| match d.decode::<v1::AnalyzeLogEntry>() {
        Ok(_) => Outcome::Done,
        Err(e) => Outcome::Fail(e.to_string()),
    });
    let (shutdown, run) = broker.consume(config("analysis"), Arc::clone(&handler));
    eventually("50 tasks handled", Duration::from_secs(10), async || {
        handler.finished() >= 50
    })
    .await;
    stop(shutdown, run).await;

    let mut seen: Vec<String> = handler.seen().into_iter().map(|(id, _, _)| id).collect();
    seen.sort();
    let mut expected: Vec<String> = many
        .iter()
        .chain(&single)
        .map(|m| m.task_id().to_owned())
        .collect();
    expected.sort();
    assert_eq!(seen, expected, "each task handled exactly once");
    assert!(handler.dead().is_empty());
    // After the consumer's channel closed, anything unacked would be back in the queue.
    assert_eq!(broker.total_depth().await, 0);
    broker.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_errors_are_retried_with_a_growing_attempt() {
    let broker = Broker::new().await;
    let publisher = broker.publisher().await;
    let msg = v1::BatchAnalyzeLogs {
        task_id: contracts::new_task_id(),
        log_entry_ids: vec![1, 2, 3],
    };
    publisher.publish(&msg).await.expect("published");

    let handler = Scripted::new(|d: &Delivery| {
        if d.attempt < 2 {
            Outcome::Retry(format!("database busy on attempt {}", d.attempt))
        } else {
            Outcome::Done
        }
    });
    let started = Instant::now();
    let (shutdown, run) = broker.consume(config("batch_processing"), Arc::clone(&handler));
    eventually("the third attempt", Duration::from_secs(10), async || {
        handler.finished() >= 3
    })
    .await;
    // Two backoffs: 100 ms then 200 ms rounded up to the 250 ms level.
    assert!(started.elapsed() >= Duration::from_millis(350));
    stop(shutdown, run).await;

    let seen = handler.seen();
    let attempts: Vec<u32> = seen.iter().map(|(_, a, _)| *a).collect();
    assert_eq!(attempts, vec![0, 1, 2]);
    assert!(seen.iter().all(|(id, _, _)| id == msg.task_id()));
    assert_eq!(seen[0].2, None);
    assert_eq!(seen[2].2.as_deref(), Some("database busy on attempt 1"));
    assert!(handler.dead().is_empty());
    assert_eq!(broker.total_depth().await, 0);
    broker.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_end_in_the_dead_letter_queue() {
    let broker = Broker::new().await;
    let publisher = broker.publisher().await;
    let msg = v1::SendPatternAlert {
        task_id: contracts::new_task_id(),
        pattern_detection_id: 7,
    };
    publisher.publish(&msg).await.expect("published");

    let handler = Scripted::new(|_: &Delivery| Outcome::Retry("smtp unreachable".into()));
    let config = ConsumerConfig {
        max_attempts: 3,
        ..config("notifications")
    };
    let (shutdown, run) = broker.consume(config, Arc::clone(&handler));
    let dlq = broker.topology.dead_letter_queue("notifications");
    eventually(
        "a dead-lettered message",
        Duration::from_secs(10),
        async || broker.depth(&dlq).await == 1,
    )
    .await;
    stop(shutdown, run).await;

    let attempts: Vec<u32> = handler.seen().iter().map(|(_, a, _)| *a).collect();
    assert_eq!(attempts, vec![0, 1, 2]);
    assert_eq!(
        handler.dead(),
        vec![(msg.task_id().to_owned(), "smtp unreachable".to_owned())]
    );

    let dead = broker
        .channel
        .basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
        .expect("a message in the DLQ");
    let props = &dead.delivery.properties;
    assert_eq!(
        header_string(props, headers::ERROR).as_deref(),
        Some("smtp unreachable")
    );
    assert_eq!(
        header_string(props, headers::ORIGINAL_QUEUE),
        Some(broker.topology.queue("notifications"))
    );
    assert_eq!(
        header(props, headers::ATTEMPT),
        Some(&AMQPValue::LongLongInt(2))
    );
    assert_eq!(
        props.message_id().as_ref().map(|s| s.as_str()),
        Some(msg.task_id())
    );
    assert_eq!(
        v1::SendPatternAlert::decode_body(&dead.delivery.data).ok(),
        Some(msg)
    );
    assert_eq!(broker.total_depth().await, 0);
    broker.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_are_dead_lettered_at_once() {
    let broker = Broker::new().await;
    let publisher = broker.publisher().await;
    let msg = v1::CleanupOldResults {
        task_id: contracts::new_task_id(),
    };
    publisher.publish(&msg).await.expect("published");

    let handler = Scripted::new(|_: &Delivery| Outcome::Fail("bad retention setting".into()));
    let (shutdown, run) = broker.consume(config("maintenance"), Arc::clone(&handler));
    let dlq = broker.topology.dead_letter_queue("maintenance");
    eventually(
        "a dead-lettered message",
        Duration::from_secs(10),
        async || broker.depth(&dlq).await == 1,
    )
    .await;
    stop(shutdown, run).await;

    let attempts: Vec<u32> = handler.seen().iter().map(|(_, a, _)| *a).collect();
    assert_eq!(attempts, vec![0], "no retry after Fail");
    assert_eq!(handler.dead().len(), 1);
    for level in RETRY_LEVELS {
        let retry = broker.topology.retry_queue("maintenance", level);
        assert_eq!(broker.depth(&retry).await, 0, "{retry} is empty");
    }
    assert_eq!(broker.depth(&broker.topology.queue("maintenance")).await, 0);
    broker.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_queues_carry_work_retries_and_dead_letters() {
    let prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
    let broker = Broker::with(Topology::new(prefix.clone()).with_quorum_queues(true)).await;
    // They really are quorum queues: declaring the same names as classic is refused.
    let other = mq::connect(&broker.url, "mq-tests-classic").await.unwrap();
    let classic = other.create_channel().await.unwrap();
    let refused = Topology::new(prefix).declare(&classic).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("PRECONDITION_FAILED")),
        "{refused:?}"
    );

    let publisher = broker.publisher().await;
    let retried = analyze(1);
    let failing = analyze(2);
    publisher.publish(&retried).await.expect("published");
    publisher.publish(&failing).await.expect("published");
    let (retried_id, failing_id) = (retried.task_id.clone(), failing.task_id.clone());
    let handler = Scripted::new(move |d: &Delivery| {
        if d.task_id == failing_id {
            Outcome::Fail("permanent".into())
        } else if d.attempt == 0 {
            Outcome::Retry("busy".into())
        } else {
            Outcome::Done
        }
    });
    let (shutdown, run) = broker.consume(config("analysis"), Arc::clone(&handler));
    let dlq = broker.topology.dead_letter_queue("analysis");
    eventually(
        "a retry and a dead letter",
        Duration::from_secs(10),
        async || handler.finished() >= 3 && broker.depth(&dlq).await == 1,
    )
    .await;
    stop(shutdown, run).await;

    let attempts: Vec<u32> = handler
        .seen()
        .iter()
        .filter(|(id, _, _)| *id == retried_id)
        .map(|(_, a, _)| *a)
        .collect();
    assert_eq!(
        attempts,
        vec![0, 1],
        "retried once through the quorum retry queue"
    );
    let depths = broker.topology.depths(&broker.channel).await.unwrap();
    let analysis = depths.iter().find(|d| d.queue == "analysis").unwrap();
    assert_eq!(
        (analysis.ready, analysis.retrying, analysis.dead_lettered),
        (0, 0, 1)
    );
    broker.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_without_reaching_handle() {
    let broker = Broker::new().await;
    // No message_id and no type: not even a task.
    broker
        .channel
        .basic_publish(
            broker.topology.exchange().into(),
            "real_time".into(),
            BasicPublishOptions::default(),
            b"garbage",
            BasicProperties::default(),
        )
        .await
        .expect("basic.publish");

    let handler = Scripted::new(|_: &Delivery| Outcome::Done);
    let (shutdown, run) = broker.consume(config("real_time"), Arc::clone(&handler));
    let dlq = broker.topology.dead_letter_queue("real_time");
    eventually(
        "a dead-lettered message",
        Duration::from_secs(10),
        async || broker.depth(&dlq).await == 1,
    )
    .await;
    stop(shutdown, run).await;

    assert!(handler.seen().is_empty());
    let dead = handler.dead();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].1.contains("message_id"),
        "error was {:?}",
        dead[0].1
    );
    broker.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_and_acks_the_batch_in_flight() {
    let broker = Broker::new().await;
    let publisher = broker.publisher().await;
    let msg = analyze(1);
    publisher.publish(&msg).await.expect("published");

    let slow = Scripted::slow(Duration::from_millis(1500), |_: &Delivery| Outcome::Done);
    let (shutdown, run) = broker.consume(config("analysis"), Arc::clone(&slow));
    eventually(
        "the slow batch to start",
        Duration::from_secs(10),
        async || !slow.seen().is_empty(),
    )
    .await;
    assert_eq!(slow.finished(), 0);
    let cancelled_at = Instant::now();
    stop(shutdown, run).await;
    assert_eq!(
        slow.finished(),
        1,
        "run_consumer returned before the batch finished"
    );
    assert!(cancelled_at.elapsed() >= Duration::from_millis(500));

    // A new consumer must not get the message again.
    let second = Scripted::new(|_: &Delivery| Outcome::Done);
    let (shutdown, run) = broker.consume(config("analysis"), Arc::clone(&second));
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop(shutdown, run).await;
    assert!(second.seen().is_empty(), "redelivered: {:?}", second.seen());
    assert_eq!(broker.total_depth().await, 0);
    broker.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_take_several_queues_and_mixed_batches() {
    let broker = Broker::new().await;
    let publisher = broker.publisher().await;
    publisher.publish(&analyze(1)).await.expect("published");
    let alert = v1::SendCriticalAnomalyAlert {
        task_id: contracts::new_task_id(),
        log_entry_id: 1,
        anomaly_score: 0.99,
        summary: "novel".into(),
    };
    publisher.publish(&alert).await.expect("published");
    publisher
        .publish_task(&contracts::Task::from(v1::DetectAnomalyPatterns {
            task_id: contracts::new_task_id(),
            time_window_hours: 1,
        }))
        .await
        .expect("published");

    let queues: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let record = Arc::clone(&queues);
    let handler = Scripted::new(move |d: &Delivery| {
        record
            .lock()
            .unwrap()
            .insert(d.task_name.clone(), d.queue.clone());
        match d.task() {
            Ok(_) => Outcome::Done,
            Err(e) => Outcome::Fail(e.to_string()),
        }
    });
    let config = ConsumerConfig {
        queues: vec!["analysis".into(), "notifications".into()],
        ..config("analysis")
    };
    let (shutdown, run) = broker.consume(config, Arc::clone(&handler));
    eventually("three tasks", Duration::from_secs(10), async || {
        handler.finished() >= 3
    })
    .await;
    stop(shutdown, run).await;

    let queues = queues.lock().unwrap().clone();
    assert_eq!(
        queues
            .get(contracts::tasks::ANALYZE_LOG_ENTRY)
            .map(String::as_str),
        Some("analysis")
    );
    assert_eq!(
        queues
            .get(contracts::tasks::DETECT_ANOMALY_PATTERNS)
            .map(String::as_str),
        Some("analysis")
    );
    assert_eq!(
        queues
            .get(contracts::tasks::SEND_CRITICAL_ANOMALY_ALERT)
            .map(String::as_str),
        Some("notifications")
    );
    assert_eq!(broker.total_depth().await, 0);
    broker.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_to_a_missing_queue_is_an_error_not_a_loss() {
    let broker = Broker::new().await;
    let publisher = broker.publisher().await;
    broker
        .channel
        .queue_delete(
            broker.topology.queue("maintenance").into(),
            Default::default(),
        )
        .await
        .expect("queue deleted");
    let result = publisher
        .publish(&v1::CleanupOldResults {
            task_id: contracts::new_task_id(),
        })
        .await;
    assert!(
        matches!(result, Err(MqError::Unroutable { .. })),
        "{result:?}"
    );
    // The publisher stays usable.
    publisher.publish(&analyze(1)).await.expect("published");
    broker.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_reconnects_after_its_connection_is_closed() {
    let broker = Broker::new().await;
    let publisher = broker.publisher().await;
    publisher.close().await;
    assert!(!publisher.is_connected());
    publisher
        .publish(&analyze(1))
        .await
        .expect("published after reconnect");
    assert!(publisher.is_connected());
    assert_eq!(broker.depth(&broker.topology.queue("analysis")).await, 1);
    broker.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_fails_fast_when_the_broker_is_unreachable() {
    let url = "amqp://guest:guest@127.0.0.1:1/%2f";
    let config = PublisherConfig {
        timeout: Duration::from_secs(2),
        ..PublisherConfig::default()
    };
    let started = Instant::now();
    let result = Publisher::connect_with(
        url,
        Topology::new("unreachable."),
        "mq-tests",
        config.clone(),
    )
    .await;
    assert!(result.is_err());
    assert!(started.elapsed() < Duration::from_secs(3));

    let lazy = Publisher::lazy(url, Topology::new("unreachable."), "mq-tests", config);
    assert!(!lazy.is_connected());
    let started = Instant::now();
    let result = lazy.publish(&analyze(1)).await;
    assert!(result.is_err(), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!lazy.is_connected());
}

/// Closes, from the broker side, every connection whose client-provided name is `name`.
/// Returns false when `rabbitmqctl` is not usable here (the test then skips).
fn broker_closes_connections_named(name: &str) -> bool {
    let listed = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "pid", "client_properties"])
        .output();
    let Ok(listed) = listed else {
        return false;
    };
    if !listed.status.success() {
        return false;
    }
    let stdout = String::from_utf8_lossy(&listed.stdout);
    let pids: Vec<&str> = stdout
        .lines()
        .filter(|line| line.contains(name))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(!pids.is_empty(), "no connection named {name} in:\n{stdout}");
    for pid in pids {
        let closed = std::process::Command::new("rabbitmqctl")
            .args([
                "-q",
                "close_connection",
                pid,
                "test: simulated broker restart",
            ])
            .status()
            .expect("rabbitmqctl runs");
        assert!(closed.success());
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_and_publisher_survive_the_broker_dropping_them() {
    let broker = Broker::new().await;
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let publisher_name = format!("mq-tests-publisher-{unique}");
    let consumer_name = format!("mq-tests-consumer-{unique}");
    let publisher = Publisher::connect(&broker.url, broker.topology.clone(), &publisher_name)
        .await
        .expect("publisher connected");
    let handler = Scripted::new(|_: &Delivery| Outcome::Done);
    let config = ConsumerConfig {
        connection_name: consumer_name.clone(),
        ..config("analysis")
    };
    let (shutdown, run) = broker.consume(config, Arc::clone(&handler));
    publisher.publish(&analyze(1)).await.expect("published");
    eventually("the first task", Duration::from_secs(10), async || {
        handler.finished() >= 1
    })
    .await;

    let closed = tokio::task::spawn_blocking(move || {
        broker_closes_connections_named(&publisher_name)
            && broker_closes_connections_named(&consumer_name)
    })
    .await
    .expect("rabbitmqctl task");
    if !closed {
        eprintln!("rabbitmqctl is not usable here; skipping the broker-drop part");
    } else {
        eventually(
            "the publisher to notice",
            Duration::from_secs(5),
            async || !publisher.is_connected(),
        )
        .await;
    }

    publisher
        .publish(&analyze(2))
        .await
        .expect("published after the broker dropped the publisher");
    eventually(
        "the task after the drop",
        Duration::from_secs(15),
        async || handler.finished() >= 2,
    )
    .await;
    stop(shutdown, run).await;
    assert_eq!(broker.total_depth().await, 0);
    broker.delete().await;
}

/// A message that makes the handler panic costs attempts for itself only: the batch it
/// came in is handled again message by message, the others are acked at their first
/// attempt, and only the panicking one is retried and dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_message_does_not_spend_the_attempts_of_its_batch() {
    let broker = Broker::new().await;
    let publisher = broker.publisher().await;
    let messages: Vec<v1::AnalyzeLogEntry> = (0..8).map(analyze).collect();
    let poison = messages[3].task_id.clone();
    for m in &messages {
        publisher.publish(m).await.expect("published");
    }
    let bad = poison.clone();
    let handler = Scripted::new(move |d: &Delivery| {
        assert!(d.task_id != bad, "this message always panics the handler");
        Outcome::Done
    });
    let (shutdown, run) = broker.consume(config("analysis"), Arc::clone(&handler));
    eventually(
        "the panicking message dead-lettered",
        Duration::from_secs(20),
        async || !handler.dead().is_empty(),
    )
    .await;
    stop(shutdown, run).await;

    let dead = handler.dead();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, poison);
    assert_eq!(dead[0].1, "handler panicked");
    for (id, attempt, _) in handler.seen() {
        if id != poison {
            assert_eq!(attempt, 0, "{id} was retried for another message's panic");
        }
    }
    assert_eq!(handler.finished(), 7, "the seven others were handled");
    assert_eq!(
        broker.total_depth().await,
        1,
        "nothing left but the dead letter"
    );
    broker.delete().await;
}
