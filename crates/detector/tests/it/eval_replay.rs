//! The eval harness end to end with the real model: a small generated labelled file is
//! written, read back in timestamp order and replayed through the scorer.
//!
//! Runs the real model: `make setup` / scripts/fetch-ml-assets.sh must have run.

use crate::common::ROUTINE;
use logcanary_detector::embedder::{Embedder, EmbedderConfig};
use logcanary_detector::replay::{read_jsonl, replay, ReplayOptions};
use logcanary_detector::scorer::{Scorer, ScorerConfig};

fn generated_file() -> std::path::PathBuf {
    let mut out = String::new();
    let mut t = 1_700_000_000_000i64;
    let mut push = |t: i64, sev: &str, msg: &str, label: &str| {
        out.push_str(
            &serde_json::json!({"timestamp": t, "severity": sev, "message": msg, "label": label})
                .to_string(),
        );
        out.push('\n');
    };
    for round in 0..60 {
        for m in ROUTINE {
            t += 5_000;
            push(
                t,
                "INFO",
                &m.replace("10.0.0.", &format!("10.0.{round}.")),
                "normal",
            );
        }
    }
    // A burst of a failure nobody has seen, written out of order on purpose: the eval sorts.
    for i in (0..5).rev() {
        push(
            t + 1_000 + i * 200,
            "ERROR",
            &format!(
                "kernel: Out of memory: Kill process {} (java) score 901",
                4000 + i
            ),
            "anomaly",
        );
    }
    let path = std::env::temp_dir().join(format!("logcanary-eval-{}.jsonl", std::process::id()));
    std::fs::write(&path, out).expect("temp file writable");
    path
}

#[test]
fn replays_a_generated_file_with_the_real_model() {
    let path = generated_file();
    let records = read_jsonl(&path).expect("file parses");
    std::fs::remove_file(&path).ok();
    assert!(records
        .windows(2)
        .all(|w| w[0].line.timestamp_ms <= w[1].line.timestamp_ms));
    let embedder = Embedder::start(EmbedderConfig::from_env())
        .unwrap_or_else(|e| panic!("embedder did not start: {e}"));
    let mut scorer = Scorer::new(ScorerConfig::default(), embedder);
    let report = replay(&mut scorer, &records, &ReplayOptions::default()).expect("replay works");
    let c = report.counts;
    assert_eq!(c.lines, 365);
    assert_eq!(c.anomalies, 5);
    assert!(c.true_positives <= c.flagged && c.true_positives <= c.anomalies);
    // The burst is a new, unlike, ERROR pattern: flagged, and kept flagged while it recurs.
    assert_eq!(c.true_positives, 5, "{report:?}");
    assert_eq!(c.flagged, 5, "{report:?}");
    assert_eq!(report.feedback_used, 0);
    let json = report.to_json();
    for key in [
        "lines",
        "anomalies",
        "flagged",
        "precision",
        "recall",
        "f1",
        "feedback_used",
        "lines_per_second",
    ] {
        assert!(json.get(key).is_some(), "{key} missing from {json}");
    }
    assert_eq!(json["f1"], 1.0);
    // The model ran once per distinct template, not once per line.
    assert!(scorer.texts_embedded() <= 7, "{}", scorer.texts_embedded());
}
