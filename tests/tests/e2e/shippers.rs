//! Issue 14, with the real clients: the OpenTelemetry Python SDK (OTLP/HTTP, protobuf with
//! gzip and the JSON encoding), python-logging-loki (Loki push), the official Elasticsearch
//! client's `helpers.bulk`, and syslog-ng from Debian tailing a file into `/_bulk`, each
//! pointed at the stack with nothing but a URL and an API token. Each test checks what a
//! user would see: the lines stored and scored, with their level, source and timestamp;
//! and that a bad body, or a token without the `ingest` scope, is refused with nothing
//! stored.
//!
//! The clients live in `.cache/shippers-venv` and syslog-ng in Debian's packages, which
//! `make test` (scripts/setup.sh -> scripts/fetch-shippers.sh) installs.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use logcanary_e2e::Stack;
use serde_json::Value;
use test_support::{READ_ONLY_TOKEN, SHIPPER_TOKEN};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
        .to_path_buf()
}

fn python() -> PathBuf {
    let python = root().join(".cache/shippers-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `make test` (or `bash scripts/fetch-shippers.sh`), which installs \
         the pinned shipper clients into .cache/shippers-venv",
        python.display()
    );
    python
}

/// Runs `tests/shippers/<script>` with `args`; panics with its output unless it exits 0.
async fn run_client(script: &str, args: &[&str]) -> String {
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(python())
            .arg(root().join("tests/shippers").join(script))
            .args(args)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{script} did not finish within 120 s"))
    .unwrap_or_else(|e| panic!("running {script}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
}

fn run_id(kind: &str) -> String {
    format!("{kind}{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// The entries whose message contains `run`, once `count` of them are stored and analysed
/// (scored by the worker), oldest first, each with its detail (attributes).
async fn scored_entries(stack: &Stack, run: &str, count: usize) -> Vec<Value> {
    let since = (chrono::Utc::now() - chrono::Duration::hours(2))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let path = format!("/api/logs/?q={run}&since={since}&limit=100");
    let list = test_support::eventually(
        &format!("{count} entries of {run} stored and analysed"),
        Duration::from_secs(90),
        || async {
            let page = stack.get(&path).await;
            let rows = page["results"].as_array().cloned().unwrap_or_default();
            (rows.len() == count && rows.iter().all(|r| r["status"] == "analyzed")).then_some(rows)
        },
    )
    .await;
    let mut detailed = Vec::new();
    for row in list.iter().rev() {
        detailed.push(stack.get(&format!("/api/logs/{}/", row["id"])).await);
    }
    detailed
}

/// What every shipper test checks of its lines: the levels in order, one source, scores
/// written, timestamps within the last minutes.
fn assert_lines(entries: &[Value], severities: &[&str], source: &str) {
    let got: Vec<&str> = entries
        .iter()
        .map(|e| e["severity"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(got, severities, "levels of {entries:#?}");
    for e in entries {
        assert_eq!(e["source"], source, "source of {e:#}");
        assert!(e["anomaly_score"].is_number(), "scored: {e:#}");
        assert!(e["is_anomaly"].is_boolean(), "verdict: {e:#}");
        let at = chrono::DateTime::parse_from_rfc3339(e["timestamp"].as_str().unwrap_or(""))
            .unwrap_or_else(|err| panic!("timestamp of {e:#}: {err}"));
        let age = chrono::Utc::now() - at.with_timezone(&chrono::Utc);
        assert!(
            age < chrono::Duration::minutes(10) && age > chrono::Duration::seconds(-60),
            "timestamp {at} of {e:#} is the line's time, not something else"
        );
    }
}

/// How many entries are stored in all (to show a refused request stored nothing).
async fn stored_count(stack: &Stack) -> i64 {
    stack.db.count("SELECT count(*) FROM log_entries").await
}

async fn post_raw(
    stack: &Stack,
    path: &str,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, String) {
    let resp = stack
        .client
        .post(format!("{}{path}", stack.api))
        .bearer_auth(token)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .expect("POST sent");
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

/// A bad body and a token without `ingest` are refused on `path`, nothing stored.
async fn assert_refusals(stack: &Stack, path: &str, content_type: &str, good: Vec<u8>) {
    let before = stored_count(stack).await;
    let (status, body) = post_raw(
        stack,
        path,
        SHIPPER_TOKEN,
        content_type,
        b"\x0a\xff\xff\xff\xff\x0f{not a body".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "a bad body on {path}: {body}");
    let (status, body) = post_raw(stack, path, READ_ONLY_TOKEN, content_type, good.clone()).await;
    assert_eq!(status, 403, "a read-only token on {path}: {body}");
    let (status, body) = post_raw(stack, path, "lc_not-a-token", content_type, good).await;
    assert_eq!(status, 401, "an unknown token on {path}: {body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        stored_count(stack).await,
        before,
        "refused requests on {path} stored nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opentelemetry_sdk_ships_protobuf_and_json_and_the_lines_are_scored() {
    let stack = Stack::start(&[]).await;
    for encoding in ["protobuf", "json"] {
        let run = run_id(encoding);
        let service = format!("checkout-{encoding}");
        run_client(
            "otel_send.py",
            &[&stack.api, SHIPPER_TOKEN, encoding, &service, &run],
        )
        .await;
        let entries = scored_entries(&stack, &run, 4).await;
        assert_lines(
            &entries,
            &["INFO", "WARNING", "ERROR", "CRITICAL"],
            &service,
        );
        let attributes = &entries[0]["attributes"];
        assert_eq!(
            attributes["service.name"],
            service.as_str(),
            "{attributes:#}"
        );
        assert_eq!(
            attributes["deployment.environment"], "e2e",
            "{attributes:#}"
        );
    }
    let json = br#"{"resourceLogs":[]}"#.to_vec();
    assert_refusals(&stack, "/v1/logs", "application/json", json).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loki_client_pushes_and_the_lines_are_scored() {
    let stack = Stack::start(&[]).await;
    let run = run_id("loki");
    run_client(
        "loki_send.py",
        &[&stack.api, SHIPPER_TOKEN, "billing", &run],
    )
    .await;
    let entries = scored_entries(&stack, &run, 4).await;
    assert_lines(
        &entries,
        &["INFO", "WARNING", "ERROR", "CRITICAL"],
        "billing",
    );
    assert_eq!(entries[0]["attributes"]["env"], "e2e", "{:#}", entries[0]);
    let json = br#"{"streams":[]}"#.to_vec();
    assert_refusals(&stack, "/loki/api/v1/push", "application/json", json).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_elasticsearch_client_bulk_indexes_and_the_lines_are_scored() {
    let stack = Stack::start(&[]).await;
    let run = run_id("es");
    let out = run_client("es_send.py", &[&stack.api, SHIPPER_TOKEN, "orders", &run]).await;
    assert!(out.contains("\"success\": 4"), "{out}");
    let entries = scored_entries(&stack, &run, 4).await;
    assert_lines(
        &entries,
        &["INFO", "WARNING", "ERROR", "CRITICAL"],
        "orders",
    );
    // What a Beat asks before it sends.
    let root: Value = stack
        .client
        .get(format!("{}/", stack.api))
        .header("User-Agent", "Elastic-Filebeat/8.11.0 (linux; amd64)")
        .send()
        .await
        .expect("GET /")
        .json()
        .await
        .expect("the Elasticsearch root document");
    assert!(
        root["version"]["number"]
            .as_str()
            .is_some_and(|v| v.starts_with("8.")),
        "{root:#}"
    );
    let good = b"{\"index\":{}}\n{\"message\":\"x\"}\n".to_vec();
    assert_refusals(&stack, "/_bulk", "application/x-ndjson", good).await;
    stack.stop().await;
}

/// syslog-ng's configuration for the test: tail `file`, split each line into time, level
/// and message, and post batches of Elasticsearch bulk actions with the API token. The
/// README shows the same configuration.
fn syslog_ng_config(file: &Path, api: &str, token: &str) -> String {
    format!(
        r#"@version: 3.38
options {{ stats_freq(0); }};
source s_app {{ file("{file}" flags(no-parse) follow-freq(0.2)); }};
parser p_app {{ regexp-parser(patterns("^(?<ts>[^ ]+) (?<lvl>[A-Z]+) (?<msg>.*)$") prefix(".app.")); }};
destination d_logcanary {{
  http(
    url("{api}/_bulk")
    method("POST")
    headers("Authorization: Bearer {token}", "Content-Type: application/x-ndjson")
    body-suffix("\n")
    body("{{\"index\":{{}}}}\n$(format-json --scope none @timestamp=${{.app.ts}} message=${{.app.msg}} log.level=${{.app.lvl}} service.name=payments-file)")
    batch-lines(50)
    batch-timeout(200)
  );
}};
log {{ source(s_app); parser(p_app); destination(d_logcanary); }};
"#,
        file = file.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_ng_tails_a_file_into_the_bulk_endpoint_and_the_lines_are_scored() {
    let syslog_ng = Path::new("/usr/sbin/syslog-ng");
    assert!(
        syslog_ng.exists(),
        "{} is missing: run `make test` (or `bash scripts/fetch-shippers.sh`), which installs \
         Debian's syslog-ng-core and syslog-ng-mod-http",
        syslog_ng.display()
    );
    let stack = Stack::start(&[]).await;
    let dir = tempfile::tempdir().expect("a directory for syslog-ng");
    let log = dir.path().join("app.log");
    std::fs::write(&log, "").expect("the log file");
    let config = dir.path().join("syslog-ng.conf");
    std::fs::write(&config, syslog_ng_config(&log, &stack.api, SHIPPER_TOKEN))
        .expect("the configuration");
    let mut daemon = tokio::process::Command::new(syslog_ng)
        .arg("--foreground")
        .arg("--no-caps")
        .arg(format!("--cfgfile={}", config.display()))
        .arg(format!(
            "--persist-file={}",
            dir.path().join("persist").display()
        ))
        .arg(format!("--pidfile={}", dir.path().join("pid").display()))
        .arg(format!("--control={}", dir.path().join("ctl").display()))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("syslog-ng starts");
    // Let it open the file at its end before the lines are written.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let run = run_id("syslog");
    let now = chrono::Utc::now();
    let lines: String = [
        ("INFO", "settlement batch 77 started"),
        ("WARNING", "settlement batch 77 is slow"),
        ("ERROR", "settlement batch 77 failed: ledger timeout"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (level, text))| {
        let at = (now - chrono::Duration::seconds(3 - i as i64))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        format!("{at} {level} {text} {run}\n")
    })
    .collect();
    std::fs::write(&log, lines).expect("the lines");
    let entries = scored_entries(&stack, &run, 3).await;
    assert_lines(&entries, &["INFO", "WARNING", "ERROR"], "payments-file");
    let _ = daemon.start_kill();
    let _ = daemon.wait().await;
    stack.stop().await;
}

/// The whole way a shipper's user sees it: lines from the OpenTelemetry SDK, scored, the
/// critical anomaly among them alerted through the notifier to a real Alertmanager, which
/// routes it to its receiver with the line's source and template.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_line_shipped_with_opentelemetry_reaches_alertmanager() {
    use test_support::{alertmanager::Alertmanager, webhook::WebhookSink};
    let receiver = WebhookSink::start().await;
    let Some(am) = Alertmanager::start(&receiver.url("/alertmanager")).await else {
        return;
    };
    let stack = Stack::start(&[]).await;
    let mut notifier = stack
        .start_notifier(&[
            ("LOGCANARY_ALERTMANAGER_URLS", am.url()),
            ("LOGCANARY_ALERT_GROUP_WINDOW_MS", "200".into()),
            ("LOGCANARY_DASHBOARD_URL", stack.api.clone()),
        ])
        .await;
    let run = run_id("am");
    run_client(
        "otel_send.py",
        &[&stack.api, SHIPPER_TOKEN, "protobuf", "checkout-am", &run],
    )
    .await;
    let entries = scored_entries(&stack, &run, 4).await;
    let critical = entries
        .iter()
        .find(|e| e["severity"] == "CRITICAL")
        .expect("the CRITICAL line");
    assert_eq!(critical["is_anomaly"], true, "{critical:#}");
    let alert = test_support::eventually(
        "Alertmanager to route the alert of the shipped CRITICAL line",
        Duration::from_secs(60),
        || async {
            receiver.requests().iter().find_map(|r| {
                let body = r.json();
                body["alerts"]
                    .as_array()?
                    .iter()
                    .find(|a| a["labels"]["source"] == "checkout-am")
                    .cloned()
            })
        },
    )
    .await;
    assert_eq!(alert["status"], "firing", "{alert:#}");
    assert_eq!(alert["labels"]["alertname"], "LogcanaryCriticalAnomaly");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(
        alert["labels"]["template_id"],
        critical["template_id"].to_string(),
        "{alert:#}"
    );
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("kernel panic")),
        "{alert:#}"
    );
    notifier.terminate();
    drop(am);
    stack.stop().await;
}
