//! A template learned as normal re-scores its earlier lines that the level alone flagged
//! (`detector::scorer::relearn`), in the stored entries: a routine CRITICAL pattern stops
//! showing as anomalies once its steady presence is known, a burst of it stays flagged,
//! lines of another level keep their verdicts unless their pattern is a continuous stream,
//! an operator's label still decides, and in a dense log a pattern is learned from its
//! separate arrivals, counted across a worker restart through the `templates` row.
//!
//! Runs the real model (`make setup`) against the real Postgres (`TEST_DATABASE_SERVER`).

use crate::support::{self, entry};

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use db::{
    models::NewLogEntry,
    templates::{LearnedAt, TemplateOrder, LEARNED_NORMAL_NOTE},
};
use detector::scorer::ScorerConfig;
use logcanary_scoring::handler::relearn_rule;
use test_support::TestDb;

const ROUTINE: &str = "Node card on rack R12 was power cycled by the service controller";
const DISK: &str = "Disk sdb on storage node reported SMART self test failure";
const LEASE: &str = "Failed to renew lease for client session, will retry shortly";
const PANIC: &str = "Kernel panic: fatal machine check on node card R23-M0-N4";

/// The template `id` as if learned on its latest line, nothing after it.
fn learned_on_latest_line(
    conn: &mut diesel::PgConnection,
    id: i64,
    window_ms: i64,
) -> Result<LearnedAt, db::DbError> {
    let row = db::templates::list(conn, TemplateOrder::MostFrequent, 1_000)?
        .into_iter()
        .find(|t| t.id == id)
        .expect("the template's row");
    let window = |at: DateTime<Utc>| at.timestamp_millis().div_euclid(window_ms);
    Ok(LearnedAt {
        lines_after: 0,
        windows_after: 0,
        first_window: window(row.first_seen),
        last_window: window(row.last_seen),
        at: row.last_seen,
    })
}

#[tokio::test]
async fn a_template_learned_normal_re_scores_its_lines_flagged_by_level_alone() {
    let config = no_warmup_config();
    let (_db, h, start) = no_warmup().await;

    // Six hours ago on: the routine CRITICAL line every 20 minutes, an ERROR line of
    // another pattern every 20 minutes, and a burst of six routine lines at 52 minutes
    // (a 10-minute window of its own). With the defaults the routine pattern is learned
    // as normal at its 100-minute line (12 lines, the burst's window holding half).
    // `start` is aligned on a 10-minute window, so that the windows are the ones described.
    let minutes = |m: i64| start + Duration::minutes(m);
    let mut steady = Vec::new();
    let mut disk = Vec::new();
    for k in 0..16 {
        steady.push(entry(minutes(20 * k), "CRITICAL", ROUTINE));
        disk.push(entry(
            minutes(20 * k) + Duration::seconds(30),
            "ERROR",
            DISK,
        ));
    }
    // A new ERROR message every 5 minutes that never stops (a continuous stream): learned
    // at its 60-minute line, with lines in every 10-minute window since its first.
    let lease: Vec<NewLogEntry> = (0..60)
        .map(|k| entry(minutes(5 * k) + Duration::seconds(45), "ERROR", LEASE))
        .collect();
    let burst: Vec<NewLogEntry> = (0..6)
        .map(|k| entry(minutes(52) + Duration::seconds(10 * k), "CRITICAL", ROUTINE))
        .collect();

    // Three tasks in time order, as a shipper would send them.
    let mut ids: HashMap<&str, Vec<i64>> = HashMap::new();
    let cut = |m: i64| minutes(m);
    for (from, to) in [(0, 60), (60, 120), (120, 400)] {
        let pick = |v: &[NewLogEntry]| -> Vec<NewLogEntry> {
            v.iter()
                .filter(|e| e.logged_at >= cut(from) && e.logged_at < cut(to))
                .cloned()
                .collect()
        };
        let mut batch: Vec<(&str, NewLogEntry)> = Vec::new();
        batch.extend(pick(&steady).into_iter().map(|e| ("steady", e)));
        batch.extend(pick(&burst).into_iter().map(|e| ("burst", e)));
        batch.extend(pick(&disk).into_iter().map(|e| ("disk", e)));
        batch.extend(pick(&lease).into_iter().map(|e| ("lease", e)));
        let kinds: Vec<&str> = batch.iter().map(|(k, _)| *k).collect();
        let stored = support::score_entries(&h, batch.into_iter().map(|(_, e)| e).collect()).await;
        for (kind, id) in kinds.into_iter().zip(stored) {
            ids.entry(kind).or_default().push(id);
        }
    }

    let all: Vec<i64> = ids.values().flatten().copied().collect();
    let rows =
        h.db.run(move |c| db::entries::by_ids(c, &all))
            .await
            .expect("entries");
    let by_id: HashMap<i64, db::models::LogEntry> = rows.into_iter().map(|e| (e.id, e)).collect();
    let summary = |id: &i64| by_id[id].summary.clone().unwrap_or_default();
    let flagged = |id: &i64| by_id[id].is_anomaly == Some(true);

    // The routine lines before the 100-minute one were flagged by their level, and are
    // now re-scored as normal, saying why; from the 100-minute line on they came in as
    // learned normal.
    let steady_ids = &ids["steady"];
    for id in &steady_ids[..5] {
        assert!(!flagged(id), "{:?}", by_id[id]);
        assert!(
            summary(id).ends_with(LEARNED_NORMAL_NOTE),
            "{}",
            summary(id)
        );
    }
    for id in &steady_ids[5..] {
        assert!(!flagged(id), "{:?}", by_id[id]);
        assert!(summary(id).contains("learned as normal"), "{}", summary(id));
        assert!(!summary(id).contains("re-scored"), "{}", summary(id));
    }
    // The burst stays flagged: a burst is suspect even in a steady pattern.
    for id in &ids["burst"] {
        assert!(flagged(id), "{:?}", by_id[id]);
        assert!(!summary(id).contains("re-scored"), "{}", summary(id));
    }
    // ERROR lines are not flagged by their level alone: whatever they were given stays
    // (this pattern comes every 20 minutes: every other window, not a continuous stream).
    for id in &ids["disk"] {
        assert!(!summary(id).contains("re-scored"), "{}", summary(id));
    }
    // The continuous ERROR stream: flagged while new (it is an ERROR and unlike anything
    // known), then learned, and its earlier flags re-scored: none is left.
    let lease_ids = &ids["lease"];
    assert!(
        lease_ids
            .iter()
            .any(|id| summary(id).ends_with(LEARNED_NORMAL_NOTE)),
        "the stream's early lines were flagged, then re-scored: {:?}",
        by_id[&lease_ids[0]]
    );
    for id in lease_ids {
        assert!(!flagged(id), "{:?}", by_id[id]);
    }

    // Running the rule again changes nothing.
    let template = by_id[&steady_ids[0]].template_id.expect("a template row");
    let rule = relearn_rule(&config);
    let again = rule.clone();
    let changed =
        h.db.run(move |c| {
            let learned = learned_on_latest_line(c, template, again.presence_window_ms)?;
            db::templates::rescore_learned_normal(c, template, &again, &learned)
        })
        .await
        .expect("re-score");
    assert_eq!(changed, 0);

    // An operator's label decides over learning: the template's lines follow it (the
    // operator's note replaces the learning's), and learning no longer re-scores them.
    let (_, relabelled) =
        h.db.run(move |c| db::templates::set_label_and_rescore(c, template, "anomaly"))
            .await
            .expect("label")
            .expect("the template exists");
    assert_eq!(relabelled, steady_ids.len() + ids["burst"].len());
    let changed =
        h.db.run(move |c| {
            let learned = learned_on_latest_line(c, template, rule.presence_window_ms)?;
            db::templates::rescore_learned_normal(c, template, &rule, &learned)
        })
        .await
        .expect("re-score");
    assert_eq!(
        changed, 0,
        "a labelled template is not re-scored by learning"
    );
    let first = steady_ids[0];
    let row =
        h.db.run(move |c| db::entries::by_ids(c, &[first]))
            .await
            .expect("entry")
            .remove(0);
    let text = row.summary.unwrap_or_default();
    assert_eq!(row.is_anomaly, Some(true));
    assert!(
        text.ends_with("re-scored: its pattern was marked anomalous by an operator"),
        "{text}"
    );
    assert_eq!(text.matches("re-scored").count(), 1, "{text}");
}

#[tokio::test]
async fn learning_re_scores_the_templates_earlier_lines_of_any_age() {
    let (_db, h, start) = no_warmup().await;
    let minutes = |m: i64| start + Duration::minutes(m);
    // A routine CRITICAL line every 20 minutes. The first hour's three lines are flagged by
    // their level (the pattern is not known yet) ...
    let first: Vec<NewLogEntry> = (0..3)
        .map(|k| entry(minutes(20 * k), "CRITICAL", ROUTINE))
        .collect();
    let early = support::score_entries(&h, first).await;
    // ... and were received three days ago, as a quiet source's are.
    let moved = early.clone();
    h.db.run(move |c| {
        use diesel::RunQueryDsl;
        Ok(diesel::sql_query(
            "UPDATE log_entries SET received_at = received_at - interval '3 days' \
             WHERE id = ANY($1)",
        )
        .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(moved)
        .execute(c)?)
    })
    .await
    .expect("moved");
    // The next hour's lines show steady presence: learned as normal at the 60-minute line,
    // and the three earlier lines are re-scored although they are days old.
    let later: Vec<NewLogEntry> = (3..6)
        .map(|k| entry(minutes(20 * k), "CRITICAL", ROUTINE))
        .collect();
    support::score_entries(&h, later).await;
    let rows =
        h.db.run(move |c| db::entries::by_ids(c, &early))
            .await
            .expect("entries");
    assert_eq!(rows.len(), 3);
    for row in rows {
        assert_eq!(row.is_anomaly, Some(false), "{row:?}");
        let summary = row.summary.unwrap_or_default();
        assert!(summary.ends_with(LEARNED_NORMAL_NOTE), "{summary}");
    }
}

/// A handler without warm-up on its own database (kept alive by the caller), its
/// templates loaded, and six hours ago aligned on a presence window.
async fn no_warmup() -> (
    TestDb,
    logcanary_scoring::handler::ScoringHandler,
    DateTime<Utc>,
) {
    let test_db = TestDb::new().await;
    let config = no_warmup_config();
    let h = support::handler(&test_db, config.clone());
    h.refresh_templates(true).await.expect("templates load");
    let start = aligned_start(&config);
    (test_db, h, start)
}

/// The detector's defaults without warm-up: every line is judged from the first.
fn no_warmup_config() -> ScorerConfig {
    ScorerConfig {
        warmup_lines: 0,
        ..ScorerConfig::default()
    }
}

/// Six hours ago, aligned on a presence window.
fn aligned_start(config: &ScorerConfig) -> DateTime<Utc> {
    let window_ms = config.presence_window_ms;
    let six_hours_ago = (Utc::now() - Duration::hours(6)).timestamp_millis();
    DateTime::from_timestamp_millis(six_hours_ago.div_euclid(window_ms) * window_ms)
        .expect("a time")
}

/// Scores `entries` one task per hour of `logged_at` from `start`, in time order (as a
/// shipper sends them), and reads them back: `(is_anomaly, summary)` in the same order.
async fn score_hourly(
    h: &logcanary_scoring::handler::ScoringHandler,
    start: DateTime<Utc>,
    mut entries: Vec<NewLogEntry>,
) -> Vec<(bool, String)> {
    entries.sort_by_key(|e| e.logged_at);
    let mut ids = Vec::new();
    let mut hour = 0;
    while ids.len() < entries.len() {
        let end = start + Duration::hours(hour + 1);
        let batch: Vec<NewLogEntry> = entries[ids.len()..]
            .iter()
            .take_while(|e| e.logged_at < end)
            .cloned()
            .collect();
        if !batch.is_empty() {
            ids.extend(support::score_entries(h, batch).await);
        }
        hour += 1;
    }
    read_back(h, &ids).await
}

/// `(is_anomaly, summary)` of the entries `ids`, in that order.
async fn read_back(
    h: &logcanary_scoring::handler::ScoringHandler,
    ids: &[i64],
) -> Vec<(bool, String)> {
    let all = ids.to_vec();
    let rows =
        h.db.run(move |c| db::entries::by_ids(c, &all))
            .await
            .expect("entries");
    let by_id: HashMap<i64, db::models::LogEntry> = rows.into_iter().map(|e| (e.id, e)).collect();
    ids.iter()
        .map(|id| {
            let e = &by_id[id];
            (
                e.is_anomaly == Some(true),
                e.summary.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn what_learning_re_scores_does_not_depend_on_how_the_lines_were_batched() {
    // A routine CRITICAL pattern: 3 lines in the first window, 5 in the second, then 2
    // an hour in. Learned as normal on the 10th line (three windows over an hour, none
    // with more than half its lines), when the second window's 5 lines are no burst
    // (at most 3 x the 5 other lines over the 2 other windows). Ten more lines follow,
    // one per window. Judged with those, the second window would look like a burst
    // (3 x 15 lines over 12 windows is under 5), but they came after the learning line:
    // whether a client sent every line in one task or one line per task, the first ten
    // lines are re-scored alike.
    let minutes = |start: DateTime<Utc>, m: f64| start + Duration::seconds((m * 60.0) as i64);
    let lines = |start: DateTime<Utc>| -> Vec<NewLogEntry> {
        [0.0, 2.0, 4.0, 10.0, 11.5, 13.0, 14.5, 16.0, 60.0, 62.0]
            .into_iter()
            .chain((0..10).map(|k| 70.0 + 10.0 * f64::from(k)))
            .map(|m| entry(minutes(start, m), "CRITICAL", ROUTINE))
            .collect()
    };
    let (_one_db, one_task, start) = no_warmup().await;
    let ids = support::score_entries(&one_task, lines(start)).await;
    let together = read_back(&one_task, &ids).await;
    let (_each_db, each_line, start) = no_warmup().await;
    let mut ids = Vec::new();
    for line in lines(start) {
        ids.extend(support::score_entries(&each_line, vec![line]).await);
    }
    let apart = read_back(&each_line, &ids).await;

    assert!(
        together[9].1.contains("learned as normal"),
        "{}",
        together[9].1
    );
    for (i, ((flagged, summary), (flagged_apart, _))) in together.iter().zip(&apart).enumerate() {
        assert!(!flagged, "line {i} (one task): {summary}");
        assert!(!flagged_apart, "line {i} (a task each): {summary}");
    }
    for (i, (_, summary)) in together[..9].iter().enumerate() {
        assert!(
            summary.ends_with(LEARNED_NORMAL_NOTE),
            "line {i}: {summary}"
        );
    }
}

#[tokio::test]
async fn routine_critical_lines_that_come_in_clumps_are_re_scored() {
    // A user's program fails every hour and logs five CRITICAL lines within a minute
    // each time. Learned as normal on the third clump's first line (three windows over
    // two hours, no window with more than half its lines). Each clump is what the pattern
    // holds in a window it is seen in, not a burst, so the first two are re-scored
    // (against the mean over every window since its first line, 15 lines in 13 windows,
    // they would have looked like bursts).
    let (_db, h, start) = no_warmup().await;
    let entries: Vec<NewLogEntry> = (0..3)
        .flat_map(|clump| {
            (0..5).map(move |k| {
                entry(
                    start + Duration::minutes(60 * clump) + Duration::seconds(10 * k),
                    "CRITICAL",
                    ROUTINE,
                )
            })
        })
        .collect();
    let scored = score_hourly(&h, start, entries).await;
    for (i, (flagged, summary)) in scored.iter().enumerate() {
        assert!(!flagged, "line {i}: {summary}");
    }
    for (_, summary) in &scored[..10] {
        assert!(summary.ends_with(LEARNED_NORMAL_NOTE), "{summary}");
    }
    assert!(
        scored[10].1.contains("learned as normal"),
        "{}",
        scored[10].1
    );
}

#[tokio::test]
async fn a_critical_burst_of_a_pattern_otherwise_seen_at_info_keeps_its_flags() {
    // The same pattern as quiet INFO lines every 20 minutes, and once as a burst of eight
    // CRITICAL lines across two windows. Learned as normal at 60 minutes (five windows,
    // none with half its lines), but the CRITICAL lines were only ever a burst: their
    // level has not shown steady presence, so their flags stay.
    let (_db, h, start) = no_warmup().await;
    let mut entries: Vec<NewLogEntry> = [0, 20, 40, 60]
        .into_iter()
        .map(|m| entry(start + Duration::minutes(m), "INFO", DISK))
        .collect();
    entries.extend((0..8).map(|k| {
        entry(
            start + Duration::minutes(48) + Duration::seconds(30 * k),
            "CRITICAL",
            DISK,
        )
    }));
    let scored = score_hourly(&h, start, entries).await;
    // In time order: INFO at 0, 20, 40, the eight CRITICAL lines, INFO at 60.
    assert!(
        scored[11].1.contains("learned as normal"),
        "{}",
        scored[11].1
    );
    for (flagged, summary) in &scored[3..11] {
        assert!(flagged, "{summary}");
        assert!(!summary.contains("re-scored"), "{summary}");
    }
}

#[tokio::test]
async fn an_anomalous_burst_that_comes_back_stays_flagged() {
    // Twenty CRITICAL lines 12 s apart, across two windows, and the same two hours later.
    // Four windows over two hours, none with more than half its lines: steady presence by
    // the windows; but its CRITICAL lines came as two bursts, not as separate arrivals, so
    // learning does not cover them: both bursts stay flagged, and nothing is re-scored.
    let (_db, h, start) = no_warmup().await;
    let entries: Vec<NewLogEntry> = [8, 128]
        .into_iter()
        .flat_map(|minute| {
            (0..20).map(move |k| {
                entry(
                    start + Duration::minutes(minute) + Duration::seconds(12 * k),
                    "CRITICAL",
                    PANIC,
                )
            })
        })
        .collect();
    let scored = score_hourly(&h, start, entries).await;
    assert!(
        scored[39]
            .1
            .contains("but its CRITICAL lines arrived 2 separate times"),
        "{}",
        scored[39].1
    );
    for (flagged, summary) in &scored {
        assert!(flagged, "{summary}");
        assert!(!summary.contains("re-scored"), "{summary}");
    }
}

#[tokio::test]
async fn a_dense_log_learns_a_routine_pattern_from_its_arrivals_across_a_worker_restart() {
    // A routine CRITICAL line every 3 minutes: too soon for the time windows (an hour),
    // but its 10th arrival, 27 minutes after the first, shows steady presence. The worker
    // is replaced after the 5th line: the new one knows the first five arrivals only from
    // the `templates` row, so it learns on the 10th line, not on its own 10th.
    let config = no_warmup_config();
    let (test_db, first, start) = no_warmup().await;
    let entries: Vec<NewLogEntry> = (0..12)
        .map(|k| entry(start + Duration::minutes(3 * k), "CRITICAL", ROUTINE))
        .collect();
    let mut ids = support::score_entries(&first, entries[..5].to_vec()).await;
    drop(first);
    let second = support::handler(&test_db, config);
    second
        .refresh_templates(true)
        .await
        .expect("templates load");
    ids.extend(support::score_entries(&second, entries[5..].to_vec()).await);

    let all = ids.clone();
    let rows = second
        .db
        .run(move |c| db::entries::by_ids(c, &all))
        .await
        .expect("entries");
    let by_id: HashMap<i64, db::models::LogEntry> = rows.into_iter().map(|e| (e.id, e)).collect();
    let line = |i: usize| {
        let e = &by_id[&ids[i]];
        (
            e.is_anomaly == Some(true),
            e.summary.clone().unwrap_or_default(),
        )
    };
    // The first nine were flagged by their level, then re-scored when it was learned.
    for i in 0..9 {
        let (flagged, summary) = line(i);
        assert!(!flagged, "line {i}: {summary}");
        assert!(
            summary.ends_with(LEARNED_NORMAL_NOTE),
            "line {i}: {summary}"
        );
    }
    let (flagged, summary) = line(9);
    assert!(!flagged, "{summary}");
    assert!(
        summary.contains(
            "learned as normal: seen steadily, arrived 10 separate times over 27 minutes"
        ),
        "{summary}"
    );
}
