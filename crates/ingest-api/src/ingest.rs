//! The durable write path: store entries and task rows, then publish the tasks.
//!
//! Requests are not written one by one. Each request hands its [`Submission`] to a small
//! pool of committers over a channel; a committer takes every submission waiting at that
//! moment, writes them all in one transaction and answers each request as soon as that
//! transaction commits. Under light load a group is a single request (no added latency);
//! under heavy load groups grow by themselves, which is what lets one Postgres on a small
//! machine accept thousands of signed requests per second.
//!
//! The committed group's messages then go to the publish stage (a transactional outbox):
//! publishers take every group waiting, publish all messages with one round of publisher
//! confirms and record the outcome on the task rows. The reply does not wait for the
//! broker: durability comes from the commit, and a task whose publish failed (or never
//! happened because the process died) stays PENDING with `published_at` NULL, which is
//! what the scheduler's relay re-publishes. Nothing accepted is lost.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use contracts::{v1, Task};
use db::models::{NewLogEntry, NewTask};
use tokio::sync::{mpsc, oneshot, Mutex};
use uuid::Uuid;

use crate::errors::ApiError;

/// One request's writes.
#[derive(Debug)]
pub struct Submission {
    pub tasks: Vec<NewTask>,
    pub entries: Vec<NewLogEntry>,
    /// The task of each entry, same length as `entries`.
    pub entry_task: Vec<Uuid>,
    /// Filled in once the entry ids are known (they are assigned by the insert).
    pub messages: MessagesFor,
    /// What a shipper sent beside each line, same length as `entries`; empty: nothing.
    pub attributes: Vec<Option<serde_json::Value>>,
}

impl Submission {
    /// One task over `entries` (possibly none): the usual shape of a request.
    pub fn one_task(task: NewTask, entries: Vec<NewLogEntry>, messages: MessagesFor) -> Self {
        Self {
            entry_task: vec![task.id; entries.len()],
            tasks: vec![task],
            entries,
            messages,
            attributes: Vec::new(),
        }
    }

    /// Shipped entries: one `batch_analyze_logs` task per [`validation::MAX_BATCH`]
    /// entries (the batch endpoint's size, which the workers are built for), all stored in
    /// one transaction, with each entry's attributes.
    pub fn shipped(entries: Vec<NewLogEntry>, attributes: Vec<Option<serde_json::Value>>) -> Self {
        let mut tasks = Vec::new();
        let mut entry_task = Vec::with_capacity(entries.len());
        for chunk in entries.chunks(crate::validation::MAX_BATCH) {
            let id = Uuid::new_v4();
            tasks.push(new_task(
                id,
                contracts::tasks::BATCH_ANALYZE_LOGS,
                serde_json::json!({"count": chunk.len()}),
            ));
            entry_task.extend(std::iter::repeat_n(id, chunk.len()));
        }
        Self {
            tasks,
            entries,
            entry_task,
            messages: MessagesFor::BatchPerTask,
            attributes,
        }
    }
}

/// A task row for `task_name`, routed to its queue.
pub fn new_task(id: Uuid, task_name: &'static str, args: serde_json::Value) -> NewTask {
    NewTask {
        id,
        task_name: task_name.into(),
        queue: contracts::tasks::queue_for(task_name)
            .unwrap_or(contracts::queues::ANALYSIS)
            .into(),
        args,
    }
}

/// How to build the messages once entry ids exist.
#[derive(Debug)]
pub enum MessagesFor {
    /// One `analyze_log_entry` per entry (task ids from `entry_task`).
    EachEntry,
    /// One `batch_analyze_logs` over all entries.
    Batch { task_id: Uuid },
    /// One `batch_analyze_logs` per task, over the entries of that task.
    BatchPerTask,
    /// Ready-made messages (tasks without new entries).
    Ready(Vec<Task>),
}

/// What the request gets back: the ids of its entries, in input order.
#[derive(Debug, Clone)]
pub struct Committed {
    pub entry_ids: Vec<i64>,
}

type Reply = oneshot::Sender<Result<Committed, ApiError>>;

/// Handle used by request handlers; cheap to clone.
#[derive(Clone)]
pub struct Ingestor {
    tx: mpsc::Sender<(Submission, Reply)>,
    /// Committed groups whose messages are not yet published (or recorded as failed).
    unpublished: Arc<AtomicUsize>,
}

/// Messages of one committed group, on their way to the broker.
struct PublishJob {
    messages: Vec<Task>,
}

/// Most entries written in one transaction; keeps a transaction short and its statement
/// parameters bounded.
const MAX_ENTRIES_PER_COMMIT: usize = 20_000;

impl Ingestor {
    /// Starts `committers` committer tasks and as many publishers.
    pub fn start(db: db::Db, outbox: outbox::Outbox, committers: usize) -> Self {
        let (tx, rx) = mpsc::channel::<(Submission, Reply)>(4096);
        // Bounded: when the broker is slow, committers wait here, and requests wait for
        // committers, instead of memory filling with unpublished messages.
        let (publish_tx, publish_rx) = mpsc::channel::<PublishJob>(256);
        let rx = Arc::new(Mutex::new(rx));
        let publish_rx = Arc::new(Mutex::new(publish_rx));
        let unpublished = Arc::new(AtomicUsize::new(0));
        for _ in 0..committers.max(1) {
            tokio::spawn(committer(
                rx.clone(),
                db.clone(),
                publish_tx.clone(),
                unpublished.clone(),
            ));
            tokio::spawn(publish_stage(
                publish_rx.clone(),
                outbox.clone(),
                unpublished.clone(),
            ));
        }
        Self { tx, unpublished }
    }

    /// Waits (up to `timeout`) until every committed group has been through the publish
    /// stage; called on shutdown so a clean stop leaves nothing for the relay.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.unpublished.load(Ordering::Acquire) > 0 {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Stores and publishes; returns after the commit (and the publish attempt).
    pub async fn submit(&self, submission: Submission) -> Result<Committed, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((submission, reply))
            .await
            .map_err(|_| ApiError::Unavailable("the ingest pipeline is shutting down".into()))?;
        answer
            .await
            .map_err(|_| ApiError::Internal("the ingest committer stopped".into()))?
    }
}

async fn committer(
    rx: Arc<Mutex<mpsc::Receiver<(Submission, Reply)>>>,
    db: db::Db,
    publish: mpsc::Sender<PublishJob>,
    unpublished: Arc<AtomicUsize>,
) {
    loop {
        let mut group = Vec::new();
        {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut entries = first.0.entries.len();
            group.push(first);
            while entries < MAX_ENTRIES_PER_COMMIT {
                match rx.try_recv() {
                    Ok(next) => {
                        entries += next.0.entries.len();
                        group.push(next);
                    }
                    Err(_) => break,
                }
            }
        }
        if let Some(job) = commit_group(&db, group).await {
            unpublished.fetch_add(1, Ordering::AcqRel);
            if publish.send(job).await.is_err() {
                unpublished.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

/// Commits a group and answers its requests; returns the messages to publish.
async fn commit_group(db: &db::Db, group: Vec<(Submission, Reply)>) -> Option<PublishJob> {
    let started = Instant::now();
    let (submissions, replies): (Vec<Submission>, Vec<Reply>) = group.into_iter().unzip();
    let requests = submissions.len();

    let mut all_tasks = Vec::new();
    let mut all_entries = Vec::new();
    let mut all_entry_task = Vec::new();
    let with_attributes = submissions.iter().any(|s| !s.attributes.is_empty());
    let mut all_attributes = Vec::new();
    let mut sizes = Vec::with_capacity(requests);
    let mut message_plans = Vec::with_capacity(requests);
    for s in submissions {
        sizes.push(s.entries.len());
        all_entry_task.extend(s.entry_task.iter().copied());
        if with_attributes {
            if s.attributes.is_empty() {
                all_attributes.extend(std::iter::repeat_n(None, s.entries.len()));
            } else {
                all_attributes.extend(s.attributes);
            }
        }
        let task_order: Vec<Uuid> = s.tasks.iter().map(|t| t.id).collect();
        message_plans.push((s.messages, s.entry_task, task_order));
        all_tasks.extend(s.tasks);
        all_entries.extend(s.entries);
    }
    let entry_count = all_entries.len();
    let stored = db
        .run(move |conn| {
            db::entries::insert_with_tasks_and_attributes(
                conn,
                &all_tasks,
                &all_entries,
                &all_entry_task,
                &all_attributes,
            )
        })
        .await;
    let ids = match stored {
        Ok(ids) => ids,
        Err(error) => {
            let error = ApiError::from(error);
            for reply in replies {
                let _ = reply.send(Err(clone_error(&error)));
            }
            return None;
        }
    };
    metrics::counter!("logcanary_entries_ingested_total").increment(entry_count as u64);

    // Split ids back per request and build the messages.
    let mut per_request_ids = Vec::with_capacity(requests);
    let mut messages = Vec::new();
    let mut offset = 0;
    for (size, (plan, entry_task, task_order)) in sizes.into_iter().zip(message_plans) {
        let ids = ids[offset..offset + size].to_vec();
        offset += size;
        match plan {
            MessagesFor::EachEntry => {
                for (id, task) in ids.iter().zip(entry_task) {
                    messages.push(Task::AnalyzeLogEntry(v1::AnalyzeLogEntry {
                        task_id: task.to_string(),
                        log_entry_id: *id,
                    }));
                }
            }
            MessagesFor::Batch { task_id } => {
                messages.push(Task::BatchAnalyzeLogs(v1::BatchAnalyzeLogs {
                    task_id: task_id.to_string(),
                    log_entry_ids: ids.clone(),
                }))
            }
            MessagesFor::BatchPerTask => {
                for task in task_order {
                    let log_entry_ids = ids
                        .iter()
                        .zip(&entry_task)
                        .filter(|(_, t)| **t == task)
                        .map(|(id, _)| *id)
                        .collect();
                    messages.push(Task::BatchAnalyzeLogs(v1::BatchAnalyzeLogs {
                        task_id: task.to_string(),
                        log_entry_ids,
                    }));
                }
            }
            MessagesFor::Ready(ready) => messages.extend(ready),
        }
        per_request_ids.push(ids);
    }

    metrics::histogram!("logcanary_ingest_commit_size").record(requests as f64);
    metrics::histogram!("logcanary_ingest_commit_seconds").record(started.elapsed().as_secs_f64());
    for (reply, entry_ids) in replies.into_iter().zip(per_request_ids) {
        let _ = reply.send(Ok(Committed { entry_ids }));
    }
    Some(PublishJob { messages })
}

/// Publishes committed groups: takes every job waiting, one round of confirms for all,
/// then records the outcome on the task rows.
async fn publish_stage(
    rx: Arc<Mutex<mpsc::Receiver<PublishJob>>>,
    outbox: outbox::Outbox,
    unpublished: Arc<AtomicUsize>,
) {
    loop {
        let mut jobs = 0;
        let mut messages = Vec::new();
        {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            jobs += 1;
            messages.extend(first.messages);
            while messages.len() < MAX_ENTRIES_PER_COMMIT {
                match rx.try_recv() {
                    Ok(next) => {
                        jobs += 1;
                        messages.extend(next.messages);
                    }
                    Err(_) => break,
                }
            }
        }
        publish_and_record(&outbox, &messages).await;
        unpublished.fetch_sub(jobs, Ordering::AcqRel);
    }
}

/// Publishes through the outbox (which records the outcome on the task rows); a failure
/// leaves the tasks PENDING for the relay.
async fn publish_and_record(outbox: &outbox::Outbox, messages: &[Task]) {
    let started = Instant::now();
    if outbox.publish_tasks(messages).await.is_err() {
        metrics::counter!("logcanary_publish_failures_total").increment(1);
    }
    metrics::histogram!("logcanary_publish_seconds").record(started.elapsed().as_secs_f64());
}

fn clone_error(e: &ApiError) -> ApiError {
    match e {
        ApiError::Unavailable(s) => ApiError::Unavailable(s.clone()),
        ApiError::QueryTimeout(s) => ApiError::QueryTimeout(s.clone()),
        ApiError::Internal(s) => ApiError::Internal(s.clone()),
        other => ApiError::Internal(other.to_string()),
    }
}
