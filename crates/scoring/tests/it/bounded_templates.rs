//! The scoring handler with a cap on the templates it holds: a flood of distinct
//! templates keeps it at the cap, and a template evicted by the flood is brought back from
//! Postgres when its lines return, keeping its row.
//!
//! Runs the real model (`make setup`) against the real Postgres (`TEST_DATABASE_SERVER`).

use crate::support;

use chrono::Utc;
use db::models::NewLogEntry;
use detector::{drain::TemplateId, scorer::ScorerConfig};
use logcanary_scoring::handler::ScoringHandler;
use test_support::TestDb;

const CAP: usize = 100;

fn handler(test_db: &TestDb) -> ScoringHandler {
    let config = ScorerConfig {
        warmup_lines: 0,
        max_templates: CAP,
        ..ScorerConfig::default()
    };
    support::handler(test_db, config)
}

/// Stores the messages as INFO entries of one batch task and scores it; returns the ids.
async fn score(h: &ScoringHandler, messages: Vec<String>) -> Vec<i64> {
    let entries: Vec<NewLogEntry> = messages
        .into_iter()
        .map(|message| NewLogEntry {
            logged_at: Utc::now(),
            severity: "INFO".into(),
            message,
            source: Some("app".into()),
        })
        .collect();
    support::score_entries(h, entries).await
}

/// A word of letters only (no digits: the masking would make every flood line alike).
fn word(i: usize) -> String {
    format!("{i:x}")
        .chars()
        .map(|c| char::from(b'g' + c.to_digit(16).unwrap_or(0) as u8))
        .collect()
}

#[tokio::test]
async fn a_flood_of_templates_stays_at_the_cap_and_an_evicted_template_keeps_its_row() {
    let test_db = TestDb::new().await;
    let h = handler(&test_db);
    h.refresh_templates(true).await.expect("templates load");

    let first = score(&h, vec!["session opened for user alice from web".into()]).await;
    // Its prior is stored beside its score (the review queue reads it); a new template
    // is decided by its prior, so the two agree.
    assert_eq!(
        test_db
            .count(&format!(
                "SELECT count(*) FROM log_entries WHERE id = {} \
                 AND prior_score BETWEEN 0 AND 1 AND abs(prior_score - anomaly_score) < 0.001",
                first[0]
            ))
            .await,
        1,
        "the prior score is stored and equals the score of a line decided by its prior"
    );
    let template_row = test_db
        .count(&format!(
            "SELECT template_id FROM log_entries WHERE id = {}",
            first[0]
        ))
        .await;
    let key: String = {
        let rows = test_db
            .count(&format!(
                "SELECT count(*) FROM templates WHERE id = {template_row}"
            ))
            .await;
        assert_eq!(rows, 1);
        h.db.run(move |c| db::templates::changed_since(c, None))
            .await
            .expect("templates")
            .0
            .into_iter()
            .find(|r| r.id == template_row)
            .expect("the session template's row")
            .template_key
    };

    // Four times the cap of distinct templates, in batches.
    let flood = 4 * CAP;
    for chunk in (0..flood).collect::<Vec<_>>().chunks(50) {
        let messages = chunk
            .iter()
            .map(|&i| {
                let w = word(i);
                format!("{w} {w}{w} {w}{w}{w}")
            })
            .collect();
        score(&h, messages).await;
        let held = h.detector.lock().expect("scorer").templates();
        assert!(held <= CAP, "{held} templates held, cap {CAP}");
    }
    assert!(
        h.detector
            .lock()
            .expect("scorer")
            .presence(&TemplateId(key.clone()))
            .is_none(),
        "the flood evicted the session template"
    );
    assert_eq!(
        test_db.count("SELECT count(*) FROM templates").await,
        flood as i64 + 1,
        "every template is stored once"
    );

    // The session template comes back with another user: the same row, counted twice.
    let again = score(&h, vec!["session opened for user bob from web".into()]).await;
    assert_eq!(
        test_db
            .count(&format!(
                "SELECT template_id FROM log_entries WHERE id = {}",
                again[0]
            ))
            .await,
        template_row,
        "scored under its old template"
    );
    assert_eq!(
        test_db
            .count("SELECT count(*) FROM templates WHERE template LIKE 'session opened for user%'")
            .await,
        1,
        "no second row for the session template"
    );
    assert_eq!(
        test_db
            .count(&format!(
                "SELECT count FROM templates WHERE id = {template_row}"
            ))
            .await,
        2
    );
    assert_eq!(
        test_db
            .count(&format!(
                "SELECT count(*) FROM log_entries WHERE id = {} AND analyzed_at IS NOT NULL",
                again[0]
            ))
            .await,
        1,
        "the returning line is scored"
    );
    assert!(h.detector.lock().expect("scorer").templates() <= CAP);
}
