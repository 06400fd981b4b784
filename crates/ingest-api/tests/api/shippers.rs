//! The shipper endpoints (issue 14) at the HTTP level: what each protocol's clients are
//! answered, what is stored, and the refusals that store nothing. The real clients are
//! driven end to end in `logcanary-e2e::e2e shippers::`.

use std::{io::Write, time::Duration};

use prost::Message;
use serde_json::Value;
use shippers::otlp::proto::{
    collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse},
    common::v1::{any_value, AnyValue, KeyValue},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};
use test_support::{READ_ONLY_TOKEN, SHIPPER_TOKEN};

use crate::helpers::{spawn_app, TestApp};

fn text(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.to_owned())),
    })
}

fn record(severity: i32, body: Option<AnyValue>, at_ns: u64) -> LogRecord {
    LogRecord {
        time_unix_nano: at_ns,
        severity_number: severity,
        body,
        ..Default::default()
    }
}

fn export(service: &str, records: Vec<LogRecord>) -> Vec<u8> {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: text(service),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

async fn post(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = app.client.post(format!("{}{path}", app.address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(body).send().await.expect("request sent")
}

const PROTOBUF: (&str, &str) = ("Content-Type", "application/x-protobuf");

fn now_ns() -> u64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64
}

#[tokio::test]
async fn otlp_partial_success_counts_the_refused_records_and_stores_the_others() {
    let app = spawn_app().await;
    let at = now_ns();
    let body = export(
        "checkout",
        vec![
            record(17, text("payment declined for order 7"), at),
            record(9, None, at),
            record(21, text("kernel panic on cpu 3"), at),
        ],
    );
    let resp = post(&app, "/v1/logs", Some(SHIPPER_TOKEN), &[PROTOBUF], body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/x-protobuf",
        "answered in the request's format"
    );
    let answer = ExportLogsServiceResponse::decode(resp.bytes().await.expect("body"))
        .expect("an ExportLogsServiceResponse");
    let partial = answer.partial_success.expect("partial_success is set");
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial.error_message.contains("record 1"),
        "{}",
        partial.error_message
    );
    assert_eq!(app.counts().await, (2, 1), "two lines, one batch task");
    let rows = app
        .db
        .count("SELECT count(*) FROM log_entries WHERE source = 'checkout' AND severity IN ('ERROR', 'CRITICAL') AND attributes->>'service.name' = 'checkout'")
        .await;
    assert_eq!(rows, 2);
}

#[tokio::test]
async fn otlp_json_errors_are_a_status_in_json_and_store_nothing() {
    let app = spawn_app().await;
    let json = ("Content-Type", "application/json");
    let resp = post(
        &app,
        "/v1/logs",
        Some(SHIPPER_TOKEN),
        &[json],
        b"{\"resourceLogs\": 5}".to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let status: Value = resp.json().await.expect("a JSON Status");
    assert_eq!(status["code"], 3, "INVALID_ARGUMENT: {status}");
    assert!(
        status["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{status}"
    );
    let resp = post(&app, "/v1/logs", None, &[json], b"{}".to_vec()).await;
    assert_eq!(resp.status(), 401);
    let status: Value = resp.json().await.expect("a JSON Status");
    assert_eq!(status["code"], 16, "UNAUTHENTICATED: {status}");
    let resp = post(
        &app,
        "/v1/logs",
        Some(SHIPPER_TOKEN),
        &[("Content-Type", "text/plain")],
        b"x".to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 415);
    assert_eq!(app.counts().await, (0, 0));
}

#[tokio::test]
async fn a_gzip_bomb_is_refused_with_413_and_nothing_stored() {
    let app = spawn_app().await;
    // 8 MiB of zeros in 8 KiB: past the test server's 1 MiB limit once inflated.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![0u8; 8 * 1024 * 1024]).expect("gzip");
    let bomb = gz.finish().expect("gzip");
    assert!(bomb.len() < 64 * 1024);
    let resp = post(
        &app,
        "/v1/logs",
        Some(SHIPPER_TOKEN),
        &[PROTOBUF, ("Content-Encoding", "gzip")],
        bomb,
    )
    .await;
    assert_eq!(resp.status(), 413);
    let resp = post(
        &app,
        "/v1/logs",
        Some(SHIPPER_TOKEN),
        &[PROTOBUF, ("Content-Encoding", "br")],
        b"x".to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 415, "an encoding we cannot undo");
    assert_eq!(app.counts().await, (0, 0));
}

#[tokio::test]
async fn credentials_are_checked_before_the_body_and_scopes_hold() {
    let app = spawn_app().await;
    let body = export("x", vec![record(9, text("hello"), now_ns())]);
    // No token, an unknown one, an HMAC-signed request: 401; read-only: 403.
    for token in [None, Some("lc_unknown")] {
        let resp = post(&app, "/v1/logs", token, &[PROTOBUF], body.clone()).await;
        assert_eq!(resp.status(), 401, "{token:?}");
    }
    let signed = test_support::request_signature("POST", "/v1/logs", &body);
    let resp = post(
        &app,
        "/v1/logs",
        None,
        &[PROTOBUF, ("X-HMAC-Signature", &signed)],
        body.clone(),
    )
    .await;
    assert_eq!(
        resp.status(),
        401,
        "an HMAC signature is no shipper credential"
    );
    let resp = post(
        &app,
        "/v1/logs",
        Some(READ_ONLY_TOKEN),
        &[PROTOBUF],
        body.clone(),
    )
    .await;
    assert_eq!(resp.status(), 403);
    // An unauthenticated 900 KiB upload is refused as fast as a tiny one: 401 before the
    // body, whatever its size.
    let resp = post(
        &app,
        "/loki/api/v1/push",
        None,
        &[("Content-Type", "application/json")],
        vec![b' '; 900 * 1024],
    )
    .await;
    assert_eq!(resp.status(), 401);
    // Basic auth with the token as the password (Loki clients), ApiKey (Elasticsearch).
    let resp = app
        .client
        .post(format!("{}/v1/logs", app.address))
        .basic_auth("anyone", Some(SHIPPER_TOKEN))
        .header(PROTOBUF.0, PROTOBUF.1)
        .body(body.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 200);
    let resp = post(
        &app,
        "/_bulk",
        None,
        &[
            ("Authorization", &format!("ApiKey {SHIPPER_TOKEN}")),
            ("Content-Type", "application/x-ndjson"),
        ],
        b"{\"index\":{}}\n{\"message\":\"m\"}\n".to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        app.counts().await,
        (2, 2),
        "only the two authorised requests stored"
    );
}

#[tokio::test]
async fn tokens_made_for_the_database_work_and_revoked_ones_stop() {
    let app = spawn_app().await;
    let token = "lc_stored-token-for-this-test";
    let digest = logcanary_ingest_api::tokens::digest(token);
    app.db
        .db
        .run(move |c| db::api_tokens::upsert(c, "stored", &digest, &["ingest"]))
        .await
        .expect("stored");
    let stored_digest = app
        .db
        .count("SELECT count(*) FROM api_tokens WHERE name = 'stored' AND octet_length(token_sha256) = 32 AND position(convert_to('lc_stored', 'UTF8') in token_sha256) = 0")
        .await;
    assert_eq!(stored_digest, 1, "only the digest is stored");
    let body = || export("x", vec![record(9, text("hello"), now_ns())]);
    let resp = post(&app, "/v1/logs", Some(token), &[PROTOBUF], body()).await;
    assert_eq!(resp.status(), 200, "a token created moments ago is found");
    app.db
        .db
        .run(|c| db::api_tokens::revoke(c, "stored"))
        .await
        .expect("revoked");
    test_support::eventually(
        "the revoked token to be refused",
        Duration::from_secs(20),
        || async {
            let resp = post(&app, "/v1/logs", Some(token), &[PROTOBUF], body()).await;
            (resp.status() == 401).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn loki_snappy_protobuf_is_stored_with_its_labels_and_bad_lines_are_named() {
    use shippers::loki::proto::{EntryAdapter, PushRequest, StreamAdapter};
    let app = spawn_app().await;
    let now = chrono::Utc::now();
    let entry = |line: &str, secs: i64| EntryAdapter {
        timestamp: Some(prost_types::Timestamp {
            seconds: secs,
            nanos: 0,
        }),
        line: line.as_bytes().to_vec(),
        structured_metadata: vec![],
    };
    let push = PushRequest {
        streams: vec![StreamAdapter {
            labels: r#"{service_name="billing", level="error", env="prod"}"#.into(),
            entries: vec![
                entry("invoice 9 failed to render", now.timestamp()),
                entry("   ", now.timestamp()),
            ],
            hash: 0,
        }],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&push.encode_to_vec())
        .expect("snappy");
    let resp = post(
        &app,
        "/loki/api/v1/push",
        Some(SHIPPER_TOKEN),
        &[PROTOBUF],
        body,
    )
    .await;
    assert_eq!(resp.status(), 400, "one line refused, as Loki answers");
    let text = resp.text().await.expect("text");
    assert!(text.contains("record 1"), "{text}");
    let stored = app
        .db
        .count(&format!("SELECT count(*) FROM log_entries WHERE source = 'billing' AND severity = 'ERROR' AND attributes->>'env' = 'prod' AND logged_at = to_timestamp({})", now.timestamp()))
        .await;
    assert_eq!(
        stored, 1,
        "the good line is stored with its labels and time"
    );
    let json = br#"{"streams":[{"stream":{"job":"api"},"values":[["1700000000000000000","GET /health 200"]]}]}"#;
    let resp = post(
        &app,
        "/loki/api/v1/push",
        Some(SHIPPER_TOKEN),
        &[("Content-Type", "application/json")],
        json.to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 204);
    assert_eq!(app.counts().await.0, 2);
}

#[tokio::test]
async fn elasticsearch_bulk_answers_per_item_and_the_root_document_only_to_its_clients() {
    let app = spawn_app().await;
    let body = b"{\"index\":{\"_index\":\"app\"}}\n{\"@timestamp\":\"2026-12-01T10:00:00Z\",\"message\":\"disk full\",\"log\":{\"level\":\"error\"},\"host\":{\"name\":\"db-1\"}}\n{\"delete\":{\"_index\":\"app\",\"_id\":\"1\"}}\n{\"create\":{}}\n{\"no_message\":true}\n".to_vec();
    let resp = post(
        &app,
        "/logs-app/_bulk",
        Some(SHIPPER_TOKEN),
        &[("Content-Type", "application/x-ndjson")],
        body,
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-elastic-product"], "Elasticsearch");
    let answer: Value = resp.json().await.expect("json");
    assert_eq!(answer["errors"], true, "{answer:#}");
    let items = answer["items"].as_array().expect("items");
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["index"]["status"], 201, "{answer:#}");
    assert_eq!(items[1]["delete"]["status"], 400, "{answer:#}");
    assert_eq!(items[2]["create"]["status"], 400, "{answer:#}");
    assert_eq!(app.counts().await.0, 1);
    let stored = app
        .db
        .count("SELECT count(*) FROM log_entries WHERE source = 'db-1' AND severity = 'ERROR' AND logged_at = '2026-12-01T10:00:00Z'")
        .await;
    assert_eq!(stored, 1);

    let get = |accept: &'static str, agent: &'static str| {
        app.client
            .get(format!("{}/", app.address))
            .header("Accept", accept)
            .header("User-Agent", agent)
            .send()
    };
    let page = get(
        "text/html,application/xhtml+xml,*/*;q=0.8",
        "Mozilla/5.0 (X11; Linux x86_64) Chrome/156",
    )
    .await
    .expect("page");
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("text/html"));
    let root = get("application/json", "Elastic-Filebeat/8.11.0 (linux; amd64)")
        .await
        .expect("root");
    assert_eq!(root.headers()["x-elastic-product"], "Elasticsearch");
    let root: Value = root.json().await.expect("root document");
    assert!(
        root["version"]["number"]
            .as_str()
            .is_some_and(|v| v.starts_with("8.")),
        "{root:#}"
    );
}
