//! An operator's label outlives the upgrade that made the miner read a line's message
//! alone (`2026-12-07-000002_embedding_header`): a template mined earlier with its line
//! header in front gets no more lines, since they now mine into a template of the message,
//! and the upgrade cleared its stored embedding. The workers embed such a labelled template
//! again from its text, header left out, so its label still decides for the message.
//!
//! Runs the real model (`make setup`) against the real Postgres (`TEST_DATABASE_SERVER`).

use crate::support;

use chrono::{Duration, Utc};
use db::models::NewLogEntry;
use detector::scorer::ScorerConfig;
use diesel::{sql_types::Text, RunQueryDsl};
use test_support::TestDb;

/// The header migration, run again on the rows below as an upgrade runs it.
const HEADER_MIGRATION: &str = "20261207000002";

#[tokio::test]
async fn a_label_given_before_the_header_upgrade_still_decides_for_its_message() {
    let test_db = TestDb::new().await;
    // Before the upgrade: whole lines of a backup job, mined header and all, marked
    // anomalous by an operator (the job should not run on this host), with the embedding
    // of that text.
    let old = "<TS> web-7 backup[<NUM>]: nightly backup rotated <NUM> archives";
    test_db
        .db
        .run(move |c| {
            diesel::sql_query(
                "INSERT INTO templates (template_key, template, count, first_seen, last_seen, \
                 embedding, label, labelled_at) \
                 VALUES ('pre-upgrade', $1, 40, now() - interval '3 days', \
                 now() - interval '1 day', array_fill(0.05::real, ARRAY[384]), 'anomaly', \
                 now() - interval '1 day')",
            )
            .bind::<Text, _>(old)
            .execute(c)?;
            diesel::sql_query("DELETE FROM __diesel_schema_migrations WHERE version = $1")
                .bind::<Text, _>(HEADER_MIGRATION)
                .execute(c)?;
            Ok(())
        })
        .await
        .expect("the pre-upgrade row");
    db::migrate(&test_db.url).expect("the upgrade's migrations");
    let cleared = test_db
        .db
        .run(|c| db::templates::embeddings(c, &["pre-upgrade".to_string()]))
        .await
        .expect("embeddings");
    assert!(
        cleared.is_empty(),
        "the upgrade clears the header's embedding"
    );

    // After it: the same job's line, shipped the same way, mines into a template of its
    // message; the operator's answer on the old template still flags it.
    let h = support::handler(
        &test_db,
        ScorerConfig {
            warmup_lines: 0,
            ..ScorerConfig::default()
        },
    );
    h.refresh_templates(true).await.expect("templates load");
    let at = Utc::now() - Duration::minutes(5);
    let line = format!(
        "{} web-7 backup[4242]: nightly backup rotated 4 archives",
        at.format("%b %e %H:%M:%S")
    );
    let ids = support::score_entries(
        &h,
        vec![NewLogEntry {
            logged_at: at,
            severity: "INFO".into(),
            message: line,
            source: Some("web-7".into()),
        }],
    )
    .await;
    let stored =
        h.db.run(move |c| db::entries::by_ids(c, &ids))
            .await
            .expect("entries");
    let entry = &stored[0];
    let summary = entry.summary.clone().unwrap_or_default();
    assert_eq!(entry.is_anomaly, Some(true), "{entry:?}");
    assert!(
        summary.contains(&format!(
            "close to '{old}' which an operator marked anomalous"
        )),
        "{summary}"
    );
}

#[tokio::test]
async fn lines_scored_before_the_worker_pulled_an_answer_still_follow_it() {
    // A worker that pulls labels once an hour (the default is every 5 s): lines scored
    // between an operator's answer and the next pull are written with the answer's
    // verdict, as the answer's re-score gave the lines before it.
    let test_db = TestDb::new().await;
    let config = ScorerConfig {
        warmup_lines: 0,
        ..ScorerConfig::default()
    };
    let mut h = support::handler(&test_db, config);
    h.refresh_templates(true).await.expect("templates load");
    h.refresh_every = std::time::Duration::from_secs(3_600);
    let now = Utc::now();
    let line = |minute: i64, severity: &str, message: &str| NewLogEntry {
        logged_at: now - Duration::minutes(60 - minute),
        severity: severity.into(),
        message: message.into(),
        source: Some("cluster".into()),
    };
    const ROUTINE: &str = "Node card on rack R12 was power cycled by the service controller";
    const QUIET: &str = "Scrubber finished pass over volume vol7 in 35 seconds";
    let first = support::score_entries(
        &h,
        vec![line(0, "CRITICAL", ROUTINE), line(1, "INFO", QUIET)],
    )
    .await;
    let rows =
        h.db.run(move |c| db::entries::by_ids(c, &first))
            .await
            .expect("entries");
    assert_eq!(rows[0].is_anomaly, Some(true), "{:?}", rows[0].summary);
    assert_eq!(rows[1].is_anomaly, Some(false), "{:?}", rows[1].summary);
    // The operator answers: the routine CRITICAL line is normal, the quiet one anomalous.
    for (row, label) in [(&rows[0], "normal"), (&rows[1], "anomaly")] {
        let template = row.template_id.expect("a template");
        h.db.run(move |c| db::templates::set_label_and_rescore(c, template, label))
            .await
            .expect("label")
            .expect("the template exists");
    }
    // More lines of both, scored before the worker pulls the answers.
    let second = support::score_entries(
        &h,
        vec![line(2, "CRITICAL", ROUTINE), line(3, "INFO", QUIET)],
    )
    .await;
    let rows =
        h.db.run(move |c| db::entries::by_ids(c, &second))
            .await
            .expect("entries");
    let summary = |i: usize| rows[i].summary.clone().unwrap_or_default();
    assert_eq!(rows[0].is_anomaly, Some(false), "{}", summary(0));
    assert!(
        summary(0).ends_with("re-scored: its pattern was marked normal by an operator"),
        "{}",
        summary(0)
    );
    assert_eq!(rows[1].is_anomaly, Some(true), "{}", summary(1));
    assert!(
        summary(1).ends_with("re-scored: its pattern was marked anomalous by an operator"),
        "{}",
        summary(1)
    );
}
