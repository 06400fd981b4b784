//! Issue 13's memory probe, against the real `ingest-api` binary: 48 connections each
//! send a 15 MiB body with a bogus signature to `POST /api/batch-analysis/` and hold the
//! last byte back. Before, the process grew to 756 MiB (the pod limit is 512 Mi); now the
//! in-flight body budget (64 MiB by default) turns the rest away with 503, and the
//! process stays under 128 MiB and keeps answering its health checks.

use std::time::{Duration, Instant};

use logcanary_e2e::Stack;
use tokio::io::AsyncWriteExt;

const CONNECTIONS: usize = 48;
const BODY: usize = 15 * 1024 * 1024;
const LIMIT_KIB: u64 = 128 * 1024;

/// `VmRSS` and `VmHWM` (peak) of `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Sends the head and all but the last byte of a 15 MiB body, then holds the connection
/// until `hold` ends. Errors (the server answered and closed) end it early.
async fn upload(address: String, hold: Duration) {
    let Ok(mut stream) = tokio::net::TcpStream::connect(&address).await else {
        return;
    };
    let head = format!(
        "POST /api/batch-analysis/ HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {BODY}\r\nX-HMAC-Signature: {}\r\n\r\n",
        "ab".repeat(32)
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let chunk = vec![b' '; 256 * 1024];
    let mut sent = 0;
    while sent < BODY - 1 {
        let n = chunk.len().min(BODY - 1 - sent);
        if stream.write_all(&chunk[..n]).await.is_err() {
            return;
        }
        sent += n;
    }
    tokio::time::sleep(hold).await;
}

#[tokio::test]
async fn bogus_uploads_cannot_grow_the_api_past_128_mib() {
    let stack = Stack::start_api(&[]).await;
    let pid = stack.ingest.child.id();
    let address = stack.api.trim_start_matches("http://").to_owned();
    let (start_rss, _) = memory_kib(pid);

    let hold = Duration::from_secs(8);
    let uploads: Vec<_> = (0..CONNECTIONS)
        .map(|_| tokio::spawn(upload(address.clone(), hold)))
        .collect();
    // While the uploads are held: the process answers its probes, and its memory stays low.
    let started = Instant::now();
    let mut peak_rss = 0;
    while started.elapsed() < Duration::from_secs(6) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (rss, _) = memory_kib(pid);
        peak_rss = peak_rss.max(rss);
        let live = stack
            .client
            .get(format!("{}/livez", stack.api_admin))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .map(|r| r.status().as_u16());
        assert_eq!(live.ok(), Some(200), "livez answers during the probe");
    }
    let dashboard = stack
        .client
        .get(format!("{}/api/dashboard/", stack.api))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map(|r| r.status().as_u16());
    assert_eq!(
        dashboard.ok(),
        Some(200),
        "the API answers during the probe"
    );
    for upload in uploads {
        let _ = upload.await;
    }
    let (_, hwm) = memory_kib(pid);
    eprintln!("probe: RSS at start {start_rss} KiB, peak seen {peak_rss} KiB, VmHWM {hwm} KiB");
    assert!(
        hwm < LIMIT_KIB,
        "ingest-api reached {hwm} KiB resident (limit {LIMIT_KIB} KiB)"
    );
    assert_eq!(
        stack.db.count("SELECT count(*) FROM log_entries").await,
        0,
        "nothing was stored"
    );
}
