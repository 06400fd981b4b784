use std::time::Duration;

/// Everything that can go wrong talking to the broker.
///
/// All variants except [`MqError::UnknownTask`] and [`MqError::InvalidConfig`] are
/// transient from the caller's point of view: the same call may succeed later.
#[derive(Debug, thiserror::Error)]
pub enum MqError {
    /// The broker or the client library reported an error during `op`.
    #[error("AMQP {op} failed: {source}")]
    Amqp {
        op: &'static str,
        #[source]
        source: lapin::Error,
    },
    /// `op` did not finish within `after`.
    #[error("AMQP {op} timed out after {after:?}")]
    Timeout { op: &'static str, after: Duration },
    /// The broker negatively acknowledged a publish: it did not take the message.
    #[error("broker nacked {task_name} {task_id}")]
    Nacked { task_name: String, task_id: String },
    /// A mandatory publish reached no queue (the topology is missing or wrong).
    #[error("unroutable: exchange {exchange:?} routing key {routing_key:?}: {reply_text}")]
    Unroutable {
        exchange: String,
        routing_key: String,
        reply_text: String,
    },
    /// The broker answered a confirmed publish without a confirm.
    #[error("publisher confirms are not enabled on the channel")]
    ConfirmsNotEnabled,
    /// The broker cancelled the consumer of this queue (deleted, or a node went away).
    #[error("consumer of queue {0:?} was cancelled by the broker")]
    ConsumerCancelled(String),
    /// A connection attempt failed less than `backoff` ago; not retried yet so that
    /// callers fail fast instead of each waiting for a connect timeout.
    #[error("broker unreachable (a connection attempt failed less than {backoff:?} ago)")]
    Backoff { backoff: Duration },
    /// No queue is routed for this task name.
    #[error("no queue routes task {0:?}")]
    UnknownTask(String),
    /// The configuration cannot work (for example zero concurrency).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

/// An error that knows whether trying again can help: what decides between
/// [`crate::Outcome::Retry`] and [`crate::Outcome::Fail`] ([`crate::Outcome::from_error`]).
pub trait Classify: std::fmt::Display {
    /// True when the same work may succeed on a later attempt.
    fn is_retryable(&self) -> bool;
}

impl Classify for MqError {
    fn is_retryable(&self) -> bool {
        self.is_transient()
    }
}

/// What is wrong with a delivery itself; permanent: no retry can fix the message.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The body is not the message its task name says, or the task name is unknown.
    #[error(transparent)]
    Decode(#[from] contracts::ContractError),
    /// The message id is not a task id.
    #[error("task id {0:?} is not a UUID")]
    TaskId(String),
    /// The task has no row (its database was reset, or it was deleted).
    #[error("task {0} has no record in the database")]
    NoRecord(uuid::Uuid),
}

impl Classify for DeliveryError {
    fn is_retryable(&self) -> bool {
        false
    }
}

impl MqError {
    /// Whether the same call may succeed later (everything but a wrong task name or
    /// configuration).
    pub fn is_transient(&self) -> bool {
        !matches!(self, MqError::UnknownTask(_) | MqError::InvalidConfig(_))
    }

    pub(crate) fn amqp(op: &'static str) -> impl FnOnce(lapin::Error) -> MqError {
        move |source| MqError::Amqp { op, source }
    }
}
