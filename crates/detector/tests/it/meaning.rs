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
    last_score_in(config, None, last, None)
}

/// The same traffic when `warnings` is set, with one round in three followed by that
/// WARNING from source "app" (which so marks its trouble by level) and the routine rounds
/// alternating between "app" and "syslog" (only INFO lines), then `last` at INFO from
/// `last_source`.
fn last_score_in(
    config: ScorerConfig,
    warnings: Option<&str>,
    last: &str,
    last_source: Option<&str>,
) -> Score {
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
                source: warnings.map(|_| if round % 2 == 0 { "app" } else { "syslog" }.to_owned()),
            });
        }
        if let Some(warning) = warnings.filter(|_| round % 3 == 0) {
            t += 5_000;
            lines.push(LogLine {
                timestamp_ms: t,
                severity: Severity::Warning,
                message: warning.replace("NN", &format!("{}", 80 + round % 10)),
                source: Some("app".to_owned()),
            });
        }
    }
    scorer.score_batch(&lines).expect("routine scored");
    scorer
        .score(&LogLine {
            timestamp_ms: t + 5_000,
            severity: Severity::Info,
            message: last.to_owned(),
            source: last_source.map(str::to_owned),
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

#[test]
fn words_count_for_less_where_the_source_marks_trouble_by_level() {
    let failure = "Connection to 10.0.0.7 refused";
    let warning = Some("disk usage at NN% on /var");
    // The failure line comes after a stream that had settled, which counts its newness
    // for more (`settled_weight`, tested on its own): off here, so that only the level
    // rule differs between the cases.
    let config = ScorerConfig {
        settled_weight: 0.0,
        ..ScorerConfig::default()
    };
    let flat = last_score(config.clone(), failure);
    let levelled = last_score_in(config.clone(), warning, failure, Some("app"));
    // The same words, the same model: only how much they count differs.
    assert!(
        (levelled.failure_likeness - flat.failure_likeness).abs() < 1e-6,
        "{levelled:?}"
    );
    assert!(
        levelled.severity < flat.severity,
        "{levelled:?} vs {flat:?}"
    );
    assert!(levelled.score < flat.score, "{levelled:?} vs {flat:?}");
    assert!(!levelled.is_anomaly, "{levelled:?}");
    assert!(
        levelled
            .summary
            .contains("this source marks its trouble by level"),
        "{}",
        levelled.summary
    );

    // A source without levels of its own, in the same stream, is judged by its words in
    // full; a source not seen before goes by the whole stream.
    let syslog = last_score_in(config.clone(), warning, failure, Some("syslog"));
    assert!(
        (syslog.severity - flat.severity).abs() < 1e-6,
        "{syslog:?} vs {flat:?}"
    );
    assert!(syslog.is_anomaly, "{syslog:?}");
    let new_source = last_score_in(config.clone(), warning, failure, Some("new"));
    assert!(
        (new_source.severity - levelled.severity).abs() < 1e-6,
        "{new_source:?}"
    );
}
