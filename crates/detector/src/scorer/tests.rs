use super::summary::human_duration;
use super::*;
use crate::embedder::EmbedderConfig;

const MINUTE: i64 = 60_000;

fn scorer(warmup_lines: u64) -> Scorer<Embedder> {
    let embedder = Embedder::start(EmbedderConfig::from_env())
        .unwrap_or_else(|e| panic!("embedder did not start: {e}"));
    let config = ScorerConfig {
        warmup_lines,
        ..ScorerConfig::default()
    };
    Scorer::new(config, embedder)
}

/// A scorer whose embedder puts every text at the same point (no model): for the rules
/// that read only timing and levels.
fn flat_scorer(warmup_lines: u64) -> Scorer<Flat> {
    Scorer::new(
        ScorerConfig {
            warmup_lines,
            ..ScorerConfig::default()
        },
        Flat,
    )
}

fn line(t: i64, severity: Severity, message: &str) -> LogLine {
    LogLine {
        timestamp_ms: t,
        severity,
        message: message.to_string(),
        source: None,
    }
}

const ROUTINE: &[&str] = &[
    "Accepted publickey for deploy from 10.0.0.5 port 51234 ssh2",
    "session opened for user deploy by (uid=0)",
    "session closed for user deploy",
    "GET /api/health 200 3ms",
    "Connection to 10.0.0.7 closed",
    "cache refresh finished in 120 ms",
];

fn warm_up(s: &mut Scorer<Embedder>, rounds: i64) -> i64 {
    warm_up_with_header(s, rounds, |_| String::new())
}

/// [`warm_up`] with `header(t)` written in front of each message.
fn warm_up_with_header(
    s: &mut Scorer<Embedder>,
    rounds: i64,
    header: impl Fn(i64) -> String,
) -> i64 {
    let mut t = 0;
    for round in 0..rounds {
        let batch: Vec<LogLine> = ROUTINE
            .iter()
            .map(|m| {
                t += MINUTE;
                let message = m.replace("10.0.0.", &format!("10.0.{round}."));
                line(t, Severity::Info, &format!("{}{message}", header(t)))
            })
            .collect();
        s.score_batch(&batch).expect("scoring works");
    }
    t
}

#[test]
fn novel_error_after_warm_up_is_flagged_and_routine_is_not() {
    let mut s = scorer(60);
    let t = warm_up(&mut s, 12);
    let novel = s
        .score(&line(
            t + MINUTE,
            Severity::Error,
            "kernel: Out of memory: Kill process 4242 (java) score 901",
        ))
        .expect("scoring works");
    assert!(novel.is_anomaly, "{novel:?}");
    assert!(
        novel.summary.starts_with("New message pattern"),
        "{}",
        novel.summary
    );
    assert!(
        novel.summary.contains("severity ERROR"),
        "{}",
        novel.summary
    );
    assert!(
        novel.summary.contains("closest known: '"),
        "{}",
        novel.summary
    );

    let routine = s
        .score(&line(
            t + 2 * MINUTE,
            Severity::Info,
            "session closed for user deploy",
        ))
        .expect("scoring works");
    assert!(!routine.is_anomaly, "{routine:?}");
    assert!(routine.score < 0.3, "{routine:?}");
    // Each distinct template was embedded once: one model call per batch with news.
    assert!(s.model_calls() <= 3, "model calls: {}", s.model_calls());
}

#[test]
fn a_new_message_counts_for_more_once_the_stream_has_settled() {
    // Two streams with the same lines, three new messages among them: in one they came
    // early and the latest 30 lines brought no new template (settled), in the other they
    // are among the latest 30 (a stream meeting new messages). The same new WARNING line
    // then scores `settled_weight` higher in the settled stream, and its summary says why,
    // for its first `settled_first_lines` lines; past them (a flood) it scores as in the
    // other stream.
    const EXTRAS: [&str; 3] = [
        "disk scrubbing started on pool tank",
        "backup job uploaded archive to bucket",
        "certificate renewal check completed",
    ];
    let config = ScorerConfig {
        warmup_lines: 60,
        settled_lines: 30,
        settled_share: 0.05,
        ..ScorerConfig::default()
    };
    let embedder = || {
        Embedder::start(EmbedderConfig::from_env())
            .unwrap_or_else(|e| panic!("embedder did not start: {e}"))
    };
    let routine = |s: &mut Scorer<Embedder>, t: &mut i64, rounds: i64| {
        for round in 0..rounds {
            for m in ROUTINE {
                *t += MINUTE;
                let message = m.replace("10.0.0.", &format!("10.0.{round}."));
                s.score(&line(*t, Severity::Info, &message))
                    .expect("scoring works");
            }
        }
    };
    let extras = |s: &mut Scorer<Embedder>, t: &mut i64| {
        for m in EXTRAS {
            *t += MINUTE;
            s.score(&line(*t, Severity::Info, m))
                .expect("scoring works");
        }
    };
    let novel = "Fan module 3 speed sensor reading dropped below threshold";

    let mut settled = Scorer::new(config.clone(), embedder());
    let mut t = 0;
    routine(&mut settled, &mut t, 12);
    extras(&mut settled, &mut t);
    routine(&mut settled, &mut t, 6);
    let settled_t = t;

    let mut busy = Scorer::new(config.clone(), embedder());
    let mut t = 0;
    routine(&mut busy, &mut t, 17);
    extras(&mut busy, &mut t);
    routine(&mut busy, &mut t, 1);
    assert_eq!(t, settled_t, "the same lines, in another order");

    // The new WARNING line, then more of it: the first `settled_first_lines` carry the
    // settled stream's extra newness, the rest are judged as in the busy stream (a flood).
    for k in 0..=config.settled_first_lines {
        let at = t + (k as i64 + 1) * MINUTE;
        let in_settled = settled
            .score(&line(at, Severity::Warning, novel))
            .expect("scoring works");
        let in_busy = busy
            .score(&line(at, Severity::Warning, novel))
            .expect("scoring works");
        assert_eq!(
            in_settled.novelty, in_busy.novelty,
            "the same templates are known"
        );
        assert!(!in_busy.summary.contains("settled"), "{}", in_busy.summary);
        let extra = in_settled.prior - in_busy.prior;
        if k < config.settled_first_lines {
            assert!(
                (extra - config.settled_weight).abs() < 1e-4,
                "line {k}: settled {in_settled:?} / busy {in_busy:?}"
            );
            let says = if k == 0 {
                "new after the stream had settled"
            } else {
                "first seen after the stream had settled"
            };
            assert!(in_settled.summary.contains(says), "{}", in_settled.summary);
        } else {
            assert!(extra.abs() < 1e-6, "line {k}: {in_settled:?} / {in_busy:?}");
            assert!(
                !in_settled.summary.contains("settled"),
                "{}",
                in_settled.summary
            );
        }
    }
}

#[test]
fn during_warm_up_only_level_and_meaning_count() {
    let mut s = scorer(1000);
    warm_up(&mut s, 2);
    let critical = s
        .score(&line(
            0,
            Severity::Critical,
            "segfault in worker thread, core dumped",
        ))
        .expect("scoring works");
    assert!(critical.warming_up);
    assert!(critical.is_anomaly, "{critical:?}");
    assert!(critical.summary.contains("warm-up"), "{}", critical.summary);
    let novel_info = s
        .score(&line(0, Severity::Info, "spooler rotated 12 queue files"))
        .expect("scoring works");
    assert!(!novel_info.is_anomaly, "{novel_info:?}");
    assert_eq!(novel_info.novelty, 0.0, "no novelty counts in the warm-up");
}

#[test]
fn every_line_of_an_anomalous_burst_is_flagged_and_a_second_burst_too() {
    let mut s = scorer(30);
    let mut t = warm_up(&mut s, 40);
    let burst = |s: &mut Scorer<Embedder>, t: &mut i64, n: usize| -> Vec<Score> {
        (0..n)
            .map(|i| {
                *t += 2_000;
                s.score(&line(
                    *t,
                    Severity::Critical,
                    &format!("kernel panic: fatal machine check on cpu {i} bank 4"),
                ))
                .expect("scoring works")
            })
            .collect()
    };
    let first = burst(&mut s, &mut t, 60);
    assert!(first.iter().all(|sc| sc.is_anomaly), "{:?}", first.last());
    let last = first.last().expect("60 lines");
    assert_eq!(last.state, TemplateState::Unknown);
    assert_eq!(last.decided_by, DecidedBy::Prior);
    assert!(
        last.summary.contains("one burst so far"),
        "{}",
        last.summary
    );
    // The same burst 15 minutes later: still anomalous, every line.
    t += 15 * MINUTE;
    let second = burst(&mut s, &mut t, 11);
    assert!(second.iter().all(|sc| sc.is_anomaly), "{:?}", second.last());
}

#[test]
fn a_template_seen_steadily_is_learned_normal() {
    let mut s = scorer(10);
    let mut t = 0;
    let mut last = None;
    let mut newly_learned = Vec::new();
    // A CRITICAL routine message every 12 minutes for two hours (too few arrivals for
    // the dense-log path: the time windows decide).
    for i in 0..10 {
        t += 12 * MINUTE;
        let score = s
            .score(&line(
                t,
                Severity::Critical,
                &format!("program load failure for job {i}: user binary not found"),
            ))
            .expect("scoring works");
        if score.newly_learned_normal {
            newly_learned.push(i);
        }
        if i == 3 {
            // Four windows in 36 minutes: enough windows, not for long enough yet.
            assert!(score.is_anomaly, "{score:?}");
            assert!(
                score.summary.contains(
                    "not learned as normal: seen in 4 time windows, but over 36 minutes \
                     (steady presence takes 1 hour)"
                ),
                "{}",
                score.summary
            );
        }
        last = Some(score);
    }
    // One line marks the change (the one whose earlier lines get re-scored): the first
    // an hour after the first (the sixth, at 72 minutes; the first came at 12).
    assert_eq!(newly_learned, vec![5], "lines marked newly learned normal");
    let last = last.expect("scored");
    assert_eq!(last.state, TemplateState::LearnedNormal, "{last:?}");
    assert!(!last.is_anomaly, "{last:?}");
    assert!(
        last.summary
            .contains("learned as normal: seen steadily, in 10 separate time windows"),
        "{}",
        last.summary
    );
}

#[test]
fn a_template_first_seen_late_needs_longer_presence_unless_it_keeps_coming() {
    let mut s = flat_scorer(10);
    // Ten hours of one routine message every 10 minutes: the stream started at 0.
    for i in 0..=60 {
        s.score(&line(
            i * 10 * MINUTE,
            Severity::Info,
            "heartbeat from scheduler ok",
        ))
        .expect("scoring works");
    }
    // Then two CRITICAL messages no one saw in those ten hours: one every 25 minutes
    // (a sighting in fewer than half of its time windows), one every 5 minutes (every
    // window: a message that came and kept coming).
    let start = 10 * 60 * MINUTE;
    let mut sparse = Vec::new();
    let mut steady = Vec::new();
    for minute in (5..=300).step_by(5) {
        let t = start + minute * MINUTE;
        if minute % 25 == 5 {
            sparse.push((
                minute,
                s.score(&line(
                    t,
                    Severity::Critical,
                    "fan tray 3 failed on rack r12",
                ))
                .expect("scoring works"),
            ));
        }
        steady.push((
            minute,
            s.score(&line(
                t,
                Severity::Critical,
                "lease renewal deferred for volume vol7",
            ))
            .expect("scoring works"),
        ));
    }
    // The steady one learns as a message of the first ten hours would: within the hour.
    let learned_at = |scores: &[(i64, Score)]| {
        scores
            .iter()
            .find(|(_, sc)| sc.state == TemplateState::LearnedNormal)
            .map(|(m, _)| *m - scores[0].0)
    };
    let steady_after = learned_at(&steady).expect("the steady message is learned");
    assert!(steady_after <= 60, "learned after {steady_after} minutes");
    // The sparse one needs half the ten hours watched without it, at most four hours.
    let (_, at_two_hours) = &sparse[5];
    assert!(at_two_hours.is_anomaly, "{at_two_hours:?}");
    assert!(
        at_two_hours.summary.contains(
            "not learned as normal: seen in 6 time windows, but over 2 hours (steady presence \
             takes 4 hours for a pattern first seen 10 hours into the stream)"
        ),
        "{}",
        at_two_hours.summary
    );
    assert_eq!(
        learned_at(&sparse),
        Some(250),
        "learned after four hours and more"
    );
}

#[test]
fn a_critical_burst_of_a_pattern_learned_at_info_is_flagged_until_critical_is_steady_too() {
    let mut s = flat_scorer(10);
    // The same message at INFO every 12 minutes for four hours: learned as normal.
    let mut t = 0;
    for i in 0..20 {
        t += 12 * MINUTE;
        let info = s
            .score(&line(
                t,
                Severity::Info,
                &format!("authentication failure for user {i}"),
            ))
            .expect("scoring works");
        assert!(!info.is_anomaly, "{info:?}");
    }
    assert_eq!(
        s.score(&line(
            t + MINUTE,
            Severity::Info,
            "authentication failure for user 7"
        ))
        .expect("scoring works")
        .state,
        TemplateState::LearnedNormal
    );
    // Then a burst of it at CRITICAL (small enough for the template to stay steady
    // overall): what was learned was INFO chatter; every line of the burst is flagged, and
    // the summary says why.
    for k in 0..8 {
        let critical = s
            .score(&line(
                t + 2 * MINUTE + k * 2_000,
                Severity::Critical,
                &format!("authentication failure for user {k}"),
            ))
            .expect("scoring works");
        assert!(critical.is_anomaly, "line {k} of the burst: {critical:?}");
        assert_eq!(critical.decided_by, DecidedBy::Prior);
        assert!(
            critical.summary.contains(
                "but its CRITICAL lines arrived 1 separate time: not learned as normal at this level"
            ),
            "{}",
            critical.summary
        );
    }
    // Its INFO lines are still learned normal.
    let info = s
        .score(&line(
            t + 3 * MINUTE,
            Severity::Info,
            "authentication failure for user 3",
        ))
        .expect("scoring works");
    assert_eq!(info.state, TemplateState::LearnedNormal, "{info:?}");
    // CRITICAL lines arriving steadily (three separate times, an hour apart) are learned
    // too: the third is covered, and marked as newly learned so its earlier lines are
    // re-scored by the relearning rule.
    let (mut learned, mut newly) = (None, false);
    for k in 1..=2 {
        let critical = s
            .score(&line(
                t + k * 60 * MINUTE,
                Severity::Critical,
                "authentication failure for user 9",
            ))
            .expect("scoring works");
        newly |= critical.newly_learned_normal;
        learned = Some(critical);
    }
    let learned = learned.expect("scored");
    assert_eq!(learned.state, TemplateState::LearnedNormal, "{learned:?}");
    assert!(!learned.is_anomaly, "{learned:?}");
    assert!(
        newly,
        "the line that proved the level is marked newly learned"
    );
}

#[test]
fn a_normal_label_given_on_info_lines_does_not_cover_a_later_critical_burst() {
    let mut s = Scorer::new(
        ScorerConfig {
            warmup_lines: 0,
            ..ScorerConfig::default()
        },
        Flat,
    );
    let first = s
        .score(&line(
            0,
            Severity::Info,
            "authentication failure for user 1",
        ))
        .expect("scoring works");
    // The operator saw it at INFO and answered "normal".
    s.set_label_up_to(&first.template_id, Label::Normal, Severity::Info);
    let info = s
        .score(&line(
            MINUTE,
            Severity::Info,
            "authentication failure for user 2",
        ))
        .expect("scoring works");
    assert_eq!(info.decided_by, DecidedBy::Label, "{info:?}");
    assert!(!info.is_anomaly, "{info:?}");
    // A CRITICAL burst of it: the answer did not cover that level.
    for k in 0..5 {
        let critical = s
            .score(&line(
                2 * MINUTE + k * 2_000,
                Severity::Critical,
                &format!("authentication failure for user {k}"),
            ))
            .expect("scoring works");
        assert_eq!(critical.template_id, first.template_id);
        assert!(critical.is_anomaly, "line {k}: {critical:?}");
        assert_eq!(critical.decided_by, DecidedBy::Prior, "{critical:?}");
        assert!(
            critical.summary.contains(
                "an operator marked this pattern normal when it had come at INFO at most"
            ),
            "{}",
            critical.summary
        );
    }
    // Nor does it vote on a close template's CRITICAL line (every template is close under
    // this embedder).
    let close = s
        .score(&line(
            3 * MINUTE,
            Severity::Critical,
            "session limit reached for gateway",
        ))
        .expect("scoring works");
    assert_ne!(close.template_id, first.template_id);
    assert!(close.is_anomaly, "{close:?}");
    assert_eq!(close.decided_by, DecidedBy::Prior, "{close:?}");
    // The same answer given for every level covers both.
    s.set_label(&first.template_id, Label::Normal);
    let covered = s
        .score(&line(
            4 * MINUTE,
            Severity::Critical,
            "authentication failure for user 9",
        ))
        .expect("scoring works");
    assert_eq!(covered.decided_by, DecidedBy::Label, "{covered:?}");
    assert!(!covered.is_anomaly, "{covered:?}");
    let voted = s
        .score(&line(
            5 * MINUTE,
            Severity::Critical,
            "session limit reached for gateway",
        ))
        .expect("scoring works");
    assert_eq!(voted.decided_by, DecidedBy::NeighbourLabels, "{voted:?}");
    assert!(!voted.is_anomaly, "{voted:?}");
}

#[test]
fn in_a_dense_log_a_message_that_keeps_arriving_is_learned_before_the_hour() {
    let mut s = scorer(10);
    let mut t = 0;
    // A failure that comes in ten clumps of 6 lines 2 s apart, 90 s between clumps: ten
    // arrivals, but within a quarter of an hour. Every line flagged.
    for round in 0..10 {
        t += 90_000;
        for i in 0..6 {
            t += 2_000;
            let sc = s
                .score(&line(
                    t,
                    Severity::Critical,
                    &format!("kernel panic: fatal machine check on cpu {i} bank {round}"),
                ))
                .expect("scoring works");
            assert!(sc.is_anomaly, "round {round}, line {i}: {sc:?}");
            assert_eq!(sc.state, TemplateState::Unknown, "{sc:?}");
        }
    }
    // A routine CRITICAL message every 3 minutes: in its 10th arrival, 27 minutes after
    // the first (at least 20 minutes; the time windows would need an hour), it is learned
    // as normal.
    let start = t;
    let mut learned = Vec::new();
    let mut scores = Vec::new();
    for i in 0..22 {
        t = start + (i + 1) * 3 * MINUTE;
        let sc = s
            .score(&line(
                t,
                Severity::Critical,
                &format!("program load failure for job {i}: user binary not found"),
            ))
            .expect("scoring works");
        assert_eq!(sc.is_anomaly, i < 9, "arrival {}: {sc:?}", i + 1);
        if sc.newly_learned_normal {
            learned.push(i + 1);
        }
        scores.push(sc);
    }
    // Marked on the 10th arrival, and again on the 21st, an hour after the first, when
    // the time windows confirm it (its earlier lines are re-scored once more).
    assert_eq!(
        learned,
        vec![10, 21],
        "arrivals marked newly learned normal"
    );
    let tenth = &scores[9];
    assert_eq!(tenth.state, TemplateState::LearnedNormal, "{tenth:?}");
    assert!(
        tenth.summary.contains(
            "learned as normal: seen steadily, arrived 10 separate times over 27 minutes"
        ),
        "{}",
        tenth.summary
    );
    let last = scores.last().expect("scored");
    assert!(
        last.summary.contains("separate time windows"),
        "{}",
        last.summary
    );
}

#[test]
fn a_neighbours_anomaly_label_does_not_overrule_a_template_learned_as_normal() {
    let mut s = scorer(30);
    let t = warm_up(&mut s, 12);
    // "Connection to <IP> closed" came every round for 72 minutes: learned as normal.
    let steady = s
        .score(&line(
            t + MINUTE,
            Severity::Info,
            "Connection to 10.0.12.7 closed",
        ))
        .expect("scoring works");
    assert_eq!(steady.state, TemplateState::LearnedNormal, "{steady:?}");
    // A close template is marked anomalous ...
    let close = s
        .score(&line(
            t + 2 * MINUTE,
            Severity::Info,
            "Connection to 10.0.12.7 closed by remote host",
        ))
        .expect("scoring works");
    assert_ne!(close.template_id, steady.template_id);
    s.set_label(&close.template_id, Label::Anomaly);
    // ... and the steady one stays normal, saying why.
    let after = s
        .score(&line(
            t + 3 * MINUTE,
            Severity::Info,
            "Connection to 10.0.12.8 closed",
        ))
        .expect("scoring works");
    assert_eq!(after.template_id, steady.template_id);
    assert!(!after.is_anomaly, "{after:?}");
    assert_eq!(after.decided_by, DecidedBy::LearnedNormal, "{after:?}");
    assert!(
        after
            .summary
            .contains("which an operator marked anomalous, similarity")
            && after
                .summary
                .contains("but its own steady presence decides"),
        "{}",
        after.summary
    );
    // A template not learned yet follows the vote (see the test below).
}

#[test]
fn a_label_decides_later_lines_and_carries_to_close_templates_only() {
    let mut s = scorer(30);
    let t = warm_up(&mut s, 6);
    let failure = "Error loading /usr/lib/x.so: permission denied";
    let first = s
        .score(&line(t + MINUTE, Severity::Error, failure))
        .expect("scoring works");
    s.set_label(&first.template_id, Label::Anomaly);
    let again = s
        .score(&line(t + 2 * MINUTE, Severity::Info, failure))
        .expect("scoring works");
    assert!(again.is_anomaly, "{again:?}");
    assert_eq!(again.state, TemplateState::LabelledAnomaly);
    assert!(
        again.summary.contains("marked this pattern anomalous"),
        "{}",
        again.summary
    );

    // A close template (other words, same meaning) follows the label ...
    let close = s
        .score(&line(
            t + 3 * MINUTE,
            Severity::Info,
            "Error while loading library /usr/lib/x.so: permission denied",
        ))
        .expect("scoring works");
    assert_ne!(close.template_id, first.template_id);
    assert!(close.is_anomaly, "{close:?}");
    assert_eq!(close.decided_by, DecidedBy::NeighbourLabels);
    assert!(
        close
            .summary
            .contains("which an operator marked anomalous, similarity"),
        "{}",
        close.summary
    );
    // ... a far one does not.
    let far = s
        .score(&line(
            t + 4 * MINUTE,
            Severity::Info,
            "nightly backup rotated 4 archives",
        ))
        .expect("scoring works");
    assert_ne!(far.decided_by, DecidedBy::NeighbourLabels, "{far:?}");
    assert!(!far.is_anomaly, "{far:?}");

    // Normal works the same way.
    s.set_label(&first.template_id, Label::Normal);
    let quiet = s
        .score(&line(t + 5 * MINUTE, Severity::Error, failure))
        .expect("scoring works");
    assert!(!quiet.is_anomaly, "{quiet:?}");
    assert!(
        quiet.summary.contains("marked this pattern normal"),
        "{}",
        quiet.summary
    );
}

/// A template mined with its line header before the miner read messages alone, labelled
/// by an operator, is loaded without an embedding (the upgrade cleared it). The message's
/// lines now mine into a template of their own; the label still reaches them, through the
/// old template's text embedded again, its header left out.
#[test]
fn a_label_on_a_template_loaded_without_its_embedding_still_carries() {
    let mut s = scorer(30);
    let t = warm_up(&mut s, 6);
    let mut state = s.export();
    for (key, label, text) in [
        (
            "old-anomaly",
            Label::Anomaly,
            "<TS> web-7 app[<NUM>]: nightly backup rotated <NUM> archives",
        ),
        (
            "old-normal",
            Label::Normal,
            "<TS> ERROR [main] <ID>: Error loading <PATH>: permission denied",
        ),
    ] {
        let id = TemplateId(key.to_string());
        state.miner.templates.push(crate::drain::TemplateRecord {
            id: id.clone(),
            template: text.to_string(),
            first_seen: text.to_string(),
            count: 40,
        });
        let counts = TemplateCounts {
            count: 40,
            first_seen_ms: 0,
            tally: PresenceTally {
                count: 40,
                last_seen_ms: t,
                ..PresenceTally::default()
            },
            ..TemplateCounts::default()
        };
        state.restore_template(&id, counts, &ScorerConfig::default());
        state.labels.insert(id, label);
    }
    let embedder = Embedder::start(EmbedderConfig::from_env()).expect("embedder starts");
    let config = ScorerConfig {
        warmup_lines: 30,
        ..ScorerConfig::default()
    };
    let mut s = Scorer::from_state(config, embedder, state).expect("state imports");

    let backup = s
        .score(&line(
            t + MINUTE,
            Severity::Info,
            "nightly backup rotated 4 archives",
        ))
        .expect("scoring works");
    assert_ne!(backup.template_id, TemplateId("old-anomaly".into()));
    assert!(backup.is_anomaly, "{backup:?}");
    assert_eq!(backup.decided_by, DecidedBy::NeighbourLabels);
    assert!(
        backup
            .summary
            .contains("'<TS> web-7 app[<NUM>]: nightly backup rotated <NUM> archives' which an operator marked anomalous, similarity"),
        "{}",
        backup.summary
    );

    let loading = s
        .score(&line(
            t + 2 * MINUTE,
            Severity::Error,
            "Error loading /usr/lib/x.so: permission denied",
        ))
        .expect("scoring works");
    assert!(!loading.is_anomaly, "{loading:?}");
    assert_eq!(loading.decided_by, DecidedBy::NeighbourLabels);
    assert!(
        loading.summary.contains("which an operator marked normal"),
        "{}",
        loading.summary
    );
}

#[test]
fn state_round_trips_and_reuses_cached_embeddings() {
    let mut s = scorer(0);
    warm_up(&mut s, 2);
    let state = s.export();
    let json = serde_json::to_string(&state).expect("state serialises");
    let state: ScorerState = serde_json::from_str(&json).expect("state deserialises");
    let embedder = Embedder::start(EmbedderConfig::from_env()).expect("embedder starts");
    let mut restored =
        Scorer::from_state(ScorerConfig::default(), embedder, state).expect("state imports");
    let r = restored
        .score(&line(
            10 * MINUTE,
            Severity::Info,
            "session closed for user deploy",
        ))
        .expect("scoring works");
    assert_eq!(restored.model_calls(), 0);
    assert!(
        r.summary.starts_with("Known message pattern"),
        "{}",
        r.summary
    );
}

#[test]
fn severity_parsing_and_durations() {
    assert_eq!(Severity::parse("warn"), Severity::Warning);
    assert_eq!(Severity::parse("FATAL"), Severity::Critical);
    // Blue Gene/L-style levels: SEVERE between WARNING and FATAL, FAILURE at the top.
    assert_eq!(Severity::parse("SEVERE"), Severity::Error);
    assert_eq!(Severity::parse("failure"), Severity::Critical);
    // java.util.logging's FINE levels are debug detail.
    assert_eq!(Severity::parse("FINEST"), Severity::Debug);
    assert_eq!(Severity::parse("whatever"), Severity::Info);
    assert_eq!(human_duration(3 * 86_400_000 + 5), "3 days");
    assert_eq!(human_duration(61_000), "1 minute");
}

/// Every text at one point: no model needed, and no meaning axis (the prototypes collapse).
struct Flat;

impl TextEmbedder for Flat {
    fn embed_texts(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts.iter().map(|_| vec![1.0, 0.0]).collect())
    }
}

#[test]
fn counts_restored_from_elsewhere_decide_later_lines() {
    const T0: i64 = 1_767_225_600_000; // on a presence window boundary
    let config = ScorerConfig::default();
    let mut s = Scorer::new(config.clone(), Flat);
    let first = s
        .score(&line(T0, Severity::Info, "job 1 finished"))
        .expect("scoring works");
    assert!(first.warming_up);
    let mut state = s.export();
    let presence = state.restore_template(
        &first.template_id,
        TemplateCounts {
            count: 40,
            first_seen_ms: T0 - 3 * 60 * MINUTE,
            tally: PresenceTally {
                count: 40,
                last_seen_ms: T0 + MINUTE,
                windows: 5,
                max_window_lines: 2,
                episodes: 12,
                ..PresenceTally::default()
            },
            ..TemplateCounts::default()
        },
        &config,
    );
    assert_eq!(
        presence,
        Presence {
            windows: 5,
            max_window_lines: 2,
            episodes: 12,
            level_episodes: 0,
        }
    );
    state.merge_warmup(1_000, Some(T0 - 3 * 60 * MINUTE));
    let mut s = Scorer::from_state(config, Flat, state).expect("state imports");
    let next = s
        .score(&line(T0 + 2 * MINUTE, Severity::Info, "job 2 finished"))
        .expect("scoring works");
    assert_eq!(next.template_id, first.template_id);
    assert!(
        !next.warming_up,
        "lines seen elsewhere count towards the warm-up"
    );
    assert!(
        next.summary.contains("seen 40 times in 3 hours"),
        "{}",
        next.summary
    );
    assert_eq!(next.state, TemplateState::LearnedNormal, "{next:?}");
    assert_eq!(
        s.presence(&first.template_id),
        Some(Presence {
            windows: 5,
            max_window_lines: 2,
            episodes: 12,
            level_episodes: 0,
        }),
        "a line in the last known window is not a new window, nor a minute after the last line a new arrival"
    );
}

/// Orthogonal-ish vectors from a hash of the text: no model needed.
#[derive(Clone)]
struct Hashed;

impl TextEmbedder for Hashed {
    fn embed_texts(
        &self,
        texts: Vec<String>,
    ) -> Result<Vec<Vec<f32>>, crate::embedder::EmbedError> {
        Ok(texts
            .iter()
            .map(|t| {
                let h = t
                    .bytes()
                    .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
                let mut v = vec![0f32; 32];
                v[(h % 32) as usize] = 1.0;
                v
            })
            .collect())
    }
}

#[test]
fn a_flood_of_distinct_templates_stays_at_the_cap_and_keeps_labelled_and_recent_ones() {
    let config = ScorerConfig {
        warmup_lines: 0,
        meaning_severity_max: 0.0,
        max_templates: 10,
        ..ScorerConfig::default()
    };
    let mut s = Scorer::new(config, Hashed);
    let labelled = s
        .score(&line(
            0,
            Severity::Info,
            "operator reviewed this exact message",
        ))
        .expect("scores")
        .template_id;
    s.set_label(&labelled, Label::Normal);
    let mut evicted = Vec::new();
    for i in 0..200i64 {
        // Distinct words, no digits: every line is a template of its own.
        let word: String = format!("{i:x}")
            .chars()
            .map(|c| char::from(b'g' + c.to_digit(16).unwrap_or(0) as u8))
            .collect();
        s.score(&line(
            i + 1,
            Severity::Info,
            &format!("flood {word} {word}{word}"),
        ))
        .expect("scores");
        assert!(
            s.templates() <= 10,
            "{} templates after line {i}",
            s.templates()
        );
        evicted.extend(s.take_evicted());
    }
    assert!(evicted.len() >= 190, "{} evicted", evicted.len());
    assert!(
        !evicted.contains(&labelled),
        "the labelled template is kept"
    );
    let again = s
        .score(&line(
            300,
            Severity::Info,
            "operator reviewed this exact message",
        ))
        .expect("scores");
    assert_eq!(again.template_id, labelled);
    assert_eq!(again.decided_by, DecidedBy::Label, "{again:?}");
    assert_eq!(s.export().miner.templates.len(), s.templates());
}

#[test]
fn the_model_reads_a_template_from_its_first_word() {
    assert_eq!(
        embedding_text("<NUM> failures on node <HOST>"),
        "failures on node <HOST>"
    );
    // A raw line header of values (Blue Gene/L's), punctuation included, up to its level
    // word (`line_header`).
    assert_eq!(
        embedding_text("- <NUM> <ID> <TS> <ID> RAS KERNEL INFO cache parity error <*>"),
        "cache parity error <VAR>"
    );
    assert_eq!(
        embedding_text("<TS> INFO [main] <ID>: <NUM> failures on node <HOST>"),
        "failures on node <HOST>"
    );
    assert_eq!(
        embedding_text("<TS> LabSZ sshd[<NUM>]: Failed password for <*>"),
        "Failed password for <VAR>"
    );
    // A header and nothing after it: read from its first word.
    assert_eq!(embedding_text("<TS> INFO [main]"), "INFO [main]");
    // Placeholders with punctuation are values too.
    assert_eq!(embedding_text("<HOST>: <ID>, open"), "open");
    // Words are kept wherever the values are; a template of values only stays whole.
    assert_eq!(embedding_text("took <NUM> for <*>"), "took <NUM> for <VAR>");
    assert_eq!(embedding_text("<NUM> <*>"), "<NUM> <VAR>");
    assert_eq!(embedding_text("<ID>=<HEX>"), "<ID>=<HEX>");
}

/// Messages sent with a raw line header of values (Blue Gene/L's: an epoch, a node, a
/// timestamp) are new or not by what they say: the header does not make every message
/// look like every other.
#[test]
fn a_header_of_values_does_not_make_a_new_message_look_known() {
    let mut s = scorer(30);
    let header = |t: i64| {
        format!(
            "- {} R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 ",
            t / 1000
        )
    };
    let t = warm_up_with_header(&mut s, 12, header) + MINUTE;
    let novel = s
        .score(&line(
            t,
            Severity::Warning,
            &format!(
                "{}ciod: failed to read message prefix on control stream",
                header(t)
            ),
        ))
        .expect("scoring works");
    // Its nearest known message shares only the header: not close (0.49 when the header's
    // values were read as part of the message, 0.18 without them).
    let (nearest, similarity) = novel.closest.clone().expect("known templates");
    assert!(
        similarity < 0.35,
        "{nearest:?} at {similarity}: {}",
        novel.summary
    );
    assert!(
        novel
            .summary
            .starts_with("New message pattern, unlike anything seen"),
        "{novel:?}"
    );
}

/// Messages shipped as whole lines, a syslog or a logging-library header in front, are new
/// or not by what they say: the header's program, level and logger words are in every
/// template of the source, and the model reads the message after them (`line_header`).
#[test]
fn a_line_header_does_not_make_a_new_message_look_known() {
    type Header = fn(i64) -> String;
    let headers: [(&str, Header); 2] = [
        ("syslog", |t| {
            format!("{} web-7 app[{}]: ", stamp(t), 4000 + t % 97)
        }),
        ("log4j", |t| {
            format!("{} INFO [main] org.example.Worker: ", stamp(t))
        }),
    ];
    for (name, header) in headers {
        let mut s = scorer(30);
        let t = warm_up_with_header(&mut s, 12, header) + MINUTE;
        let novel = s
            .score(&line(
                t,
                Severity::Warning,
                &format!(
                    "{}failed to read message prefix on control stream",
                    header(t)
                ),
            ))
            .expect("scoring works");
        let (nearest, similarity) = novel.closest.clone().expect("known templates");
        assert!(
            similarity < 0.35,
            "{name}: {nearest:?} at {similarity}: {}",
            novel.summary
        );
        assert!(
            novel
                .summary
                .starts_with("New message pattern, unlike anything seen"),
            "{name}: {novel:?}"
        );
    }
}

/// `t` (milliseconds into the test's day) as a log line's time, log4j style.
fn stamp(t: i64) -> String {
    let (s, ms) = (t / 1000, t % 1000);
    format!(
        "2024-03-01 {:02}:{:02}:{:02},{ms:03}",
        s / 3600 % 24,
        s / 60 % 60,
        s % 60
    )
}

#[test]
fn a_scorer_rebuilt_from_its_state_still_knows_the_stream_had_settled() {
    // A replica rebuilds its scorer from its exported state when it merges templates
    // other replicas stored; the count of which latest lines started a template goes
    // with the state, so a new message right after the rebuild is judged as it would
    // have been without it (before, the count started afresh and no stream was ever
    // settled on a replica that merged before every batch).
    let config = ScorerConfig {
        warmup_lines: 5,
        settled_lines: 10,
        ..ScorerConfig::default()
    };
    let mut kept = Scorer::new(config.clone(), Flat);
    for k in 0..30 {
        kept.score(&line(k * MINUTE, Severity::Info, "heartbeat ok"))
            .expect("scoring works");
    }
    let mut rebuilt =
        Scorer::from_state(config.clone(), Flat, kept.export()).expect("the state loads");
    let new = line(
        31 * MINUTE,
        Severity::Warning,
        "fan speed dropped below threshold",
    );
    let on_kept = kept.score(&new).expect("scoring works");
    let on_rebuilt = rebuilt.score(&new).expect("scoring works");
    assert!(
        on_kept.summary.contains("new after the stream had settled"),
        "{}",
        on_kept.summary
    );
    assert_eq!(on_rebuilt.prior, on_kept.prior, "{on_rebuilt:?}");
    assert_eq!(on_rebuilt.summary, on_kept.summary);
}
