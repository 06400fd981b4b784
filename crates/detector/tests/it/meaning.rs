//! "Reads like a failure": with the real model, templates that describe something going
//! wrong count as severe whatever their log level, so an INFO-level failure nobody has
//! seen is flagged where the level alone would not flag it.
//!
//! Runs the real model: `make setup` / scripts/fetch-ml-assets.sh must have run.

use crate::common::ROUTINE;
use logcanary_detector::embedder::{Embedder, EmbedderConfig};
use logcanary_detector::scorer::{LogLine, Score, Scorer, ScorerConfig, Severity};

/// Scores 60 rounds of routine INFO traffic, then `last` at INFO; returns the last score.
fn last_score(config: ScorerConfig, last: &str) -> Score {
    let embedder = Embedder::start(EmbedderConfig::from_env())
        .unwrap_or_else(|e| panic!("embedder did not start: {e}"));
    let mut scorer = Scorer::new(config, embedder);
    let mut t = 1_700_000_000_000i64;
    let mut lines = Vec::new();
    for round in 0..60 {
        for m in ROUTINE {
            t += 5_000;
            lines.push(LogLine {
                timestamp_ms: t,
                severity: Severity::Info,
                message: m.replace("10.0.0.", &format!("10.0.{round}.")),
                source: None,
            });
        }
    }
    scorer.score_batch(&lines).expect("routine scored");
    scorer
        .score(&LogLine {
            timestamp_ms: t + 5_000,
            severity: Severity::Info,
            message: last.to_owned(),
            source: None,
        })
        .expect("scored")
}

#[test]
fn an_info_level_failure_is_flagged_for_what_it_says() {
    // Close to the routine "Connection to <IP> closed", so novelty alone stays low.
    let failure = "Connection to 10.0.0.7 refused";
    let scored = last_score(ScorerConfig::default(), failure);
    assert!(
        scored.failure_likeness >= 0.5,
        "reads like a failure: {scored:?}"
    );
    assert!(scored.is_anomaly, "{scored:?}");
    assert!(
        scored.summary.contains("reads like a failure"),
        "{scored:?}"
    );

    // The level alone (the signal off) does not carry it over the threshold.
    let level_only = last_score(
        ScorerConfig {
            meaning_severity_max: 0.0,
            ..ScorerConfig::default()
        },
        failure,
    );
    assert_eq!(level_only.failure_likeness, 0.0);
    assert!(level_only.score < scored.score, "{level_only:?}");
    assert!(!level_only.is_anomaly, "{level_only:?}");
}

#[test]
fn routine_news_does_not_read_like_a_failure() {
    let scored = last_score(
        ScorerConfig::default(),
        "backup job nightly-db completed, 42 files copied",
    );
    assert!(scored.failure_likeness < 0.3, "routine message: {scored:?}");
    assert!(
        !scored.summary.contains("reads like a failure"),
        "{scored:?}"
    );
}
