//! The web dashboard in a real browser: Debian's `chromium`, headless, driven over the
//! DevTools protocol against the app started on port 0 with a database and broker queues
//! of its own, seeded through the real API.
//!
//! The test uses the page as an operator would: it checks that the seeded data shows in
//! the charts and tables (broker queue depths included), clicks "mark normal" without a
//! token, with a wrong one and with the right one typed into the token field, checks what
//! the page says and what the API then stores (the label, and the entry re-scored),
//! widens the review queue's window to 7 days (a pattern of three days ago joins it, and
//! the choice outlives a reload), answers from the review queue, clicks through to an
//! entry's detail panel, and saves `target/dashboard.png` for a person to look at.

mod cdp;

use std::path::PathBuf;

use crate::helpers::{entry, spawn_app_with, Options, TestApp};
use cdp::Browser;
use chrono::Utc;
use serde_json::{json, Value};

const TOKEN: &str = "browser-test-operator-token";

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
                    new_after_warmup: true,
                    novelty: 0.0,
                    born_settled: 0.0,
                }],
                |_, _| db::templates::StoredPresence::default(),
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
                    prior_score: None,
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

/// The label the API reports for one template (`None` when unlabelled).
async fn stored_label(app: &TestApp, template_id: i64) -> Option<String> {
    let page: Value = app
        .get("/api/templates/?limit=100")
        .await
        .json()
        .await
        .expect("templates as JSON");
    let template = page["results"]
        .as_array()
        .and_then(|all| all.iter().find(|t| t["id"] == template_id))
        .unwrap_or_else(|| panic!("template {template_id} not listed: {page}"));
    template["label"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn dashboard_shows_the_seeded_data_and_takes_feedback() {
    // A flag, not the variable: the tests of this binary share one process when run by
    // `cargo test`, and the variable would reach the others' settings.
    let app = spawn_app_with(Options {
        extra_args: vec![format!("--dashboard-token={TOKEN}")],
        ..Options::default()
    })
    .await;

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
    let (kernel_entry, kernel_template) = analysed(
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
    // A quiet source's pattern, its one line received three days ago: outside the review
    // queue's default day.
    let (fan_entry, fan_template) = analysed(
        &app,
        "WARNING",
        "Fan 3 stopped on rack 12",
        "tbrowser000000004",
        "Fan <NUM> stopped on rack <NUM>",
        0.55,
        false,
    )
    .await;
    app.move_entry_back(fan_entry, 3).await;
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
    // No worker consumes this test's queues: the four analysis tasks wait in the broker.
    app.wait_queue_depth("analysis", 4).await;

    let url = format!("{}/", app.address);
    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    assert!(page
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html")));

    let mut browser = Browser::launch(1400, 1000).await;
    browser.goto(&url).await;
    browser
        .wait_for(
            "Number(document.body.dataset.refreshed) >= 1",
            "the first refresh",
        )
        .await;
    let dom = browser.html().await;
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
    // The review queue: every unlabelled template with lines, each with its two answers.
    let review_row = |template: i64| format!("#review tr[data-template-id=\"{template}\"]");
    for template in [disk_template, kernel_template] {
        let row = review_row(template);
        for label in ["normal", "anomaly"] {
            assert_eq!(
                browser
                    .text(&format!("{row} button[data-label=\"{label}\"]"))
                    .await,
                label
            );
        }
    }
    assert_eq!(
        browser
            .text(&format!("{} td:nth-child(5)", review_row(kernel_template)))
            .await,
        "CRITICAL"
    );
    let status = browser.text("#status").await;
    assert!(
        status.starts_with("updated"),
        "a read failed while rendering: {status}"
    );
    // The quiet source's pattern is not in the last day's queue; choosing "7 days" brings
    // it in, and the page keeps that choice over a reload.
    let fan_row = review_row(fan_template);
    assert_eq!(
        browser
            .eval(&format!("document.querySelector('{fan_row}') === null"))
            .await,
        json!(true),
        "a line of three days ago is in the last day's review queue"
    );
    browser
        .eval(
            "(() => { const s = document.getElementById('review-hours'); s.value = '168'; \
             s.dispatchEvent(new Event('change')); return true; })()",
        )
        .await;
    browser
        .wait_for(
            &format!("document.querySelector('{fan_row}') !== null"),
            "the three-day-old pattern to join the 7-day review queue",
        )
        .await;
    assert_eq!(
        browser.text(&format!("{fan_row} td:nth-child(5)")).await,
        "WARNING"
    );
    browser.goto(&url).await;
    browser
        .wait_for(
            &format!(
                "document.getElementById('review-hours').value === '168' \
                 && document.querySelector('{fan_row}') !== null"
            ),
            "the 7-day window to outlive a reload",
        )
        .await;
    // Broker queue depths, as RabbitMQ counts them: 4 ready, no worker, nothing retrying
    // or dead-lettered.
    let analysis = browser.text("#broker tr[data-queue=\"analysis\"]").await;
    assert_eq!(
        analysis.split_whitespace().collect::<Vec<_>>(),
        ["analysis", "4", "0", "0", "0"],
        "broker row for analysis: {analysis:?}"
    );
    let notifications = browser
        .text("#broker tr[data-queue=\"notifications\"]")
        .await;
    assert_eq!(
        notifications.split_whitespace().collect::<Vec<_>>(),
        ["notifications", "0", "0", "0", "0"]
    );

    let row = format!("#templates tr[data-template-id=\"{disk_template}\"]");
    let mark_normal = format!("{row} button[data-label=\"normal\"]");
    assert_eq!(browser.text(&format!("{row} td:nth-child(5)")).await, "—");

    // No token saved yet: the page asks for one and sends nothing.
    browser.click(&mark_normal).await;
    browser
        .wait_for(
            "document.getElementById('token-state').innerText === 'enter the dashboard token first'",
            "the page to ask for the token",
        )
        .await;
    assert_eq!(stored_label(&app, disk_template).await, None);

    // A wrong token: the server refuses, the page says why, nothing is stored.
    browser.type_into("#token", "not-the-token").await;
    browser.click("#token-form button[type=submit]").await;
    browser
        .wait_for(
            "document.getElementById('token-state').innerText === 'token saved'",
            "the token to be saved",
        )
        .await;
    browser.click(&mark_normal).await;
    browser
        .wait_for(
            "document.getElementById('token-state').innerText !== 'token saved'",
            "the answer to the wrong token",
        )
        .await;
    assert_eq!(
        browser.text("#token-state").await,
        "The dashboard token is missing or wrong."
    );
    assert_eq!(stored_label(&app, disk_template).await, None);

    // The right token: the label is stored and the table shows it.
    browser.type_into("#token", TOKEN).await;
    browser.click("#token-form button[type=submit]").await;
    browser.click(&mark_normal).await;
    browser
        .wait_for(
            &format!("document.querySelector('{row} td.lbl-normal')"),
            "the template row to show the normal label",
        )
        .await;
    assert_eq!(
        browser.text("#token-state").await,
        format!("template #{disk_template} marked normal up to ERROR, 1 entry re-scored")
    );
    assert_eq!(
        browser.text(&format!("{row} td.lbl-normal")).await,
        "normal up to ERROR",
        "the table says which levels the answer covers"
    );
    assert_eq!(
        stored_label(&app, disk_template).await.as_deref(),
        Some("normal")
    );
    // Its entry of a moment ago was re-scored: it leaves the recent anomalies, and the
    // template leaves the review queue.
    let disk: Value = app
        .get(&format!("/api/logs/{disk_entry}/"))
        .await
        .json()
        .await
        .expect("entry as JSON");
    assert_eq!(disk["is_anomaly"], false, "{disk}");
    browser
        .wait_for(
            &format!(
                "!document.querySelector('#anomalies tr[data-entry-id=\"{disk_entry}\"]') \
                 && !document.querySelector('{}')",
                review_row(disk_template)
            ),
            "the re-scored entry and its template to leave the anomalies and the review queue",
        )
        .await;

    // One click in the review queue answers "anomaly" for the kernel panics.
    browser
        .click(&format!(
            "{} button[data-label=\"anomaly\"]",
            review_row(kernel_template)
        ))
        .await;
    browser
        .wait_for(
            &format!("!document.querySelector('{}')", review_row(kernel_template)),
            "the answered template to leave the review queue",
        )
        .await;
    assert_eq!(
        browser.text("#token-state").await,
        format!("template #{kernel_template} marked anomaly, 1 entry re-scored")
    );
    assert_eq!(
        stored_label(&app, kernel_template).await.as_deref(),
        Some("anomaly")
    );

    // Click-through: the entry, its template, its neighbours in time.
    browser
        .click(&format!("#anomalies tr[data-entry-id=\"{kernel_entry}\"]"))
        .await;
    browser
        .wait_for(
            &format!("document.querySelector('#detail h2').innerText === 'Entry {kernel_entry}'"),
            "the entry panel",
        )
        .await;
    let detail = browser.text("#detail").await;
    for expected in [
        "Kernel panic on <*> (1 lines, anomaly)",
        "re-scored: its pattern was marked anomalous by an operator",
        "Neighbours",
        "Disk /dev/sda1 failed with I/O error 5",
        "User alice logged in",
    ] {
        assert!(
            detail.contains(expected),
            "{expected:?} is not in the entry panel:\n{detail}"
        );
    }

    let shot = target_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    browser.screenshot(&shot).await;
    let meta = std::fs::metadata(&shot).expect("screenshot saved");
    assert!(meta.len() > 10_000, "screenshot is suspiciously small");
    println!("dashboard screenshot: {}", shot.display());
    browser.close().await;
    app.cleanup().await;
}

/// In production every read needs a credential: the page shows why its panels are empty
/// until the operator saves the dashboard token, then sends it on every call.
#[tokio::test]
async fn in_production_the_page_reads_with_the_saved_token() {
    const PROD_TOKEN: &str = "browser-prod-token-0123456789abcdef0123456789";
    let app = crate::helpers::spawn_app_with(crate::helpers::Options {
        hmac_keys: Some("ops@ingest+read+operate:browser-prod-key-0123456789abcdef01234".into()),
        legacy: None,
        extra_args: vec![
            "--environment=production".into(),
            format!("--dashboard-token={PROD_TOKEN}"),
        ],
        signing_secret: Some("browser-prod-key-0123456789abcdef01234".into()),
        ..Default::default()
    })
    .await;
    let (_, kernel_template) = analysed(
        &app,
        "CRITICAL",
        "Kernel panic on node-9",
        "tbrowserprod00001",
        "Kernel panic on <*>",
        0.99,
        true,
    )
    .await;
    let mut browser = Browser::launch(1200, 900).await;
    browser.goto(&format!("{}/", app.address)).await;
    browser
        .wait_for(
            "document.getElementById('status').innerText.includes('reads need the dashboard token')",
            "the page to say that reads need the token",
        )
        .await;
    let row = format!("#templates tr[data-template-id=\"{kernel_template}\"]");
    assert_eq!(
        browser
            .eval(&format!("document.querySelector('{row}') === null"))
            .await,
        Value::Bool(true),
        "nothing is shown without the token"
    );
    browser.type_into("#token", PROD_TOKEN).await;
    browser.click("#token-form button[type=submit]").await;
    browser
        .wait_for(
            &format!("document.querySelector('{row}') !== null && document.getElementById('status').innerText.startsWith('updated')"),
            "the panels to load with the saved token",
        )
        .await;
    browser.close().await;
    app.cleanup().await;
}
