//! The AMQP side of the API: a publisher that connects on first use, so the API starts
//! and keeps accepting entries while the broker is down, and the cached queue depths the
//! dashboard polls.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// After a failed connect, publishes fail fast for this long instead of making every
/// request wait for a connect timeout.
pub const RECONNECT_BACKOFF: Duration = Duration::from_secs(2);

/// The API's publisher: connects on first use (so the API starts, and keeps accepting
/// entries into the outbox, while the broker is down) and fails fast for
/// [`RECONNECT_BACKOFF`] after a failed connect.
pub fn publisher(url: &str, topology: mq::Topology) -> mq::Publisher {
    mq::Publisher::lazy(
        url,
        topology,
        "ingest-api",
        mq::PublisherConfig {
            reconnect_backoff: RECONNECT_BACKOFF,
            ..mq::PublisherConfig::default()
        },
    )
}

/// How long one reading of the broker's queue depths is served before the broker is asked
/// again: every open dashboard polls, and one reading costs 80 passive declares.
const QUEUE_DEPTHS_TTL: Duration = Duration::from_secs(2);

/// The broker's queue depths ([`mq::QueueDepth`]), read at most once per
/// [`QUEUE_DEPTHS_TTL`] however many dashboards poll. An unreachable broker is an answer
/// too (the error text), cached the same way.
pub struct QueueDepths {
    publisher: mq::Publisher,
    last: Mutex<Option<(Instant, DepthsReading)>>,
}

/// One reading of the broker: every queue's depth, or why the broker could not be asked.
type DepthsReading = Result<Vec<mq::QueueDepth>, String>;

impl QueueDepths {
    pub fn new(publisher: mq::Publisher) -> Self {
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
        let reading = self
            .publisher
            .queue_depths()
            .await
            .map_err(|e| e.to_string());
        *last = Some((Instant::now(), reading.clone()));
        reading
    }
}
