//! Two analysis-worker replicas on one database judge a template as one worker would:
//! its presence is counted from every replica's lines (the `templates` row's tally, which
//! each worker counts on under the row's lock), and a template first seen by one replica
//! keeps, on the other, how new and how novel it was when it first appeared.
//!
//! Runs the real model (`make setup`) against the real Postgres (`TEST_DATABASE_SERVER`).

use crate::support::{self, entry};

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use db::{
    models::NewLogEntry,
    templates::{TemplateOrder, TemplateRow},
};
use detector::scorer::ScorerConfig;
use logcanary_scoring::handler::ScoringHandler;
use test_support::TestDb;

const ROUTINE: &str = "Node card on rack R12 was power cycled by the service controller";

/// A replica on `test_db` that pulls the shared templates at most every `refresh`, its
/// templates loaded.
async fn replica(test_db: &TestDb, config: ScorerConfig, refresh: StdDuration) -> ScoringHandler {
    let mut h = support::handler(test_db, config);
    h.refresh_every = refresh;
    h.refresh_templates(true).await.expect("templates load");
    h
}

/// `(is_anomaly, anomaly_score, summary)` of the entry `id`.
async fn verdict(h: &ScoringHandler, id: i64) -> (bool, f64, String) {
    let rows =
        h.db.run(move |c| db::entries::by_ids(c, &[id]))
            .await
            .expect("entries");
    let e = &rows[0];
    (
        e.is_anomaly == Some(true),
        e.anomaly_score.unwrap_or_default(),
        e.summary.clone().unwrap_or_default(),
    )
}

/// Two replicas without warm-up on one new database (kept alive by the caller), pulling
/// at most every `a_refresh` and `b_refresh`, and six hours ago aligned on a presence
/// window.
async fn two_replicas(
    a_refresh: StdDuration,
    b_refresh: StdDuration,
) -> (TestDb, ScoringHandler, ScoringHandler, DateTime<Utc>) {
    let config = ScorerConfig {
        warmup_lines: 0,
        ..ScorerConfig::default()
    };
    let test_db = TestDb::new().await;
    let a = replica(&test_db, config.clone(), a_refresh).await;
    let b = replica(&test_db, config.clone(), b_refresh).await;
    let window_ms = config.presence_window_ms;
    let six_hours_ago = (Utc::now() - Duration::hours(6)).timestamp_millis();
    let start = DateTime::from_timestamp_millis(six_hours_ago.div_euclid(window_ms) * window_ms)
        .expect("a time");
    (test_db, a, b, start)
}

/// The routine CRITICAL line `minutes` after `start`.
fn routine_at(start: DateTime<Utc>, minutes: f64) -> NewLogEntry {
    entry(
        start + Duration::seconds((minutes * 60.0) as i64),
        "CRITICAL",
        ROUTINE,
    )
}

/// Each entry of `ids` ends normal, re-scored by its template's learning.
async fn cleared_by_learning(h: &ScoringHandler, ids: &[i64]) {
    for (i, id) in ids.iter().enumerate() {
        let (flagged, _, summary) = verdict(h, *id).await;
        assert!(!flagged, "line {i}: {summary}");
        assert!(
            summary.ends_with(db::templates::LEARNED_NORMAL_NOTE),
            "line {i}: {summary}"
        );
    }
}

async fn template_rows(h: &ScoringHandler) -> Vec<TemplateRow> {
    h.db.run(|c| db::templates::list(c, TemplateOrder::MostFrequent, 100))
        .await
        .expect("templates")
}

#[tokio::test]
async fn the_stored_presence_counts_every_replicas_windows() {
    // A routine CRITICAL pattern, one line every 20 minutes, its tasks taken in turn by
    // replica A (which pulls the shared templates before every batch) and replica B (which
    // pulled once, at start, and scores on its own view: a worker busy with its own
    // batches between two pulls). One worker would learn it on the 4th line (four windows
    // over an hour). The row counts all six windows whichever replica wrote them, so A
    // learns it from the row on the 5th line; when the row kept the larger of the
    // replicas' own views, it held 3 windows and neither replica ever learned it.
    let (_db, a, b, start) = two_replicas(StdDuration::ZERO, StdDuration::from_secs(3600)).await;
    let mut ids = Vec::new();
    for k in 0..6 {
        let line = entry(start + Duration::minutes(20 * k), "CRITICAL", ROUTINE);
        let h = if k % 2 == 0 { &a } else { &b };
        ids.extend(support::score_entries(h, vec![line]).await);
    }
    let rows = template_rows(&a).await;
    assert_eq!(rows.len(), 1, "one template: {rows:?}");
    let row = &rows[0];
    assert_eq!(
        (row.count, row.windows, row.episodes, row.level_episodes),
        (6, 6, 6, 6),
        "the row counts every line's window and arrival: {row:?}"
    );
    assert_eq!(row.max_window_lines, 1, "{row:?}");
    let (flagged, _, summary) = verdict(&a, ids[4]).await;
    assert!(
        !flagged,
        "A learned it from the row on the 5th line: {summary}"
    );
    assert!(summary.contains("learned as normal"), "{summary}");
    for (i, id) in ids.iter().enumerate().take(4) {
        let (flagged, _, summary) = verdict(&a, *id).await;
        assert!(!flagged, "line {i} re-scored once learned: {summary}");
    }
}

#[tokio::test]
async fn a_template_first_seen_by_another_replica_stays_as_new_as_it_was() {
    // After the warm-up, replica B sees a message unlike anything before: it is new and
    // novel, and its prior says so. Replica A gets its next line: it knows the template
    // only from the row, and scores it as B did (before, A took a template it had not
    // seen for one of the warm-up's, with no novelty and no newness). B's stream had
    // settled (its latest 10 lines brought no new template), A's had not (every line of
    // its warm-up was new to it): A weighs the template's newness as B did when it was
    // first seen, from the row.
    let config = ScorerConfig {
        warmup_lines: 20,
        warmup_ms: 0,
        settled_lines: 10,
        ..ScorerConfig::default()
    };
    let test_db = TestDb::new().await;
    let a = replica(&test_db, config.clone(), StdDuration::ZERO).await;
    let b = replica(&test_db, config, StdDuration::ZERO).await;
    let start = Utc::now() - Duration::hours(2);
    // Routine lines k..k+n of one template: A's warm-up, then B's after its pull.
    let jobs = |ks: std::ops::Range<i64>| -> Vec<NewLogEntry> {
        ks.map(|k| {
            entry(
                start + Duration::seconds(30 * k),
                "INFO",
                &format!(
                    "Job {k} finished on node card R{k}-M0 in {} seconds",
                    10 + k
                ),
            )
        })
        .collect()
    };
    support::score_entries(&a, jobs(0..20)).await;
    b.refresh_templates(true).await.expect("B pulls");
    support::score_entries(&b, jobs(20..30)).await;
    let novel = "Fan module 3 speed sensor reading dropped below threshold";
    let at = start + Duration::minutes(30);
    let first = support::score_entries(&b, vec![entry(at, "WARNING", novel)]).await[0];
    let second =
        support::score_entries(&a, vec![entry(at + Duration::minutes(5), "WARNING", novel)]).await
            [0];
    let on_b = verdict(&b, first).await;
    let on_a = verdict(&a, second).await;
    let rows = template_rows(&a).await;
    let row = rows
        .iter()
        .find(|r| r.count == 2)
        .expect("the novel template's row");
    assert!(row.new_after_warmup, "{row:?}");
    assert!(row.novelty > 0.0, "{row:?}");
    assert!((row.born_settled - 1.0).abs() < 1e-6, "{row:?}");
    assert!(
        (on_a.1 - on_b.1).abs() < 1e-6,
        "A scores the second line as B scored the first: {on_a:?} / {on_b:?}"
    );
    assert_eq!(on_a.0, on_b.0, "{on_a:?} / {on_b:?}");
}

#[tokio::test]
async fn how_settled_the_stream_is_is_counted_from_every_replicas_lines() {
    // Replica A scores 30 lines of one routine pattern: after its first line, the stream
    // brought no new template. Replica B, which scored nothing yet (a second worker, or
    // A restarted), then meets a new message. Counted from B's own lines, B would know
    // nothing of how settled the stream was (fewer than `settled_lines` lines seen) and
    // weigh the message's newness as in a busy stream; counted from every replica's
    // lines (`stream_births`), it scores the line as one worker that scored all 31 does.
    let config = ScorerConfig {
        warmup_lines: 20,
        warmup_ms: 0,
        settled_lines: 10,
        ..ScorerConfig::default()
    };
    let start = Utc::now() - Duration::hours(2);
    let routine = |ks: std::ops::Range<i64>| -> Vec<NewLogEntry> {
        ks.map(|k| {
            entry(
                start + Duration::seconds(30 * k),
                "INFO",
                &format!("Job {k} finished in {} seconds", 10 + k),
            )
        })
        .collect()
    };
    let novel = entry(
        start + Duration::minutes(30),
        "WARNING",
        "Fan module 3 speed sensor reading dropped below threshold",
    );

    let test_db = TestDb::new().await;
    let a = replica(&test_db, config.clone(), StdDuration::ZERO).await;
    let b = replica(&test_db, config.clone(), StdDuration::ZERO).await;
    support::score_entries(&a, routine(0..30)).await;
    let on_b = support::score_entries(&b, vec![novel.clone()]).await[0];
    let on_b = verdict(&b, on_b).await;

    let one_db = TestDb::new().await;
    let one = replica(&one_db, config, StdDuration::ZERO).await;
    support::score_entries(&one, routine(0..30)).await;
    let on_one = support::score_entries(&one, vec![novel]).await[0];
    let on_one = verdict(&one, on_one).await;

    assert!(
        on_one.2.contains("new after the stream had settled"),
        "{on_one:?}"
    );
    assert!(
        (on_b.1 - on_one.1).abs() < 1e-6 && on_b.0 == on_one.0,
        "B scores the line as one worker: {on_b:?} / {on_one:?}"
    );
    assert!(
        on_b.2.contains("new after the stream had settled"),
        "{on_b:?}"
    );
    let rows = template_rows(&b).await;
    let row = rows
        .iter()
        .find(|r| r.count == 1)
        .expect("the new template's row");
    assert!((row.born_settled - 1.0).abs() < 1e-6, "{row:?}");
}

#[tokio::test]
async fn a_line_scored_on_a_stale_view_follows_learning_another_replica_did_meanwhile() {
    // Replica A scores a routine CRITICAL pattern's first four lines, 20 minutes apart,
    // and learns it as normal on the 4th (four windows over an hour): its re-score clears
    // the first three. Replica B pulled the templates after the first line and scores
    // the 5th line on that view: to B the pattern is unknown (one line so far), and its
    // level flags the line. The re-score A ran could not see B's entry; B's write finds
    // the template's tally learned and runs it again, so the 5th line ends as the other
    // four.
    let (_db, a, b, start) = two_replicas(StdDuration::ZERO, StdDuration::from_secs(3600)).await;
    let line = |k: i64| entry(start + Duration::minutes(20 * k), "CRITICAL", ROUTINE);
    let mut ids = Vec::new();
    for k in 0..4 {
        ids.extend(support::score_entries(&a, vec![line(k)]).await);
        if k == 0 {
            b.refresh_templates(true).await.expect("B pulls");
        }
    }
    let (flagged, _, summary) = verdict(&a, ids[3]).await;
    assert!(
        !flagged && summary.contains("learned as normal"),
        "{summary}"
    );
    let on_b = support::score_entries(&b, vec![line(4)]).await[0];
    let (flagged, _, summary) = verdict(&b, on_b).await;
    assert!(!flagged, "B's line follows the learning: {summary}");
    assert!(
        summary.ends_with(db::templates::LEARNED_NORMAL_NOTE),
        "{summary}"
    );
    for (i, id) in ids.iter().enumerate().take(3) {
        let (flagged, _, summary) = verdict(&a, *id).await;
        assert!(!flagged, "line {i}: {summary}");
    }
}

#[tokio::test]
async fn what_learning_re_scores_does_not_depend_on_which_worker_wrote_first() {
    // The pattern of `relearn.rs`'s batching test: a routine CRITICAL line 3 times in the
    // first window, 5 in the second, twice an hour in (learned on the 10th line, when the
    // second window is no burst), then once per window for ten more. Replica B writes the
    // first line, then the ten later lines; replica A, which pulled after B's first line
    // and before the later ones, scores the other nine of the first ten in one task and
    // learns the pattern on the 10th. Judged with B's later lines, the second window would
    // look like a burst; they came after the learning line, so A's re-score leaves them
    // out, as one worker would, and clears the first nine.
    let (_db, a, b, start) = two_replicas(StdDuration::from_secs(3600), StdDuration::ZERO).await;
    let at = |m: f64| routine_at(start, m);
    let mut ids = support::score_entries(&b, vec![at(0.0)]).await;
    a.refresh_templates(true).await.expect("A pulls");
    let later: Vec<NewLogEntry> = (0..10).map(|k| at(70.0 + 10.0 * f64::from(k))).collect();
    support::score_entries(&b, later).await;
    let first: Vec<NewLogEntry> = [2.0, 4.0, 10.0, 11.5, 13.0, 14.5, 16.0, 60.0, 62.0]
        .into_iter()
        .map(at)
        .collect();
    ids.extend(support::score_entries(&a, first).await);
    let (flagged, _, summary) = verdict(&a, ids[9]).await;
    assert!(
        !flagged && summary.contains("learned as normal"),
        "{summary}"
    );
    cleared_by_learning(&a, &ids[..9]).await;
}

#[tokio::test]
async fn lines_from_later_in_the_log_that_another_worker_wrote_first_follow_the_learning() {
    // A routine CRITICAL pattern, a line every 20 minutes. Replica B takes the 6th to 8th
    // lines first (a later part of the log, scored side by side): three windows are not
    // steady presence, so their level flags them. Replica A, on a view from before B wrote,
    // takes the first five and learns the pattern on the 4th. Its re-score as of that line
    // leaves out lines logged after it; B's lines are then judged as of the latest line,
    // as one worker that had read the log in order would have judged them.
    let (_db, a, b, start) = two_replicas(StdDuration::from_secs(3600), StdDuration::ZERO).await;
    let line = |k: i64| entry(start + Duration::minutes(20 * k), "CRITICAL", ROUTINE);
    let on_b = support::score_entries(&b, (5..8).map(line).collect()).await;
    for id in &on_b {
        let (flagged, _, summary) = verdict(&b, *id).await;
        assert!(flagged, "not learned from three windows: {summary}");
    }
    let on_a = support::score_entries(&a, (0..5).map(line).collect()).await;
    let (flagged, _, summary) = verdict(&a, on_a[3]).await;
    assert!(
        !flagged && summary.contains("learned as normal"),
        "{summary}"
    );
    for (i, id) in on_a.iter().chain(&on_b).enumerate() {
        let (flagged, _, summary) = verdict(&a, *id).await;
        assert!(!flagged, "line {i}: {summary}");
    }
    for id in &on_b {
        let (_, _, summary) = verdict(&a, *id).await;
        assert!(
            summary.ends_with(db::templates::LEARNED_NORMAL_NOTE),
            "{summary}"
        );
    }
}

#[tokio::test]
async fn learning_completed_by_lines_written_out_of_order_is_judged_where_the_log_learned_it() {
    // A routine CRITICAL pattern: 4 lines in the first window, 6 in the second (more than
    // half of its lines, and 10 arrivals over less than 20 minutes: not learned), two at
    // 30 and 32 minutes, then one per window for an hour and a half. Read in time order it
    // is learned on the line at 32 minutes (12 arrivals over 32 minutes, no window holding
    // more than half), when the second window's 6 lines are no burst against the 6 others
    // in two windows, and the re-score clears all of the first twelve.
    //
    // Side by side: replica B takes the first line and the later part and writes first;
    // replica A, on a view from before B wrote the later part (it pulled after the first
    // line), scores the other nine of the first ten lines, which alone are not learned.
    // A's write completes the learning in the shared tally. Judged as of the latest line
    // (21 lines in 12 windows) the second window is a burst and its lines stayed flagged;
    // judged where the log learned the pattern, as one worker reading it in order, they
    // are cleared.
    let (_db, a, b, start) = two_replicas(StdDuration::from_secs(3600), StdDuration::ZERO).await;
    let at = |m: f64| routine_at(start, m);
    let mut on_b = support::score_entries(&b, vec![at(0.0)]).await;
    a.refresh_templates(true).await.expect("A pulls");
    let later: Vec<NewLogEntry> = [30.0, 32.0]
        .into_iter()
        .chain((4..13).map(|w| f64::from(w) * 10.0))
        .map(at)
        .collect();
    on_b.extend(support::score_entries(&b, later).await);
    let first: Vec<NewLogEntry> = [2.0, 4.0, 6.0, 10.0, 11.5, 13.0, 14.5, 16.0, 17.5]
        .into_iter()
        .map(at)
        .collect();
    let on_a = support::score_entries(&a, first).await;
    let (_, _, summary) = verdict(&a, on_a[8]).await;
    assert!(
        summary.contains("not learned as normal"),
        "A's view alone had not learned it: {summary}"
    );
    cleared_by_learning(&a, &on_a).await;
    for (i, id) in on_b.iter().enumerate() {
        let (flagged, _, summary) = verdict(&b, *id).await;
        assert!(!flagged, "B's line {i}: {summary}");
    }
}

#[tokio::test]
async fn lines_that_fill_a_gap_another_worker_left_complete_a_continuous_stream() {
    // A new ERROR message every 5 minutes for three hours that never stops (a continuous
    // stream: one worker learns it at 60 minutes and clears its flagged first hour).
    // Replica B, on a stale view, takes the first, third and fifth half hours and writes
    // first: it learns the pattern from its own lines at 60 minutes, but with every other
    // half hour missing the stream is not continuous, so its first six lines stay
    // flagged. Replica A then takes the half hours in between, scored on the row B left
    // (learned, so none is flagged). A's lines fill the gaps: the stream's stored lines
    // are continuous now, and its earlier flags are re-scored as one worker would have.
    let (_db, a, b, start) = two_replicas(StdDuration::ZERO, StdDuration::from_secs(3600)).await;
    let lease = "Failed to renew lease for client session, will retry shortly";
    let at = |m: i64| entry(start + Duration::minutes(m), "ERROR", lease);
    let half_hours = |from: &[i64]| -> Vec<NewLogEntry> {
        from.iter()
            .flat_map(|h| (0..6).map(move |k| h * 30 + 5 * k))
            .map(at)
            .collect()
    };
    let on_b = support::score_entries(&b, half_hours(&[0, 2, 4])).await;
    let (flagged, _, summary) = verdict(&b, on_b[0]).await;
    assert!(
        flagged,
        "B's first line stays flagged on B's lines alone: {summary}"
    );
    let on_a = support::score_entries(&a, half_hours(&[1, 3, 5])).await;
    for (i, id) in on_a.iter().enumerate() {
        let (flagged, _, summary) = verdict(&a, *id).await;
        assert!(!flagged, "A's line {i}: {summary}");
    }
    for (i, id) in on_b.iter().enumerate() {
        let (flagged, _, summary) = verdict(&b, *id).await;
        assert!(!flagged, "B's line {i}: {summary}");
    }
    let (_, _, summary) = verdict(&b, on_b[0]).await;
    assert!(
        summary.ends_with(db::templates::LEARNED_NORMAL_NOTE),
        "{summary}"
    );
}

#[tokio::test]
async fn a_replica_judges_a_source_by_every_replicas_lines() {
    // Replica A scores a source's first 60 lines, a WARNING among every ten: the source
    // marks its trouble by level. Replica B has scored none of them; an INFO line of that
    // source that reads like a failure counts for less on B too, as on one worker (B
    // judged the source by its own lines before: none, so the words kept full weight).
    let (_db, a, b, start) = two_replicas(StdDuration::ZERO, StdDuration::ZERO).await;
    let lines: Vec<NewLogEntry> = (0..60)
        .map(|k| {
            let at = start + Duration::seconds(30 * k);
            if k % 10 == 9 {
                entry(
                    at,
                    "WARNING",
                    &format!("Fan speed low on node card R{k}-M0"),
                )
            } else {
                entry(
                    at,
                    "INFO",
                    &format!("Job {k} finished on node card R{k}-M0"),
                )
            }
        })
        .collect();
    support::score_entries(&a, lines).await;
    let failure = "Failed to renew lease for client session, will retry shortly";
    let on_b = support::score_entries(&b, vec![entry(start + Duration::hours(1), "INFO", failure)])
        .await[0];
    let (_, _, summary) = verdict(&b, on_b).await;
    assert!(
        summary.contains("this source marks its trouble by level"),
        "{summary}"
    );
}

/// The line of a new message (one template to one worker) naming storage volume `name`.
fn volume_line(at: DateTime<Utc>, name: &str) -> NewLogEntry {
    entry(
        at,
        "ERROR",
        &format!("Storage volume {name} went read-only after repeated write errors"),
    )
}

/// Every entry of `ids` is stored under the template row `id`.
async fn stored_under(h: &ScoringHandler, ids: &[i64], id: i64) {
    let ids = ids.to_vec();
    let rows =
        h.db.run(move |c| db::entries::by_ids(c, &ids))
            .await
            .expect("entries");
    for e in rows {
        assert_eq!(e.template_id, Some(id), "entry {}: {e:?}", e.id);
    }
}

#[tokio::test]
async fn a_line_of_a_pattern_another_replica_stored_since_the_last_pull_joins_its_row() {
    // Replicas A and B pull each other's templates at most every hour. A meets a new
    // message in a line naming volume alpha and stores its template; a minute later B,
    // which has seen no other replica yet, meets it in a line naming volume gamma, starts
    // a template of its own, and its write finds A's row and puts the line there (B now
    // knows another replica stores templates). Then A meets a second new message (fan
    // tray 3) and stores it; B meets it in a line naming fan tray 5. B holds no template
    // that would take the line, so before scoring it looks the line up in the table,
    // finds A's row and scores the line as a line of that pattern ("known", as one worker
    // would), stored under that row. Before, B started a template of its own and the
    // pattern was two rows for good, its count and presence split between them.
    let (_db, a, b, start) =
        two_replicas(StdDuration::from_secs(3600), StdDuration::from_secs(3600)).await;
    let fan = |at: DateTime<Utc>, tray: &str| {
        entry(
            at,
            "ERROR",
            &format!("Fan tray {tray} in the blade chassis stopped spinning after a power event"),
        )
    };
    let mut volume = support::score_entries(&a, vec![volume_line(start, "alpha")]).await;
    volume.extend(
        support::score_entries(&b, vec![volume_line(start + Duration::minutes(1), "gamma")]).await,
    );
    let mut fans =
        support::score_entries(&a, vec![fan(start + Duration::minutes(2), "three")]).await;
    fans.extend(support::score_entries(&b, vec![fan(start + Duration::minutes(3), "five")]).await);
    let (_, _, summary) = verdict(&b, fans[1]).await;
    assert!(
        summary.starts_with("Known message pattern"),
        "B scores fan tray five as a line of A's pattern: {summary}"
    );
    let rows = template_rows(&a).await;
    assert_eq!(rows.len(), 2, "two templates: {rows:?}");
    for (ids, text) in [
        (
            &volume,
            "Storage volume <*> went read-only after repeated write errors",
        ),
        (
            &fans,
            "Fan tray <*> in the blade chassis stopped spinning after a power event",
        ),
    ] {
        let row = rows
            .iter()
            .find(|r| r.template == text)
            .unwrap_or_else(|| panic!("a row {text}: {rows:?}"));
        assert_eq!(row.count, 2, "{row:?}");
        stored_under(&a, ids, row.id).await;
    }
}

#[tokio::test]
async fn replicas_that_scored_one_new_message_before_either_stored_it_store_one_template() {
    // Both replicas score a line of a new message (volume alpha on A, gamma on B) before
    // either has stored it: each starts a template of its own. The test holds the lock
    // on the messages' route until both writes wait for it, so neither could find the
    // other's row before scoring. The second to write finds the first's row and writes
    // its line there: one template, both lines under it, and the second replica holds
    // that row afterwards (its next line joins it).
    let (test_db, a, b, start) =
        two_replicas(StdDuration::from_secs(3600), StdDuration::from_secs(3600)).await;
    let url = test_db.url.clone();
    let (held_tx, held_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        use diesel::{Connection, RunQueryDsl};
        let mut conn = diesel::PgConnection::establish(&url).expect("a connection");
        conn.transaction::<_, diesel::result::Error, _>(|c| {
            diesel::sql_query(
                "SELECT pg_advisory_xact_lock(hashtextextended('new-template:9 volume', 0))",
            )
            .execute(c)?;
            let _ = held_tx.send(());
            let _ = release_rx.recv();
            Ok(())
        })
        .expect("the route's lock, held and released");
    });
    held_rx.await.expect("the route's lock is held");
    let release = async {
        // Both writes wait for the lock (or, should a write not take it, both are done).
        let waiting_here = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
             AND NOT granted AND database = \
             (SELECT oid FROM pg_database WHERE datname = current_database())";
        let written = "SELECT count(*) FROM log_entries WHERE analyzed_at IS NOT NULL";
        test_support::eventually(
            "both writes to wait for the route's lock",
            StdDuration::from_secs(60),
            || async {
                let waiting = test_db.count(waiting_here).await;
                let written = test_db.count(written).await;
                (waiting == 2 || written == 2).then_some(())
            },
        )
        .await;
        release_tx.send(()).expect("the holder waits");
    };
    let ((on_a, on_b), ()) = tokio::join!(
        async {
            tokio::join!(
                support::score_entries(&a, vec![volume_line(start, "alpha")]),
                support::score_entries(&b, vec![volume_line(start, "gamma")]),
            )
        },
        release,
    );
    holder.join().expect("the holder thread");
    let rows = template_rows(&a).await;
    assert_eq!(rows.len(), 1, "one template: {rows:?}");
    assert_eq!(rows[0].count, 2, "{rows:?}");
    let mut ids = vec![on_a[0], on_b[0]];
    for h in [&a, &b] {
        ids.extend(
            support::score_entries(h, vec![volume_line(start + Duration::minutes(1), "delta")])
                .await,
        );
    }
    stored_under(&a, &ids, rows[0].id).await;
}
#[tokio::test]
async fn replicas_storing_one_new_message_at_the_same_moment_store_one_template() {
    // As above, but both replicas write at once: storing a new template waits for the
    // other worker storing one of the same route, so the second sees the first's row.
    for round in 0..3 {
        let (_db, a, b, start) =
            two_replicas(StdDuration::from_secs(3600), StdDuration::from_secs(3600)).await;
        let (on_a, on_b) = tokio::join!(
            support::score_entries(&a, vec![volume_line(start, "alpha")]),
            support::score_entries(&b, vec![volume_line(start, "gamma")]),
        );
        let rows = template_rows(&a).await;
        assert_eq!(rows.len(), 1, "round {round}, one template: {rows:?}");
        assert_eq!(rows[0].count, 2, "{rows:?}");
        stored_under(&a, &[on_a[0], on_b[0]], rows[0].id).await;
    }
}
