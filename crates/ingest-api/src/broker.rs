//! The AMQP side of the API: a publisher that connects on first use, so the API starts
//! and keeps accepting entries while the broker is down, and the cached queue depths the
//! dashboard polls.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::Mutex;

use crate::ingest::{Outgoing, Publish};

/// The AMQP publisher, connected on first use and re-created after a failure, so the API
/// starts and keeps accepting entries while the broker is down.
pub struct LazyPublisher {
    url: String,
    topology: mq::Topology,
    state: Mutex<(Option<mq::Publisher>, Option<Instant>)>,
}

/// After a failed connect, fail fast for this long instead of making every request wait
/// for a connect timeout.
const RECONNECT_BACKOFF: Duration = Duration::from_secs(2);

impl LazyPublisher {
    pub fn new(url: String, topology: mq::Topology) -> Self {
        Self {
            url,
            topology,
            state: Mutex::new((None, None)),
        }
    }

    async fn publisher(&self) -> Result<mq::Publisher, String> {
        let mut state = self.state.lock().await;
        if let Some(p) = &state.0 {
            if p.is_connected() {
                return Ok(p.clone());
            }
        }
        if let Some(failed_at) = state.1 {
            if failed_at.elapsed() < RECONNECT_BACKOFF {
                return Err("broker unreachable (recent connection attempt failed)".into());
            }
        }
        match mq::Publisher::connect(&self.url, self.topology.clone(), "ingest-api").await {
            Ok(p) => {
                *state = (Some(p.clone()), None);
                Ok(p)
            }
            Err(e) => {
                *state = (None, Some(Instant::now()));
                Err(format!("cannot connect to the broker: {e}"))
            }
        }
    }

    pub async fn is_connected(&self) -> bool {
        self.state
            .lock()
            .await
            .0
            .as_ref()
            .is_some_and(|p| p.is_connected())
    }
}

/// How long one reading of the broker's queue depths is served before the broker is asked
/// again: every open dashboard polls, and one reading costs 80 passive declares.
const QUEUE_DEPTHS_TTL: Duration = Duration::from_secs(2);

/// The broker's queue depths ([`mq::QueueDepth`]), read at most once per
/// [`QUEUE_DEPTHS_TTL`] however many dashboards poll. An unreachable broker is an answer
/// too (the error text), cached the same way.
pub struct QueueDepths {
    publisher: Arc<LazyPublisher>,
    last: Mutex<Option<(Instant, DepthsReading)>>,
}

/// One reading of the broker: every queue's depth, or why the broker could not be asked.
type DepthsReading = Result<Vec<mq::QueueDepth>, String>;

impl QueueDepths {
    pub fn new(publisher: Arc<LazyPublisher>) -> Self {
        Self {
            publisher,
            last: Mutex::new(None),
        }
    }

    /// The latest reading, taken now if the cached one is older than the TTL. Concurrent
    /// callers wait for one reading instead of each asking the broker.
    pub async fn read(&self) -> DepthsReading {
        let mut last = self.last.lock().await;
        if let Some((at, reading)) = last.as_ref() {
            if at.elapsed() < QUEUE_DEPTHS_TTL {
                return reading.clone();
            }
        }
        let reading = match self.publisher.publisher().await {
            Ok(p) => p.queue_depths().await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        *last = Some((Instant::now(), reading.clone()));
        reading
    }
}

#[async_trait::async_trait]
impl Publish for LazyPublisher {
    async fn publish(&self, messages: &[Outgoing]) -> Result<(), String> {
        let publisher = self.publisher().await?;
        Publish::publish(&publisher, messages).await
    }
}
