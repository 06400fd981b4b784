//! Every binary's `/metrics` passes `promtool check metrics` (Debian's `prometheus`
//! package) after a little traffic, and carries the metrics the dashboard and the alert
//! rules in `deploy/` query.

use std::{
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

use logcanary_e2e::{entry_now, Stack};

const T: Duration = Duration::from_secs(60);

async fn scrape(client: &reqwest::Client, admin: &str) -> String {
    // A readiness probe refreshes the pool and broker gauges, as Kubernetes' probes do.
    let _ = client.get(format!("{admin}/readyz")).send().await;
    client
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

fn promtool_check(binary: &str, text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool on PATH (Debian's prometheus package; `make setup`)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("writing to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "{binary}: promtool check metrics failed:\n{}{}\n--- metrics ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_has(binary: &str, text: &str, names: &[&str]) {
    for name in names {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{binary}: /metrics has no {name}:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_binary_serves_metrics_that_pass_promtool() {
    let stack = Stack::start(&[]).await;
    let (mut realtime, realtime_port) = stack.spawn_realtime_worker(&[]).await;
    // Started here rather than with `start_notifier`, to know its admin port.
    let (mut notifier, ports) =
        test_support::Spawned::start_on_free_ports("notifier", &[], 1, |ports| {
            vec![
                ("DATABASE_URL", stack.db.url.clone()),
                ("AMQP_URL", test_support::amqp_url()),
                ("LOGCANARY_AMQP_PREFIX", stack.prefix.clone()),
                ("LOGCANARY_DB_POOL_SIZE", "2".to_owned()),
                ("LOGCANARY_ADMIN_ADDR", format!("127.0.0.1:{}", ports[0])),
            ]
        })
        .await;
    let notifier_port = ports[0];
    let (mut scheduler, scheduler_port) = stack.spawn_scheduler(&[]).await;

    // A little traffic: a few entries through the API and the analysis worker, one 404.
    let mut last = None;
    for i in 0..4 {
        let (status, created) = stack
            .post_signed(
                "/api/logs/",
                &entry_now("ERROR", &format!("disk /dev/sda{i} failed to respond")),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        last = created["analysis_task_id"].as_str().map(str::to_owned);
    }
    let task_id = last.expect("a task id");
    stack.wait_task(&task_id, "SUCCESS", T).await;
    let _ = stack
        .client
        .get(format!("{}/api/no-such-route/", stack.api))
        .send()
        .await;

    let admins = [
        ("ingest-api", stack.api_admin.clone()),
        (
            "analysis-worker",
            format!("http://127.0.0.1:{}", stack.worker_admin_port),
        ),
        (
            "realtime-worker",
            format!("http://127.0.0.1:{realtime_port}"),
        ),
        ("notifier", format!("http://127.0.0.1:{notifier_port}")),
        ("scheduler", format!("http://127.0.0.1:{scheduler_port}")),
    ];
    for (binary, admin) in &admins {
        let text = scrape(&stack.client, admin).await;
        promtool_check(binary, &text);
        let common: &[&str] = &["logcanary_db_pool_connections", "logcanary_amqp_connected"];
        assert_has(binary, &text, common);
        let specific: &[&str] = match *binary {
            "ingest-api" => &[
                "logcanary_http_requests_total{",
                "logcanary_http_request_duration_seconds_bucket{",
                "logcanary_entries_ingested_total",
            ],
            "analysis-worker" => &[
                "logcanary_tasks_total{",
                "logcanary_queue_latency_seconds_bucket{",
                "logcanary_inference_batch_size_bucket",
                "logcanary_scoring_seconds_bucket",
                "logcanary_embedding_cache_misses_total",
                "logcanary_stream_settled",
                "logcanary_mq_deliveries_total{",
            ],
            _ => &[],
        };
        assert_has(binary, &text, specific);
    }

    scheduler.terminate();
    notifier.terminate();
    realtime.terminate();
    stack.stop().await;
}
