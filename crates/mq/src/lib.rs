//! RabbitMQ plumbing for logcanary: named connections, the broker topology (direct
//! exchange, one durable work queue per task queue, delay-level retry queues and a
//! dead-letter queue each), a confirmed [`Publisher`] that reconnects lazily, and the
//! consumer runner [`run_consumer`] that turns a [`Handler`]'s [`Outcome`]s into ack,
//! retry-with-backoff or dead-letter.
//!
//! This crate knows queues and task names (from `contracts`) but nothing about what a task
//! does: it must not depend on the database, the detector, the HTTP API, or any binary
//! crate. Handlers bring that in from the outside. Its only logcanary dependencies are
//! `contracts` and `common` (for the admin server every consumer exposes, [`service`]).
//!
//! # Wire contract
//!
//! Every task message is persistent (`delivery_mode` 2), has `message_id` = task id,
//! `type` = task name, `timestamp`, `app_id`, `content_type` `application/x-protobuf`,
//! and headers `x-schema-version` and `x-attempt` (0 on first publish). Retried copies add
//! `x-last-error`; dead-lettered copies add `x-error` and `x-original-queue`.

mod consumer;
mod error;
mod properties;
mod publisher;
pub mod service;
mod topology;

use std::time::Duration;

pub use consumer::{run_consumer, ConsumerConfig, Delivery, Handler, Outcome};
pub use error::{Classify, DeliveryError, MqError};
pub use publisher::{Publisher, PublisherConfig};
pub use topology::{delete_topology, queue_depth, QueueDepth, Topology, RETRY_LEVELS};

/// Re-exported so callers can name channels and connections without their own `lapin`
/// dependency (and so every crate uses the same version).
pub use lapin;

/// How long [`connect`] waits for the TCP connection and AMQP handshake.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a connection named `connection_name` (shown in the RabbitMQ management UI).
///
/// Gives up after [`DEFAULT_CONNECT_TIMEOUT`]. The connection does not recover by itself:
/// [`Publisher`] and [`run_consumer`] reconnect on their own; other callers reconnect by
/// calling this again.
///
/// # Errors
///
/// [`MqError::Amqp`] when the broker refuses or the URL is invalid, [`MqError::Timeout`]
/// when the broker does not answer in time.
pub async fn connect(url: &str, connection_name: &str) -> Result<lapin::Connection, MqError> {
    connect_with_timeout(url, connection_name, DEFAULT_CONNECT_TIMEOUT).await
}

/// [`connect`] with an explicit timeout.
///
/// # Errors
///
/// As [`connect`].
pub async fn connect_with_timeout(
    url: &str,
    connection_name: &str,
    timeout: Duration,
) -> Result<lapin::Connection, MqError> {
    let properties = lapin::ConnectionProperties::default()
        .with_connection_name(connection_name.into())
        .with_client_property("product".into(), "logcanary".into());
    match tokio::time::timeout(timeout, lapin::Connection::connect(url, properties)).await {
        Ok(result) => result.map_err(MqError::amqp("connect")),
        Err(_) => Err(MqError::Timeout {
            op: "connect",
            after: timeout,
        }),
    }
}
