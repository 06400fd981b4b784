//! The web dashboard in a real browser: Debian's `chromium`, headless, against the app
//! started on port 0 with a database of its own and seeded through the real API.
//!
//! Chromium renders the page (`--dump-dom` after `--virtual-time-budget`), the test checks
//! that the seeded data shows in the charts and tables, performs the request the
//! "mark normal" button makes (same path, token header and body), checks the page then
//! shows the label, and saves `target/dashboard.png` for a person to look at.

#[path = "api/helpers.rs"]
#[allow(dead_code)] // shared with the API tests; this binary uses part of it
mod helpers;

use std::{path::PathBuf, process::Stdio, time::Duration};

use chrono::Utc;
use helpers::{entry, spawn_app, TestApp};
use serde_json::{json, Value};

const TOKEN: &str = "browser-test-operator-token";
const CHROMIUM: &str = "chromium";

/// Posts an entry and writes what the analysis worker would: its template and score.
async fn analysed(
    app: &TestApp,
    severity: &str,
    message: &str,
    key: &str,
    template: &str,
    score: f64,
    anomalous: bool,
) -> (i64, i64) {
    let created: Value = app
        .post_signed("/api/logs/", &entry(severity, message))
        .await
        .json()
        .await
        .expect("created entry");
    let entry_id = created["id"].as_i64().expect("entry id");
    let (key, template) = (key.to_owned(), template.to_owned());
    let summary = if anomalous {
        format!("New message pattern; severity {severity}")
    } else {
        "Known pattern".to_owned()
    };
    let template_id = app
        .db
        .db
        .run(move |c| {
            let now = Utc::now();
            let rows = db::templates::upsert(
                c,
                &[db::templates::TemplateDelta {
                    key,
                    template,
                    count: 1,
                    first_seen: now,
                    last_seen: now,
                    embedding: Some(vec![0.6, 0.8]),
                }],
            )?;
            let id = rows[0].1;
            db::entries::write_scores(
                c,
                &[db::models::EntryScore {
                    id: entry_id,
                    anomaly_score: score,
                    is_anomaly: anomalous,
                    summary,
                    template_id: Some(id),
                }],
            )?;
            Ok(id)
        })
        .await
        .expect("entry analysed");
    (entry_id, template_id)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// Runs headless Chromium on `url` with the given extra flags and returns its stdout.
async fn chromium(url: &str, extra: &[&str]) -> String {
    let profile = std::env::temp_dir().join(format!("logcanary-chromium-{}", uuid::Uuid::new_v4()));
    let mut cmd = tokio::process::Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let child = cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot start `{CHROMIUM}` ({e}); the dashboard test needs Debian's chromium package: run `make setup` (or `apt-get install -y chromium`)"
        )
    });
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("chromium finished within 90 s")
        .expect("chromium ran");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `<tr>` of the templates table for one template id.
fn template_row(dom: &str, template_id: i64) -> &str {
    let marker = format!("data-template-id=\"{template_id}\"");
    let start = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("template {template_id} is not in the page:\n{dom}"));
    let end = dom[start..].find("</tr>").map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

#[tokio::test]
async fn dashboard_shows_the_seeded_data_and_takes_feedback() {
    // The only test in this binary, so setting the variable races with nothing.
    std::env::set_var(logcanary_ingest_api::web::DASHBOARD_TOKEN_ENV, TOKEN);
    let app = spawn_app().await;

    let (disk_entry, disk_template) = analysed(
        &app,
        "ERROR",
        "Disk /dev/sda1 failed with I/O error 5",
        "tbrowser000000001",
        "Disk <PATH> failed with I/O error <NUM>",
        0.93,
        true,
    )
    .await;
    analysed(
        &app,
        "CRITICAL",
        "Kernel panic on node-7",
        "tbrowser000000002",
        "Kernel panic on <*>",
        0.99,
        true,
    )
    .await;
    analysed(
        &app,
        "INFO",
        "User alice logged in",
        "tbrowser000000003",
        "User <*> logged in",
        0.05,
        false,
    )
    .await;
    app.db
        .db
        .run(|c| {
            let now = Utc::now();
            db::patterns::insert_new(
                c,
                &[db::patterns::NewPatternDetection {
                    kind: "error_spike".into(),
                    window_start: now - chrono::Duration::minutes(10),
                    window_end: now,
                    source: "node-7".into(),
                    severity: "CRITICAL".into(),
                    details: json!({"summary": "Error spike on node-7: 12 errors in 10 minutes"}),
                    log_entry_ids: vec![],
                    task_id: None,
                }],
            )
        })
        .await
        .expect("pattern stored");

    let url = format!("{}/", app.address);
    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    assert!(page
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html")));

    let dom = chromium(&url, &["--dump-dom"]).await;
    for expected in [
        "Disk /dev/sda1 failed with I/O error 5", // recent anomalies
        "New message pattern; severity CRITICAL", // their summaries
        "0.93",                                   // their scores
        "Disk &lt;PATH&gt; failed with I/O error &lt;NUM&gt;", // templates
        "Error spike on node-7: 12 errors in 10 minutes", // patterns
        "analyze_log_entry",                      // tasks by state
        "aria-label=\"severity mix\"",            // severity chart
        "data-total=\"2\"",                       // timeline: both anomalies
        ">INFO<",
    ] {
        assert!(
            dom.contains(expected),
            "{expected:?} is not in the page:\n{dom}"
        );
    }
    assert!(
        !dom.contains("refresh failed"),
        "a read failed while rendering:\n{dom}"
    );
    assert!(
        template_row(&dom, disk_template).contains("mark normal"),
        "no mark normal button"
    );
    assert!(!template_row(&dom, disk_template).contains(">normal<"));

    // What the button sends; without or with a wrong token nothing is stored.
    let path = format!("{}/api/ui/feedback/templates/{disk_template}/", app.address);
    for auth in [None, Some("Bearer wrong")] {
        let mut req = app.client.post(&path).json(&json!({"label": "normal"}));
        if let Some(auth) = auth {
            req = req.header("Authorization", auth);
        }
        let resp = req.send().await.expect("request sent");
        assert_eq!(resp.status(), 401, "{auth:?}");
    }
    let resp = app
        .client
        .post(&path)
        .header("Authorization", format!("Bearer {TOKEN}"))
        .json(&json!({"label": "normal"}))
        .send()
        .await
        .expect("request sent");
    assert_eq!(resp.status(), 200);
    let out: Value = resp.json().await.expect("json");
    assert_eq!(out["label"], "normal");
    // The per-entry form of the button (detail panel).
    let resp = app
        .client
        .post(format!(
            "{}/api/ui/feedback/logs/{disk_entry}/",
            app.address
        ))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .json(&json!({"label": "normal"}))
        .send()
        .await
        .expect("request sent");
    assert_eq!(resp.status(), 200);

    let dom = chromium(&url, &["--dump-dom"]).await;
    assert!(
        template_row(&dom, disk_template).contains(">normal<"),
        "the page does not show the new label: {}",
        template_row(&dom, disk_template)
    );

    // Click-through, linked as the page links it: the entry, its template, its neighbours.
    let detail_url = format!("{url}#entry={disk_entry}");
    let dom = chromium(&detail_url, &["--dump-dom"]).await;
    let detail = dom
        .split("id=\"detail\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no detail panel:\n{dom}"));
    for expected in [
        &format!("Entry {disk_entry}") as &str,
        "Disk &lt;PATH&gt; failed with I/O error &lt;NUM&gt; (1 lines, normal)",
        "Neighbours",
        "Kernel panic on node-7", // a neighbour in time
        "User alice logged in",
    ] {
        assert!(
            detail.contains(expected),
            "{expected:?} is not in the entry panel:\n{detail}"
        );
    }

    let shot = target_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &detail_url,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,1000",
            "--hide-scrollbars",
        ],
    )
    .await;
    let meta = std::fs::metadata(&shot).expect("screenshot saved");
    assert!(meta.len() > 10_000, "screenshot is suspiciously small");
    println!("dashboard screenshot: {}", shot.display());
    app.cleanup().await;
}
