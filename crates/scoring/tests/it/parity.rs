//! The scoring workers store the verdicts `make eval` reports: the same labelled lines,
//! scored through the handler (the real model, the real Postgres) in tasks of the eval's
//! batches and read back, flag the same lines as `detector::replay` does on
//! them, learning's re-scores included. (`make eval-stack` shows the same on the Loghub
//! sets through the whole running stack.)

use crate::support;

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use db::{models::NewLogEntry, templates::LEARNED_NORMAL_NOTE};
use detector::{
    embedder::{Embedder, EmbedderConfig},
    replay::{replay, LabelledRecord, ReplayOptions},
    scorer::{Label, LogLine, Scorer, ScorerConfig, Severity},
};
use test_support::TestDb;

/// Ten hours of a cluster's log from `start`, in time order: heartbeat chatter, routine
/// CRITICAL lines that recur through the file (one of them starting with two busy
/// windows), and two anomalous bursts.
fn stream(start: DateTime<Utc>) -> Vec<LabelledRecord> {
    let mut lines: Vec<(i64, &str, String, Label)> = Vec::new();
    let mut add = |seconds: i64, level: &'static str, message: String, label: Label| {
        lines.push((seconds, level, message, label));
    };
    for k in 0..1_200 {
        let node = k % 7;
        add(
            30 * k,
            "INFO",
            format!("heartbeat from node {node} ok, load {}", k % 13),
            Label::Normal,
        );
    }
    for k in 0..30 {
        add(
            1_200 * k + 400,
            "CRITICAL",
            format!(
                "Node card on rack R{} was power cycled by the service controller",
                k % 5
            ),
            Label::Normal,
        );
    }
    // 9 lines in the first ten minutes, 12 in the next, then one every 20 minutes.
    let resolved = (0..9)
        .map(|k| 60 * k + 5)
        .chain((0..12).map(|k| 600 + 45 * k + 5))
        .chain((0..25).map(|k| 1_800 + 1_200 * k + 5));
    for t in resolved {
        add(
            t,
            "CRITICAL",
            format!("Resolved host-{}.cluster to /default-rack", t % 11),
            Label::Normal,
        );
    }
    for k in 0..30 {
        add(
            5 * 3_600 + 6 * k + 3,
            "CRITICAL",
            "Kernel panic: fatal machine check on node card R23-M0-N4".to_string(),
            Label::Anomaly,
        );
    }
    for k in 0..10 {
        add(
            8 * 3_600 + 20 * k + 7,
            "ERROR",
            "Disk sdb on storage node reported SMART self test failure".to_string(),
            Label::Anomaly,
        );
    }
    lines.sort_by_key(|l| l.0);
    lines
        .into_iter()
        .map(|(seconds, level, message, label)| LabelledRecord {
            line: LogLine {
                timestamp_ms: (start + Duration::seconds(seconds)).timestamp_millis(),
                severity: Severity::parse(level),
                message,
                source: Some("bgl".into()),
            },
            label,
        })
        .collect()
}

#[tokio::test]
async fn the_workers_store_the_verdicts_make_eval_reports() {
    let config = ScorerConfig::default();
    let test_db = TestDb::new().await;
    let h = support::handler(&test_db, config.clone());
    h.refresh_templates(true).await.expect("templates load");
    // Eleven hours ago, on a presence window, so that the windows are the eval's.
    let window_ms = config.presence_window_ms;
    let ago = (Utc::now() - Duration::hours(11)).timestamp_millis();
    let start =
        DateTime::from_timestamp_millis(ago.div_euclid(window_ms) * window_ms).expect("a time");
    let records = stream(start);

    // Tasks of 256 lines (the most a worker takes at once) for both: a task holds lines
    // after the one a template is learned on.
    let options = ReplayOptions {
        batch: 256,
        ..ReplayOptions::default()
    };
    let mut ids = Vec::new();
    for chunk in records.chunks(options.batch) {
        let entries: Vec<NewLogEntry> = chunk
            .iter()
            .map(|r| NewLogEntry {
                logged_at: DateTime::from_timestamp_millis(r.line.timestamp_ms).expect("a time"),
                severity: r.line.severity.as_str().into(),
                message: r.line.message.clone(),
                source: r.line.source.clone(),
            })
            .collect();
        ids.extend(support::score_entries(&h, entries).await);
    }
    let all = ids.clone();
    let stored: HashMap<i64, db::models::LogEntry> =
        h.db.run(move |c| db::entries::by_ids(c, &all))
            .await
            .expect("entries")
            .into_iter()
            .map(|e| (e.id, e))
            .collect();
    let product: Vec<bool> = ids
        .iter()
        .map(|id| stored[id].is_anomaly == Some(true))
        .collect();

    // The eval's harness blocks on the model: off the async runtime.
    let replayed = records.clone();
    let report = tokio::task::spawn_blocking(move || {
        let embedder = Embedder::start(EmbedderConfig::from_env()).expect("the model starts");
        let mut scorer = Scorer::new(config, embedder);
        replay(&mut scorer, &replayed, &options).expect("replay")
    })
    .await
    .expect("the replay task");

    let flagged = product.iter().filter(|&&f| f).count() as u64;
    let caught = records
        .iter()
        .zip(&product)
        .filter(|(r, &f)| f && r.label == Label::Anomaly)
        .count() as u64;
    assert_eq!(
        (flagged, caught),
        (report.counts.flagged, report.counts.true_positives),
        "stored verdicts against make eval's"
    );
    // What the stream is for: both bursts caught, and routine CRITICAL lines flagged at
    // first and re-scored once learned (the first window's nine among them).
    assert_eq!(caught, 40);
    let relearned = ids
        .iter()
        .filter(|id| {
            let e = &stored[*id];
            e.message.starts_with("Resolved")
                && e.summary
                    .as_deref()
                    .unwrap_or("")
                    .ends_with(LEARNED_NORMAL_NOTE)
        })
        .count();
    assert!(relearned >= 9, "{relearned} Resolved lines re-scored");
}
