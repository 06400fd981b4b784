//! `GET /api/stats/queues/`: task rows counted by queue, task name and state, and the
//! broker's queue depths (what Flower showed), read access like every other read. The
//! dashboard polls it.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    access::ReadAccess,
    errors::{ApiError, ErrorBody},
    fallback::resource,
    state::AppState,
};

/// Registers the queue statistics.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/stats/queues/").route(web::get().to(queue_stats)));
}

/// Task rows of one queue, task name and state.
#[derive(Serialize, ToSchema)]
pub struct TaskCountOut {
    queue: String,
    task_name: String,
    status: String,
    count: i64,
}

/// What one broker queue holds right now.
#[derive(Serialize, ToSchema)]
pub struct QueueDepthOut {
    /// The logical queue: `analysis`, `batch_processing`, `real_time`, `notifications` or
    /// `maintenance`.
    queue: String,
    /// Messages waiting for a worker (delivered-but-unacked ones are not counted).
    ready: u32,
    /// Consumers attached: 0 means no worker is serving this queue.
    consumers: u32,
    /// Messages waiting out a retry delay.
    retrying: u32,
    /// Messages in the dead-letter queue, waiting for an operator.
    dead_lettered: u32,
}

/// Task states from Postgres and queue depths from RabbitMQ: what Flower showed.
#[derive(Serialize, ToSchema)]
pub struct QueueStatsOut {
    /// Task rows by queue, name and state, sorted.
    tasks: Vec<TaskCountOut>,
    /// Every broker queue's depth, or null with `broker_error` set when the broker cannot
    /// be asked (the task states above still answer). Read at most every 2 s.
    queues: Option<Vec<QueueDepthOut>>,
    broker_error: Option<String>,
}

/// Task rows counted by queue, task name and state, and the broker's queue depths.
#[utoipa::path(get, path = "/api/stats/queues/", tag = "crate::web",
    responses((status = 200, body = QueueStatsOut), (status = 401, body = ErrorBody)))]
pub async fn queue_stats(
    _: ReadAccess,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (rows, depths) = futures::join!(
        state.read_db.run(db::stats::task_counts),
        state.queue_depths.read()
    );
    let (queues, broker_error) = match depths {
        Ok(depths) => (
            Some(
                depths
                    .into_iter()
                    .map(|d| QueueDepthOut {
                        queue: d.queue.to_owned(),
                        ready: d.ready,
                        consumers: d.consumers,
                        retrying: d.retrying,
                        dead_lettered: d.dead_lettered,
                    })
                    .collect(),
            ),
            None,
        ),
        Err(error) => (None, Some(error)),
    };
    Ok(HttpResponse::Ok().json(QueueStatsOut {
        tasks: rows?
            .into_iter()
            .map(|r| TaskCountOut {
                queue: r.queue,
                task_name: r.task_name,
                status: r.status,
                count: r.count,
            })
            .collect(),
        queues,
        broker_error,
    }))
}
