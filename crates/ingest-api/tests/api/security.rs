//! Issue 13, tried from outside: scopes, authenticated reads in production, signatures
//! bound to the request, bounded request bodies and metric labels, secrets that stay
//! secret. Each test names the finding it covers.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{entry, spawn_app, spawn_app_with, Options, TestApp};

/// One request: `sig` is the X-HMAC-Signature value, `bearer` an Authorization token.
async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    body: &[u8],
    sig: Option<String>,
    bearer: Option<&str>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.address))
        .header("Content-Type", "application/json")
        .body(body.to_vec());
    if let Some(sig) = sig {
        req = req.header("X-HMAC-Signature", sig);
    }
    if let Some(token) = bearer {
        req = req.header("Authorization", format!("Bearer {token}"));
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn v2(secret: &str, method: &str, path: &str, body: &[u8]) -> String {
    test_support::request_signature_with(secret.as_bytes(), method, path, body)
}

fn periodic_body(name: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "name": name,
        "task": "logs.tasks.cleanup_old_results",
        "interval": {"every": 1, "period": "hours"},
    }))
    .unwrap()
}

async fn periodic_count(app: &TestApp) -> i64 {
    app.db.count("SELECT count(*) FROM periodic_tasks").await
}

fn detail(body: &Value) -> &str {
    body["detail"].as_str().unwrap_or("")
}

/// Finding 1: a body-only signature (legacy or v1) works only on the old API's POST
/// endpoints; a v2 signature is worth nothing on another method, path or query.
#[tokio::test]
async fn signatures_are_bound_to_the_request() {
    let app = spawn_app().await;
    let secret = test_support::TEST_SECRET;
    let before = periodic_count(&app).await;
    let body = periodic_body("nightly");
    let (status, created) = send(
        &app,
        "POST",
        "/api/periodic-tasks/",
        &body,
        Some(v2(secret, "POST", "/api/periodic-tasks/", &body)),
        None,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    let path = format!("/api/periodic-tasks/{id}/");

    // Old forms are refused beyond the old API: a captured legacy or v1 request of any
    // kind (here: an empty body, and the `t.` body a v1 header can be re-sent as) cannot
    // delete or change a periodic task.
    let t = chrono::Utc::now().timestamp();
    let v1_header = common::signing::sign_timestamped(secret.as_bytes(), t, b"");
    let v1_mac = v1_header.split("v1=").nth(1).unwrap().to_owned();
    for (what, method, sig, body) in [
        (
            "legacy DELETE",
            "DELETE",
            test_support::legacy_signature(b""),
            Vec::new(),
        ),
        ("v1 DELETE", "DELETE", v1_header.clone(), Vec::new()),
        (
            "v1 re-sent as legacy",
            "DELETE",
            v1_mac,
            format!("{t}.").into_bytes(),
        ),
        (
            "legacy PATCH",
            "PATCH",
            test_support::legacy_signature(br#"{"enabled":false}"#),
            br#"{"enabled":false}"#.to_vec(),
        ),
        (
            "legacy POST of a periodic task",
            "POST",
            test_support::legacy_signature(&periodic_body("x")),
            periodic_body("x"),
        ),
    ] {
        let target = if method == "POST" {
            "/api/periodic-tasks/".to_owned()
        } else {
            path.clone()
        };
        let (status, answer) = send(&app, method, &target, &body, Some(sig), None).await;
        assert_eq!(status, 401, "{what}: {answer}");
        assert!(detail(&answer).contains("v2"), "{what}: {answer}");
    }
    // A v2 signature made for another method, path or query string.
    let other = format!("/api/periodic-tasks/{}/", id + 1);
    for (what, sig) in [
        ("made for PATCH", v2(secret, "PATCH", &path, b"")),
        ("made for another task", v2(secret, "DELETE", &other, b"")),
        (
            "made with a query",
            v2(secret, "DELETE", &format!("{path}?force=1"), b""),
        ),
        ("made for another body", v2(secret, "DELETE", &path, b"{}")),
    ] {
        let (status, answer) = send(&app, "DELETE", &path, b"", Some(sig), None).await;
        assert_eq!(status, 401, "{what}: {answer}");
        assert_eq!(detail(&answer), "Invalid signature.", "{what}");
    }
    assert_eq!(
        periodic_count(&app).await,
        before + 1,
        "nothing was deleted"
    );
    let updated: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(updated["enabled"], true, "nothing was changed");

    // The right one works, once.
    let sig = v2(secret, "DELETE", &path, b"");
    let (status, _) = send(&app, "DELETE", &path, b"", Some(sig.clone()), None).await;
    assert_eq!(status, 204);
    let (status, answer) = send(&app, "DELETE", &path, b"", Some(sig), None).await;
    assert_eq!(status, 401, "{answer}");
    assert!(detail(&answer).contains("replay"), "{answer}");

    // The old clients' forms still work on the old API's POST endpoints (development).
    let b = serde_json::to_vec(&entry("INFO", "user alice logged in")).unwrap();
    for sig in [
        test_support::legacy_signature(&b),
        test_support::timestamped_signature(&b),
        v2(secret, "POST", "/api/logs/", &b),
    ] {
        let (status, answer) = send(&app, "POST", "/api/logs/", &b, Some(sig), None).await;
        assert_eq!(status, 201, "{answer}");
    }
    // A v2 signature for /api/logs/ is refused on the batch endpoint.
    let batch = serde_json::to_vec(&json!({"log_entries": [entry("INFO", "x")]})).unwrap();
    let (status, _) = send(
        &app,
        "POST",
        "/api/batch-analysis/",
        &batch,
        Some(v2(secret, "POST", "/api/logs/", &batch)),
        None,
    )
    .await;
    assert_eq!(status, 401);
    app.cleanup().await;
}

/// Finding 2: keys carry scopes; a log shipper's key cannot touch periodic tasks or
/// labels, a read-only key cannot write, and only `admin` lists the keys.
#[tokio::test]
async fn keys_may_do_only_what_their_scopes_say() {
    let app = spawn_app().await;
    let before = periodic_count(&app).await;
    let entry_body = serde_json::to_vec(&entry("ERROR", "disk /dev/sda failed")).unwrap();

    // The shipper (ingest) ingests...
    let (status, created) = send(
        &app,
        "POST",
        "/api/logs/",
        &entry_body,
        Some(v2("shipper-secret", "POST", "/api/logs/", &entry_body)),
        None,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let entry_id = created["id"].as_i64().unwrap();
    // ...but may not schedule, label or read.
    let body = periodic_body("every second clean-up");
    let (status, answer) = send(
        &app,
        "POST",
        "/api/periodic-tasks/",
        &body,
        Some(v2("shipper-secret", "POST", "/api/periodic-tasks/", &body)),
        None,
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert!(detail(&answer).contains("operate"), "{answer}");
    assert_eq!(periodic_count(&app).await, before, "nothing scheduled");
    let label = br#"{"label":"normal"}"#;
    let path = format!("/api/logs/{entry_id}/feedback/");
    let (status, answer) = send(
        &app,
        "POST",
        &path,
        label,
        Some(v2("shipper-secret", "POST", &path, label)),
        None,
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    let (status, _) = send(
        &app,
        "GET",
        "/api/logs/",
        b"",
        Some(v2("shipper-secret", "GET", "/api/logs/", b"")),
        None,
    )
    .await;
    assert_eq!(status, 403, "a signed read with an ingest-only key");

    // The reader reads and may not write.
    let (status, page) = send(
        &app,
        "GET",
        "/api/logs/?limit=5",
        b"",
        Some(v2("reader-secret", "GET", "/api/logs/?limit=5", b"")),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let (status, _) = send(
        &app,
        "POST",
        "/api/logs/",
        &entry_body,
        Some(v2("reader-secret", "POST", "/api/logs/", &entry_body)),
        None,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        app.counts().await.0,
        1,
        "only the shipper's entry is stored"
    );

    // A stored key says its scopes too.
    app.db
        .db
        .run(|c| db::api_keys::upsert_scoped(c, "ops", "ops-secret", true, &["operate"]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, answer) = send(
        &app,
        "POST",
        "/api/periodic-tasks/",
        &body,
        Some(v2("ops-secret", "POST", "/api/periodic-tasks/", &body)),
        None,
    )
    .await;
    assert_eq!(status, 201, "{answer}");

    // Keys: admin only, and never a secret.
    let (status, keys) = send(
        &app,
        "GET",
        "/api/keys/",
        b"",
        Some(v2(test_support::TEST_SECRET, "GET", "/api/keys/", b"")),
        None,
    )
    .await;
    assert_eq!(status, 200, "{keys}");
    let text = keys.to_string();
    for id in ["test", "shipper", "reader", "ops"] {
        assert!(
            text.contains(&format!("\"key_id\":\"{id}\"")),
            "{id}: {text}"
        );
    }
    for secret in [
        "test-secret",
        "shipper-secret",
        "reader-secret",
        "ops-secret",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let (status, _) = send(
        &app,
        "GET",
        "/api/keys/",
        b"",
        Some(v2("reader-secret", "GET", "/api/keys/", b"")),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = send(&app, "GET", "/api/keys/", b"", None, None).await;
    assert_eq!(status, 401, "keys are never open, not even in development");
    app.cleanup().await;
}

const STRONG_KEY: &str = "prod-key-0123456789abcdef0123456789abcdef";
const READ_TOKEN: &str = "read-token-0123456789abcdef0123456789abcdef";
const DASHBOARD_TOKEN: &str = "dash-token-0123456789abcdef0123456789abcdef";

async fn production_app() -> TestApp {
    spawn_app_with(Options {
        hmac_keys: Some(format!(
            "ops@ingest+read+operate:{STRONG_KEY},shipper@ingest:shipper-0123456789abcdef0123456789abcdef"
        )),
        legacy: None,
        extra_args: vec![
            "--environment=production".into(),
            format!("--read-token={READ_TOKEN}"),
            format!("--dashboard-token={DASHBOARD_TOKEN}"),
        ],
        ..Options::default()
    })
    .await
}

/// Finding 3: in production every read needs a credential, and the page works with one.
#[tokio::test]
async fn production_reads_need_a_credential() {
    let app = production_app().await;
    let reads = [
        "/api/logs/",
        "/api/dashboard/",
        "/api/templates/",
        "/api/review/",
        "/api/patterns/",
        "/api/alerts/",
        "/api/periodic-tasks/",
        "/api/stats/queues/",
    ];
    for path in reads {
        let (status, answer) = send(&app, "GET", path, b"", None, None).await;
        assert_eq!(status, 401, "{path} without a credential: {answer}");
        let (status, _) = send(&app, "GET", path, b"", None, Some("wrong-token")).await;
        assert_eq!(status, 401, "{path} with a wrong token");
        for token in [READ_TOKEN, DASHBOARD_TOKEN] {
            let (status, answer) = send(&app, "GET", path, b"", None, Some(token)).await;
            assert_eq!(status, 200, "{path}: {answer}");
        }
        let (status, _) = send(
            &app,
            "GET",
            path,
            b"",
            Some(v2(STRONG_KEY, "GET", path, b"")),
            None,
        )
        .await;
        assert_eq!(status, 200, "{path} signed by a key with read");
    }
    // The page itself holds no data and stays open; it sends the token on every call.
    assert_eq!(app.get("/").await.status().as_u16(), 200);
    let script = app.get("/ui/app.js").await.text().await.unwrap();
    assert!(
        script.contains("...authHeaders()"),
        "the page's reads send the token"
    );

    // Production refuses the legacy form by default; v1 and v2 still work on the old API.
    let b = serde_json::to_vec(&entry("INFO", "job 7 done")).unwrap();
    let legacy = common::signing::sign_legacy(STRONG_KEY.as_bytes(), &b);
    let (status, answer) = send(&app, "POST", "/api/logs/", &b, Some(legacy), None).await;
    assert_eq!(status, 401, "{answer}");
    let v1 = common::signing::sign_timestamped(
        STRONG_KEY.as_bytes(),
        chrono::Utc::now().timestamp(),
        &b,
    );
    let (status, _) = send(&app, "POST", "/api/logs/", &b, Some(v1), None).await;
    assert_eq!(status, 201);
    // The read token may not label (the dashboard token may).
    let label = br#"{"label":"normal"}"#;
    let (status, answer) = send(
        &app,
        "POST",
        "/api/ui/feedback/templates/1/",
        label,
        None,
        Some(READ_TOKEN),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    app.cleanup().await;
}

/// Findings 1 and 4: production refuses placeholder and short secrets and a missing key
/// list, and its errors name the variable, never the value.
#[tokio::test]
async fn production_refuses_weak_secrets_without_showing_them() {
    use clap::Parser;
    let db = test_support::TestDb::new().await;
    let build = |extra: &[&str]| {
        let mut args = vec![
            "ingest-api".to_owned(),
            format!("--database-url={}", db.url),
            "--http-addr=127.0.0.1:0".into(),
            "--admin-addr=127.0.0.1:0".into(),
            "--environment=production".into(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        logcanary_ingest_api::config::Cli::try_parse_from(args).expect("settings parse")
    };
    let cases: [(&[&str], &str, &str); 5] = [
        (&[], "LOGCANARY_HMAC_KEYS must be set", ""),
        (
            &["--hmac-keys=default:CHANGE-ME"],
            "placeholder",
            "CHANGE-ME",
        ),
        (
            &["--hmac-keys=shipper@ingest:short-but-real"],
            "shorter than 32 bytes",
            "short-but-real",
        ),
        (
            &[
                "--hmac-keys=k:0123456789abcdef0123456789abcdef",
                "--read-token=changeme-please-0123456789abcdef0123",
            ],
            "LOGCANARY_READ_TOKEN is a placeholder",
            "changeme-please",
        ),
        (
            &[
                "--hmac-keys=k:0123456789abcdef0123456789abcdef",
                "--dashboard-token=tiny",
            ],
            "LOGCANARY_DASHBOARD_TOKEN is shorter",
            "tiny",
        ),
    ];
    for (args, expected, secret) in cases {
        let error =
            match logcanary_ingest_api::startup::Application::build(build(args).settings).await {
                Ok(_) => panic!("{args:?} started in production"),
                Err(e) => format!("{e:#}"),
            };
        assert!(error.contains(expected), "{args:?}: {error}");
        if !secret.is_empty() {
            assert!(
                !error.contains(secret),
                "{args:?} shows the secret: {error}"
            );
        }
    }
    // A placeholder database password is refused too (and not shown).
    let mut args = vec![
        "ingest-api".to_owned(),
        "--database-url=postgres://logcanary:CHANGE-ME@127.0.0.1:5432/x".to_owned(),
        "--http-addr=127.0.0.1:0".into(),
        "--admin-addr=127.0.0.1:0".into(),
        "--environment=production".into(),
    ];
    args.push("--hmac-keys=k@ingest:0123456789abcdef0123456789abcdef".into());
    let settings = logcanary_ingest_api::config::Cli::try_parse_from(args)
        .unwrap()
        .settings;
    let error = match logcanary_ingest_api::startup::Application::build(settings).await {
        Ok(_) => panic!("a CHANGE-ME database password started in production"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        error.contains("DATABASE_URL has a placeholder password"),
        "{error}"
    );
    assert!(!error.contains("CHANGE-ME"), "{error}");
    // A strong key starts.
    let ok = build(&["--hmac-keys=k@ingest:0123456789abcdef0123456789abcdef"]);
    if let Err(e) = logcanary_ingest_api::startup::Application::build(ok.settings).await {
        panic!("a strong key did not start: {e:#}");
    }
}

/// Finding 4: an unknown key id gets the same answer as a wrong secret.
#[tokio::test]
async fn an_unknown_key_id_is_not_told_apart() {
    let app = spawn_app().await;
    let b = serde_json::to_vec(&entry("INFO", "x")).unwrap();
    let mut answers = Vec::new();
    for key_id in ["nobody", "old"] {
        let resp = app
            .client
            .post(format!("{}/api/logs/", app.address))
            .header("Content-Type", "application/json")
            .header("X-HMAC-Signature", test_support::legacy_signature(&b))
            .header("X-HMAC-Key-Id", key_id)
            .body(b.clone())
            .send()
            .await
            .unwrap();
        answers.push((resp.status().as_u16(), resp.text().await.unwrap()));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, 401);
    app.cleanup().await;
}

/// Finding 5 (API side): an invented HTTP method does not become a metric series.
#[tokio::test]
async fn invented_methods_share_one_metric_label() {
    let app = spawn_app().await;
    for method in ["BREW", "XYZZY1", "XYZZY2"] {
        let (status, _) = send(&app, method, "/api/logs/", b"", None, None).await;
        assert_eq!(status, 405, "{method}");
    }
    let metrics = app
        .client
        .get(format!("{}/metrics", app.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("method=\"other\""), "{metrics}");
    for method in ["BREW", "XYZZY1", "XYZZY2"] {
        assert!(
            !metrics.contains(&format!("method=\"{method}\"")),
            "{method}"
        );
    }
    app.cleanup().await;
}

/// Finding 0 / 4: per-endpoint body limits; a single entry's limit is far below a batch's.
#[tokio::test]
async fn each_endpoint_has_its_own_body_limit() {
    let app = spawn_app_with(Options {
        max_body_bytes: 4 * 1024 * 1024,
        ..Options::default()
    })
    .await;
    // 600 KiB of message: fine in a batch body, too large for one entry.
    let long = "a".repeat(600 * 1024);
    let single = serde_json::to_vec(&entry("INFO", &long)).unwrap();
    let (status, answer) = send(
        &app,
        "POST",
        "/api/logs/",
        &single,
        Some(test_support::legacy_signature(&single)),
        None,
    )
    .await;
    assert_eq!(status, 413, "{answer}");
    let pattern =
        serde_json::to_vec(&json!({"time_window_hours": 24, "pad": "p".repeat(100 * 1024)}))
            .unwrap();
    let (status, _) = send(
        &app,
        "POST",
        "/api/pattern-analysis/",
        &pattern,
        Some(test_support::legacy_signature(&pattern)),
        None,
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(app.counts().await, (0, 0));
    app.cleanup().await;
}

/// Writes the head of a POST with `length` declared and `sent` bytes of body, then holds.
async fn hold_upload(
    app: &TestApp,
    path: &str,
    length: usize,
    sent: usize,
) -> tokio::net::TcpStream {
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\nX-HMAC-Signature: {}\r\n\r\n",
        "0".repeat(64)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 64 * 1024];
    let mut written = 0;
    while written < sent {
        let n = chunk.len().min(sent - written);
        stream.write_all(&chunk[..n]).await.unwrap();
        written += n;
    }
    stream.flush().await.unwrap();
    stream
}

/// The status line of what the server answered on `stream` (within 10 s).
async fn status_of(stream: &mut tokio::net::TcpStream) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("an answer within 10 s")
        .unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).to_string()
}

/// Finding 0: bytes in flight are capped (503 + Retry-After past the budget), and a body
/// that does not arrive in time is answered 408.
#[tokio::test]
async fn bodies_in_flight_are_bounded_and_timed_out() {
    let app = spawn_app_with(Options {
        max_body_bytes: 4 * 1024 * 1024,
        extra_args: vec![
            "--max-inflight-body-bytes=3000000".into(),
            "--body-timeout-secs=2".into(),
        ],
        ..Options::default()
    })
    .await;
    // Two uploads of 1.4 MB each fit the 3 MB budget; they are held, their last byte missing.
    let mut first = hold_upload(&app, "/api/batch-analysis/", 1_400_000, 1_000_000).await;
    let mut second = hold_upload(&app, "/api/batch-analysis/", 1_400_000, 1_000_000).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A third does not.
    let mut third = hold_upload(&app, "/api/batch-analysis/", 1_400_000, 0).await;
    let answer = status_of(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    // The held ones time out.
    for held in [&mut first, &mut second] {
        let answer = status_of(held).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    // Their bytes are given back: a signed batch goes through now.
    let body =
        serde_json::to_vec(&json!({"log_entries": [entry("INFO", "after the flood")]})).unwrap();
    let (status, answer) = send(
        &app,
        "POST",
        "/api/batch-analysis/",
        &body,
        Some(test_support::legacy_signature(&body)),
        None,
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    // An unsigned upload is refused before its body is read.
    let mut unsigned = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    unsigned
        .write_all(b"POST /api/batch-analysis/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n")
        .await
        .unwrap();
    let answer = status_of(&mut unsigned).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert_eq!(app.counts().await.0, 1);
    app.cleanup().await;
}
