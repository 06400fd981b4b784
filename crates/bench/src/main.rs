//! Load generator and ceiling probes for `make bench`.
//!
//! Runs as a separate process on loopback against a running stack, and measures the
//! parts alone (confirmed publishes to RabbitMQ, multi-row inserts to Postgres) so the
//! report can say how close the service gets to what its dependencies allow. Prints one
//! JSON object per measurement on stdout.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::{Parser, Subcommand};
use common::config::{ExposeSecret, SecretString};
use serde_json::json;

mod shipper_load;

#[derive(Parser, Debug)]
#[command(
    name = "logcanary-bench",
    about = "Load the running stack and probe its parts."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Secrets (the HMAC secret, URLs that can hold a password) are `SecretString`s, so the
/// settings' `Debug` never shows them, and `hide_env_values` keeps them out of `--help`.
#[derive(Subcommand, Debug)]
enum Cmd {
    /// Signed single-entry POST /api/logs/ as fast as `concurrency` connections allow,
    /// or at a fixed `rate` (open loop, latency measured from the scheduled send time).
    Single {
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        url: String,
        /// HMAC secret of the stack under load (its development key by default).
        #[arg(long, default_value = "dev-secret")]
        secret: SecretString,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Requests per second; 0 = as fast as possible.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// POST /api/batch-analysis/ with `size`-entry batches.
    Batch {
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        url: String,
        /// HMAC secret of the stack under load (its development key by default).
        #[arg(long, default_value = "dev-secret")]
        secret: SecretString,
        #[arg(long, default_value_t = 1000)]
        size: usize,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Posts a realistic stream (`scripts/make-stream.py`: the 13 Loghub samples
    /// interleaved), repeated to `lines`, in groups of `group` consecutive lines: one group
    /// in `single_every` as single-entry POSTs, the others as one batch POST each. The
    /// backlog a worker then drains (scripts/bench-worker.sh).
    Replay {
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        url: String,
        /// HMAC secret of the stack under load (its development key by default).
        #[arg(long, default_value = "dev-secret")]
        secret: SecretString,
        #[arg(long, default_value = ".cache/bench/loghub-stream.jsonl")]
        file: std::path::PathBuf,
        #[arg(long, default_value_t = 100_000)]
        lines: usize,
        #[arg(long, default_value_t = 200)]
        group: usize,
        #[arg(long, default_value_t = 3)]
        single_every: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// OTLP/HTTP protobuf `POST /v1/logs` with `size`-record requests (an API token).
    Otlp {
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        url: String,
        /// API token of the stack under load (`make run`'s development token by default).
        #[arg(long, default_value = "lc_dev-shipper-token")]
        token: SecretString,
        #[arg(long, default_value_t = 1000)]
        size: usize,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Send the bodies gzip-compressed (`Content-Encoding: gzip`), as the Collector does.
        #[arg(long)]
        gzip: bool,
    },
    /// Loki push (snappy protobuf) `POST /loki/api/v1/push` with `size`-line requests.
    Loki {
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        url: String,
        /// API token of the stack under load (`make run`'s development token by default).
        #[arg(long, default_value = "lc_dev-shipper-token")]
        token: SecretString,
        #[arg(long, default_value_t = 1000)]
        size: usize,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Confirmed publishes per second straight to RabbitMQ (the broker's ceiling).
    Amqp {
        #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
        url: SecretString,
        /// Messages per confirm round (as the ingest committer batches them).
        #[arg(long, default_value_t = 64)]
        batch: usize,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Multi-row inserts of entries + tasks straight to Postgres (the database's ceiling).
    Pg {
        #[arg(
            long,
            env = "DATABASE_URL",
            value_name = "DATABASE_URL",
            hide_env_values = true
        )]
        url: SecretString,
        /// Rows per transaction.
        #[arg(long, default_value_t = 1000)]
        rows: usize,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Single {
            url,
            secret,
            concurrency,
            rate,
            seconds,
        } => single(url, expose(secret), concurrency, rate, seconds).await,
        Cmd::Batch {
            url,
            secret,
            size,
            concurrency,
            seconds,
        } => batch(url, expose(secret), size, concurrency, seconds).await,
        Cmd::Replay {
            url,
            secret,
            file,
            lines,
            group,
            single_every,
            concurrency,
        } => {
            replay(
                url,
                expose(secret),
                file,
                lines,
                group.max(1),
                single_every.max(1),
                concurrency.max(1),
            )
            .await
        }
        Cmd::Otlp {
            url,
            token,
            size,
            concurrency,
            seconds,
            gzip,
        } => {
            shipper_load::run(
                shipper_load::Protocol::Otlp { gzip },
                url,
                expose(token),
                size,
                concurrency,
                seconds,
            )
            .await
        }
        Cmd::Loki {
            url,
            token,
            size,
            concurrency,
            seconds,
        } => {
            shipper_load::run(
                shipper_load::Protocol::Loki,
                url,
                expose(token),
                size,
                concurrency,
                seconds,
            )
            .await
        }
        Cmd::Amqp {
            url,
            batch,
            concurrency,
            seconds,
        } => amqp(expose(url), batch, concurrency, seconds).await,
        Cmd::Pg {
            url,
            rows,
            concurrency,
            seconds,
        } => pg(expose(url), rows, concurrency, seconds).await,
    }
}

fn expose(secret: SecretString) -> String {
    secret.expose_secret().to_owned()
}

static SEQ: AtomicU64 = AtomicU64::new(0);

fn entry(i: u64) -> serde_json::Value {
    let (severity, message) = match i % 20 {
        0 => (
            "ERROR",
            format!(
                "Connection to 10.0.{}.{} refused after {} ms",
                i % 250,
                i % 200,
                i % 900
            ),
        ),
        1 | 2 => (
            "WARNING",
            format!("Slow query on table orders took {} ms", 200 + i % 800),
        ),
        _ => (
            "INFO",
            format!(
                "GET /api/items/{} 200 in {} ms user=u{}",
                i,
                i % 40,
                i % 1000
            ),
        ),
    };
    json!({"timestamp": chrono::Utc::now().to_rfc3339(), "severity": severity, "message": message, "source": "bench"})
}

fn signed(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    let sig =
        common::signing::sign_timestamped(secret.as_bytes(), chrono::Utc::now().timestamp(), &body);
    client
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-HMAC-Signature", sig)
        .body(body)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

async fn single(
    url: String,
    secret: String,
    concurrency: usize,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let endpoint = format!("{url}/api/logs/");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (client, endpoint, secret, errors) = (
            client.clone(),
            endpoint.clone(),
            secret.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n: u64 = 0;
            loop {
                // Open loop: request k of this worker is due at start + k * concurrency / rate.
                let scheduled = if rate > 0 {
                    let due = start
                        + Duration::from_secs_f64(
                            (n * concurrency as u64 + worker as u64) as f64 / rate as f64,
                        );
                    let now = Instant::now();
                    if due > now {
                        tokio::time::sleep(due - now).await;
                    }
                    due
                } else {
                    Instant::now()
                };
                if scheduled >= deadline {
                    break;
                }
                n += 1;
                let body = serde_json::to_vec(&entry(SEQ.fetch_add(1, Ordering::Relaxed)))
                    .unwrap_or_default();
                match signed(&client, &endpoint, &secret, body).send().await {
                    Ok(r) if r.status().as_u16() == 201 => {
                        latencies.push(scheduled.elapsed().as_micros() as u64)
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    println!(
        "{}",
        json!({"bench": "single", "concurrency": concurrency, "target_rate": rate, "seconds": elapsed,
               "accepted": all.len(), "errors": errors.load(Ordering::Relaxed),
               "requests_per_second": all.len() as f64 / elapsed,
               "p50_ms": percentile(&all, 0.50), "p99_ms": percentile(&all, 0.99), "max_ms": percentile(&all, 1.0)})
    );
    Ok(())
}

async fn batch(
    url: String,
    secret: String,
    size: usize,
    concurrency: usize,
    seconds: u64,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let endpoint = format!("{url}/api/batch-analysis/");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, endpoint, secret) = (client.clone(), endpoint.clone(), secret.clone());
        tasks.push(tokio::spawn(async move {
            let (mut entries, mut errors, mut latencies) = (0usize, 0usize, Vec::new());
            while Instant::now() < deadline {
                let list: Vec<_> = (0..size)
                    .map(|_| entry(SEQ.fetch_add(1, Ordering::Relaxed)))
                    .collect();
                let body = serde_json::to_vec(&json!({"log_entries": list})).unwrap_or_default();
                let sent = Instant::now();
                match signed(&client, &endpoint, &secret, body).send().await {
                    Ok(r) if r.status().as_u16() == 202 => {
                        entries += size;
                        latencies.push(sent.elapsed().as_micros() as u64);
                    }
                    _ => errors += 1,
                }
            }
            (entries, errors, latencies)
        }));
    }
    report_batches("batch", size, concurrency, start, tasks).await
}

/// What a batch-shaped run's connections return: entries accepted, failed requests, and
/// each accepted request's latency in microseconds.
type BatchTask = tokio::task::JoinHandle<(usize, usize, Vec<u64>)>;

/// Sums the connections of a batch-shaped run (`batch`, `otlp`, `loki`) and prints its
/// JSON line.
async fn report_batches(
    bench: &str,
    size: usize,
    concurrency: usize,
    start: Instant,
    tasks: Vec<BatchTask>,
) -> anyhow::Result<()> {
    let (mut entries, mut errors, mut latencies) = (0, 0, Vec::new());
    for t in tasks {
        let (e, r, l) = t.await?;
        entries += e;
        errors += r;
        latencies.extend(l);
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    println!(
        "{}",
        json!({"bench": bench, "batch_size": size, "concurrency": concurrency, "seconds": elapsed,
               "entries": entries, "errors": errors, "entries_per_second": entries as f64 / elapsed,
               "p50_ms": percentile(&latencies, 0.5), "p99_ms": percentile(&latencies, 0.99)})
    );
    Ok(())
}

/// One request of a replay: a single entry or a batch.
enum Post {
    Single(serde_json::Value),
    Batch(Vec<serde_json::Value>),
}

async fn replay(
    url: String,
    secret: String,
    file: std::path::PathBuf,
    lines: usize,
    group: usize,
    single_every: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "reading {} (make it with scripts/make-stream.py)",
            file.display()
        )
    })?;
    let stream: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", file.display()))?;
    anyhow::ensure!(!stream.is_empty(), "{} is empty", file.display());
    // Timestamps 5 ms apart, ending now: the stream's own order, all in the past.
    let step_ms = 5i64;
    let base = chrono::Utc::now() - chrono::Duration::milliseconds(step_ms * lines as i64);
    let entries: Vec<serde_json::Value> = (0..lines)
        .map(|i| {
            let mut e = stream[i % stream.len()].clone();
            let at = base + chrono::Duration::milliseconds(step_ms * i as i64);
            e["timestamp"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            e
        })
        .collect();
    let mut posts = Vec::new();
    for (g, chunk) in entries.chunks(group).enumerate() {
        if g % single_every == 0 {
            posts.extend(chunk.iter().cloned().map(Post::Single));
        } else {
            posts.push(Post::Batch(chunk.to_vec()));
        }
    }
    let singles = posts
        .iter()
        .filter(|p| matches!(p, Post::Single(_)))
        .count();
    let requests = posts.len();
    let queue = Arc::new(tokio::sync::Mutex::new(posts.into_iter()));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (queue, client, url, secret, errors) = (
            queue.clone(),
            client.clone(),
            url.clone(),
            secret.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().await.next();
                let Some(post) = next else { break };
                let (endpoint, body, expect) = match post {
                    Post::Single(e) => (format!("{url}/api/logs/"), e, 201),
                    Post::Batch(list) => (
                        format!("{url}/api/batch-analysis/"),
                        json!({"log_entries": list}),
                        202,
                    ),
                };
                let body = serde_json::to_vec(&body).unwrap_or_default();
                match signed(&client, &endpoint, &secret, body).send().await {
                    Ok(r) if r.status().as_u16() == expect => {}
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"bench": "replay", "lines": lines, "stream_lines": stream.len(), "requests": requests,
               "single_entry_requests": singles, "batch_requests": requests - singles,
               "group": group, "errors": errors.load(Ordering::Relaxed), "seconds": elapsed,
               "lines_per_second": lines as f64 / elapsed})
    );
    Ok(())
}

async fn amqp(url: String, batch: usize, concurrency: usize, seconds: u64) -> anyhow::Result<()> {
    let prefix = format!("bench{}.", uuid::Uuid::new_v4().simple());
    let topology = mq::Topology::new(prefix);
    let publisher = mq::Publisher::connect(&url, topology.clone(), "bench")
        .await
        .context("connecting to RabbitMQ")?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let publisher = publisher.clone();
        tasks.push(tokio::spawn(async move {
            let mut sent = 0usize;
            while Instant::now() < deadline {
                let msgs: Vec<_> = (0..batch)
                    .map(|i| contracts::v1::AnalyzeLogEntry {
                        task_id: uuid::Uuid::new_v4().to_string(),
                        log_entry_id: i as i64,
                    })
                    .collect();
                if publisher.publish_many(&msgs).await.is_ok() {
                    sent += batch;
                }
            }
            sent
        }));
    }
    let mut sent = 0;
    for t in tasks {
        sent += t.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    if let Ok(conn) = mq::connect(&url, "bench-cleanup").await {
        if let Ok(ch) = conn.create_channel().await {
            let _ = topology.delete(&ch).await;
        }
    }
    println!(
        "{}",
        json!({"bench": "amqp_confirmed_publish", "batch": batch, "concurrency": concurrency, "seconds": elapsed,
               "messages": sent, "messages_per_second": sent as f64 / elapsed})
    );
    Ok(())
}

async fn pg(url: String, rows: usize, concurrency: usize, seconds: u64) -> anyhow::Result<()> {
    let database = db::Db::connect_lazy(&url, concurrency as u32)?;
    database.ping().await.context("connecting to Postgres")?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let database = database.clone();
        tasks.push(tokio::spawn(async move {
            let mut inserted = 0usize;
            while Instant::now() < deadline {
                // Same shape as the ingest path: one task row per entry, all in one transaction.
                let ids: Vec<uuid::Uuid> = (0..rows).map(|_| uuid::Uuid::new_v4()).collect();
                let tasks: Vec<db::models::NewTask> = ids
                    .iter()
                    .map(|id| db::models::NewTask {
                        id: *id,
                        // Not a real task name: these rows are never published or analysed.
                        task_name: "bench.pg_insert".into(),
                        queue: "bench".into(),
                        args: json!({}),
                    })
                    .collect();
                let entries: Vec<db::models::NewLogEntry> = (0..rows)
                    .map(|i| {
                        let e = entry(i as u64);
                        db::models::NewLogEntry {
                            logged_at: chrono::Utc::now(),
                            severity: e["severity"].as_str().unwrap_or("INFO").to_owned(),
                            message: e["message"].as_str().unwrap_or_default().to_owned(),
                            source: Some("bench-pg".into()),
                        }
                    })
                    .collect();
                let r = database
                    .run(move |c| db::entries::insert_with_tasks(c, &tasks, &entries, &ids))
                    .await;
                if r.is_ok() {
                    inserted += rows;
                }
            }
            inserted
        }));
    }
    let mut inserted = 0;
    for t in tasks {
        inserted += t.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"bench": "pg_multirow_insert", "rows_per_tx": rows, "concurrency": concurrency, "seconds": elapsed,
               "rows": inserted, "rows_per_second": inserted as f64 / elapsed})
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn secrets_never_show_in_help_or_debug() {
        let secrets = [("DATABASE_URL", "postgres://lc:pg-s3cret-1@db:5432/lc")];
        let (help, debug) = test_support::with_env(&secrets, || {
            let mut command = Cli::command();
            let help = command
                .find_subcommand_mut("pg")
                .expect("the pg command")
                .render_long_help()
                .to_string();
            let cli = Cli::try_parse_from(["logcanary-bench", "pg"]).expect("settings parse");
            let Cmd::Pg { url, .. } = &cli.cmd else {
                panic!("parsed {cli:?}");
            };
            assert_eq!(url.expose_secret(), secrets[0].1);
            (help, format!("{cli:?}"))
        });
        assert!(help.contains("DATABASE_URL"), "{help}");
        assert!(!help.contains("s3cret"), "a secret is in --help: {help}");
        assert!(!debug.contains("s3cret"), "a secret is in Debug: {debug}");
        for args in [
            ["logcanary-bench", "single", "--secret=hmac-s3cret"],
            ["logcanary-bench", "amqp", "--url=amqp://u:mq-s3cret@h/%2f"],
        ] {
            let cli = Cli::try_parse_from(args).expect("settings parse");
            assert!(!format!("{cli:?}").contains("s3cret"), "{args:?}");
        }
    }
}
