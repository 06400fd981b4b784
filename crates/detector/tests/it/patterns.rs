//! The pattern detectors on generated timelines with known answers.

use logcanary_detector::patterns::{
    analyse, BucketCount, Event, PatternConfig, PatternKind, PatternSeverity, StreamSignal,
    StreamWindows,
};
use logcanary_detector::scorer::Severity;

const MIN: i64 = 60 * 1000;
const HOUR: i64 = 60 * MIN;
/// A bucket-aligned start (2026-01-01T00:00:00Z).
const T0: i64 = 1_767_225_600_000;

struct Timeline {
    events: Vec<Event>,
    next_id: i64,
}

impl Timeline {
    fn new() -> Self {
        Self {
            events: Vec::new(),
            next_id: 1,
        }
    }

    fn add(&mut self, t: i64, source: &str, severity: Severity, anomaly: bool) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.events.push(Event {
            id,
            timestamp_ms: t,
            source: source.into(),
            severity,
            is_anomaly: anomaly,
        });
        id
    }

    /// `per_bucket` INFO lines in every 10-minute bucket of `[from, to)`, evenly spread.
    fn steady(&mut self, source: &str, from: i64, to: i64, per_bucket: i64) {
        let step = 10 * MIN / per_bucket;
        let mut t = from;
        while t < to {
            self.add(t, source, Severity::Info, false);
            t += step;
        }
    }
}

/// Baseline counts: `per_bucket` entries of `severity` per 10-minute bucket in `[from, to)`.
fn baseline(
    source: &str,
    from: i64,
    to: i64,
    severity: Severity,
    per_bucket: u64,
) -> Vec<BucketCount> {
    (0..)
        .map(|i| from + i * 10 * MIN)
        .take_while(|&b| b < to)
        .map(|b| BucketCount {
            source: source.into(),
            bucket_start_ms: b,
            severity,
            count: per_bucket,
        })
        .collect()
}

fn of_kind(
    a: &logcanary_detector::patterns::Analysis,
    kind: PatternKind,
) -> Vec<&logcanary_detector::patterns::Detection> {
    a.detections.iter().filter(|d| d.kind == kind).collect()
}

#[test]
fn an_empty_window_finds_nothing() {
    let cfg = PatternConfig::default();
    let a = analyse(&cfg, T0, T0 + 24 * HOUR, &[], &[]);
    assert!(a.detections.is_empty());
    assert_eq!((a.entries, a.anomalies, a.sources), (0, 0, 0));
}

#[test]
fn three_anomalies_within_ten_minutes_are_one_cluster() {
    let cfg = PatternConfig::default();
    let mut tl = Timeline::new();
    tl.steady("api", T0, T0 + 2 * HOUR, 10);
    let ids = [
        tl.add(T0 + 30 * MIN, "api", Severity::Error, true),
        tl.add(T0 + 33 * MIN, "db", Severity::Error, true),
        tl.add(T0 + 38 * MIN, "api", Severity::Warning, true),
    ];
    // Two anomalies 20 minutes apart later: no cluster.
    tl.add(T0 + 70 * MIN, "api", Severity::Error, true);
    tl.add(T0 + 90 * MIN, "api", Severity::Error, true);
    let a = analyse(&cfg, T0, T0 + 2 * HOUR, &tl.events, &[]);
    let clusters = of_kind(&a, PatternKind::AnomalyCluster);
    assert_eq!(clusters.len(), 1, "{:#?}", a.detections);
    let c = clusters[0];
    assert_eq!(c.log_entry_ids, ids.to_vec());
    assert_eq!(c.window_start_ms, T0 + 30 * MIN);
    assert_eq!(c.window_end_ms, T0 + 38 * MIN + 1);
    assert_eq!(c.source, "");
    assert_eq!(c.details["anomalies"], 3);
    assert_eq!(c.details["sources"]["db"], 1);
    assert_eq!(c.severity, PatternSeverity::Warning);
}

#[test]
fn anomalies_just_over_ten_minutes_apart_are_not_a_cluster() {
    let cfg = PatternConfig::default();
    let mut tl = Timeline::new();
    tl.add(T0, "a", Severity::Error, true);
    tl.add(T0 + 5 * MIN, "a", Severity::Error, true);
    tl.add(T0 + 10 * MIN, "a", Severity::Error, true); // exactly 10 min after the first
    let a = analyse(&cfg, T0, T0 + HOUR, &tl.events, &[]);
    assert!(of_kind(&a, PatternKind::AnomalyCluster).is_empty());
}

#[test]
fn a_long_burst_is_one_cluster_and_reruns_give_the_same_bounds() {
    let cfg = PatternConfig::default();
    let mut tl = Timeline::new();
    for i in 0..30 {
        tl.add(T0 + 3 * HOUR + i * MIN, "api", Severity::Critical, true);
    }
    let first = analyse(&cfg, T0, T0 + 24 * HOUR, &tl.events, &[]);
    let later = analyse(&cfg, T0 + 2 * HOUR, T0 + 30 * HOUR, &tl.events, &[]);
    let (c1, c2) = (
        of_kind(&first, PatternKind::AnomalyCluster),
        of_kind(&later, PatternKind::AnomalyCluster),
    );
    assert_eq!(c1.len(), 1);
    assert_eq!(c1[0].log_entry_ids.len(), 30);
    assert_eq!(c1[0].severity, PatternSeverity::Critical);
    assert_eq!(
        (c1[0].window_start_ms, c1[0].window_end_ms),
        (c2[0].window_start_ms, c2[0].window_end_ms)
    );
}

#[test]
fn an_error_spike_stands_out_from_the_sources_own_baseline() {
    let cfg = PatternConfig::default();
    let mut tl = Timeline::new();
    // "noisy" logs ~8 errors per bucket all the time: 12 in one bucket is normal for it.
    // "quiet" logs 0-1: 12 is a spike.
    let mut base = Vec::new();
    for i in 0..(24 * 6) {
        let b = T0 - 24 * HOUR + i * 10 * MIN;
        base.push(BucketCount {
            source: "noisy".into(),
            bucket_start_ms: b,
            severity: Severity::Error,
            count: 7 + (i % 3) as u64,
        });
        base.push(BucketCount {
            source: "quiet".into(),
            bucket_start_ms: b,
            severity: Severity::Error,
            count: (i % 2) as u64,
        });
        base.push(BucketCount {
            source: "quiet".into(),
            bucket_start_ms: b,
            severity: Severity::Info,
            count: 20,
        });
        base.push(BucketCount {
            source: "noisy".into(),
            bucket_start_ms: b,
            severity: Severity::Info,
            count: 20,
        });
    }
    for i in 0..6 {
        let b = T0 + i * 10 * MIN;
        for j in 0..8 {
            tl.add(b + j * MIN, "noisy", Severity::Error, false);
        }
        tl.steady("noisy", b, b + 10 * MIN, 20);
        tl.steady("quiet", b, b + 10 * MIN, 20);
    }
    let spike_bucket = T0 + 3 * 10 * MIN;
    let mut spike_ids = Vec::new();
    for j in 0..12 {
        spike_ids.push(tl.add(spike_bucket + j * 30_000, "quiet", Severity::Error, false));
        tl.add(spike_bucket + j * 30_000, "noisy", Severity::Error, false);
    }
    let a = analyse(&cfg, T0, T0 + HOUR, &tl.events, &base);
    let spikes = of_kind(&a, PatternKind::ErrorSpike);
    assert_eq!(spikes.len(), 1, "{:#?}", spikes);
    let s = spikes[0];
    assert_eq!(s.source, "quiet");
    assert_eq!(
        (s.window_start_ms, s.window_end_ms),
        (spike_bucket, spike_bucket + 10 * MIN)
    );
    assert_eq!(s.log_entry_ids, spike_ids);
    assert_eq!(s.details["peak_bucket_errors"], 12);
    assert!(s.details["threshold"].as_f64().unwrap() < 12.0);
}

#[test]
fn a_spike_needs_a_minimum_count_and_history() {
    let cfg = PatternConfig::default();
    let mut tl = Timeline::new();
    // Zero errors for hours, then 4 (below spike_min_count 5).
    let base = baseline("svc", T0 - 6 * HOUR, T0, Severity::Info, 10);
    for j in 0..4 {
        tl.add(T0 + 20 * MIN + j, "svc", Severity::Error, false);
    }
    let a = analyse(&cfg, T0, T0 + HOUR, &tl.events, &base);
    assert!(of_kind(&a, PatternKind::ErrorSpike).is_empty());

    // A source seen for the first time in its only bucket: no history, no judgement.
    let mut tl = Timeline::new();
    for j in 0..50 {
        tl.add(T0 + j * 1000, "new", Severity::Error, false);
    }
    let a = analyse(&cfg, T0, T0 + 5 * MIN, &tl.events, &[]);
    assert!(of_kind(&a, PatternKind::ErrorSpike).is_empty());
}

#[test]
fn a_source_that_stops_logging_is_low_activity_and_silent() {
    let cfg = PatternConfig::default();
    let mut tl = Timeline::new();
    let base = baseline("web", T0 - 24 * HOUR, T0, Severity::Info, 30);
    // Normal for 2 hours, then nothing for the last 2 hours of the window.
    tl.steady("web", T0, T0 + 2 * HOUR, 30);
    let a = analyse(&cfg, T0, T0 + 4 * HOUR, &tl.events, &base);
    let low = of_kind(&a, PatternKind::LowActivity);
    assert_eq!(low.len(), 1, "{low:#?}");
    let d = low[0];
    assert_eq!(d.source, "web");
    assert_eq!(
        (d.window_start_ms, d.window_end_ms),
        (T0 + 2 * HOUR, T0 + 4 * HOUR)
    );
    assert_eq!(d.details["silent"], true);
    assert_eq!(d.details["until_window_end"], true);
    assert_eq!(d.severity, PatternSeverity::Critical);
    assert!(d.log_entry_ids.is_empty());
}

#[test]
fn a_dip_is_low_activity_but_a_quiet_source_is_not_judged() {
    let cfg = PatternConfig::default();
    let mut tl = Timeline::new();
    let mut base = baseline("web", T0 - 24 * HOUR, T0, Severity::Info, 30);
    base.extend(baseline("cron", T0 - 24 * HOUR, T0, Severity::Info, 1));
    tl.steady("web", T0, T0 + HOUR, 30);
    tl.steady("web", T0 + HOUR, T0 + HOUR + 20 * MIN, 3); // 3 per bucket: 10 %
    tl.steady("web", T0 + HOUR + 20 * MIN, T0 + 2 * HOUR, 30);
    // cron logs once per bucket and then stops: too quiet to call.
    let a = analyse(&cfg, T0, T0 + 2 * HOUR, &tl.events, &base);
    let low = of_kind(&a, PatternKind::LowActivity);
    assert_eq!(low.len(), 1, "{low:#?}");
    assert_eq!(low[0].source, "web");
    assert_eq!(
        (low[0].window_start_ms, low[0].window_end_ms),
        (T0 + HOUR, T0 + HOUR + 20 * MIN)
    );
    assert_eq!(low[0].details["silent"], false);
    assert_eq!(low[0].log_entry_ids.len(), 6);
    assert_eq!(low[0].severity, PatternSeverity::Warning);
}

#[test]
fn a_partly_covered_last_bucket_is_not_called_low() {
    let cfg = PatternConfig::default();
    let mut tl = Timeline::new();
    let base = baseline("web", T0 - 24 * HOUR, T0, Severity::Info, 30);
    tl.steady("web", T0, T0 + HOUR, 30);
    // The window ends 2 minutes into a bucket that has 6 entries so far: on pace.
    tl.steady("web", T0 + HOUR, T0 + HOUR + 2 * MIN, 30);
    let a = analyse(&cfg, T0, T0 + HOUR + 2 * MIN, &tl.events, &base);
    assert!(
        of_kind(&a, PatternKind::LowActivity).is_empty(),
        "{:#?}",
        a.detections
    );
}

#[test]
fn a_severity_mix_shift_is_found_with_enough_samples() {
    let cfg = PatternConfig::default();
    let mut base = baseline("app", T0 - 24 * HOUR, T0, Severity::Info, 18);
    base.extend(baseline("app", T0 - 24 * HOUR, T0, Severity::Warning, 2));
    let mut tl = Timeline::new();
    let mut warn_ids = Vec::new();
    for i in 0..120 {
        let t = T0 + i * 30_000;
        if i % 2 == 0 {
            tl.add(t, "app", Severity::Info, false);
        } else {
            warn_ids.push(tl.add(t, "app", Severity::Warning, false));
        }
    }
    let a = analyse(&cfg, T0, T0 + HOUR, &tl.events, &base);
    let shifts = of_kind(&a, PatternKind::SeverityShift);
    assert_eq!(shifts.len(), 1, "{:#?}", a.detections);
    let d = shifts[0];
    assert_eq!(d.source, "app");
    assert!(d.details["p_value"].as_f64().unwrap() < 1e-6);
    assert!(d.details["js_distance"].as_f64().unwrap() > 0.1);
    assert_eq!(d.details["grown"], serde_json::json!(["WARNING"]));
    assert_eq!(d.log_entry_ids, warn_ids);

    // The same mix as the baseline: nothing.
    let mut tl = Timeline::new();
    for i in 0..200 {
        let sev = if i % 10 == 0 {
            Severity::Warning
        } else {
            Severity::Info
        };
        tl.add(T0 + i * 10_000, "app", sev, false);
    }
    let a = analyse(&cfg, T0, T0 + HOUR, &tl.events, &base);
    assert!(of_kind(&a, PatternKind::SeverityShift).is_empty());

    // Too few entries in the window to say anything, however different.
    let mut tl = Timeline::new();
    for i in 0..20 {
        tl.add(T0 + i * 1000, "app", Severity::Critical, false);
    }
    let a = analyse(&cfg, T0, T0 + HOUR, &tl.events, &base);
    assert!(of_kind(&a, PatternKind::SeverityShift).is_empty());
}

#[test]
fn a_window_shorter_than_a_bucket_is_one_partial_bucket() {
    let cfg = PatternConfig::default();
    let mut tl = Timeline::new();
    for i in 0..3 {
        tl.add(T0 + 2 * MIN + i * MIN, "a", Severity::Error, true);
    }
    let a = analyse(&cfg, T0 + 2 * MIN, T0 + 7 * MIN, &tl.events, &[]);
    assert_eq!(a.window_start_ms, T0, "widened to the bucket start");
    assert_eq!(a.entries, 3);
    assert_eq!(of_kind(&a, PatternKind::AnomalyCluster).len(), 1);
    assert!(of_kind(&a, PatternKind::LowActivity).is_empty());
}

#[test]
fn clock_skew_counts_near_future_entries_and_ignores_far_ones() {
    let cfg = PatternConfig::default();
    let end = T0 + HOUR;
    let mut tl = Timeline::new();
    // Out of order, two minutes in the future (within the 5-minute allowance), and one
    // an hour in the future.
    tl.add(end + 2 * MIN, "a", Severity::Error, true);
    tl.add(end - MIN, "a", Severity::Error, true);
    tl.add(end + 90 * 1000, "a", Severity::Error, true);
    tl.add(end + HOUR, "a", Severity::Error, true);
    tl.add(T0 - HOUR, "a", Severity::Error, true);
    let a = analyse(&cfg, T0, end, &tl.events, &[]);
    assert_eq!(a.entries, 3);
    assert_eq!(a.ignored_out_of_window, 2);
    let c = of_kind(&a, PatternKind::AnomalyCluster);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].log_entry_ids, vec![1, 2, 3]);
}

#[test]
fn a_single_source_window_works_like_any_other() {
    let cfg = PatternConfig::default();
    let mut tl = Timeline::new();
    tl.steady("only", T0, T0 + 6 * HOUR, 20);
    for j in 0..15 {
        tl.add(
            T0 + 4 * HOUR + j * 10_000,
            "only",
            Severity::Critical,
            false,
        );
    }
    let a = analyse(&cfg, T0, T0 + 6 * HOUR, &tl.events, &[]);
    assert_eq!(a.sources, 1);
    let spikes = of_kind(&a, PatternKind::ErrorSpike);
    assert_eq!(spikes.len(), 1, "{:#?}", a.detections);
    assert_eq!(spikes[0].window_start_ms, T0 + 4 * HOUR);
    assert!(of_kind(&a, PatternKind::LowActivity).is_empty());
}

#[test]
fn thousands_of_sources_each_keep_their_own_baseline() {
    let cfg = PatternConfig::default();
    let mut tl = Timeline::new();
    let mut base = Vec::new();
    for s in 0..3000 {
        let name = format!("host-{s:04}");
        base.extend(baseline(&name, T0 - 6 * HOUR, T0, Severity::Info, 6));
        tl.steady(&name, T0, T0 + HOUR, 6);
    }
    // One host bursts errors, one host goes silent.
    for j in 0..20 {
        tl.add(
            T0 + 30 * MIN + j * 1000,
            "host-0042",
            Severity::Error,
            false,
        );
    }
    tl.events
        .retain(|e| !(e.source == "host-2999" && e.timestamp_ms >= T0 + 20 * MIN));
    let started = std::time::Instant::now();
    let a = analyse(&cfg, T0, T0 + HOUR, &tl.events, &base);
    assert!(
        started.elapsed().as_secs() < 10,
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(a.sources, 3000);
    let spikes = of_kind(&a, PatternKind::ErrorSpike);
    assert_eq!(spikes.len(), 1);
    assert_eq!(spikes[0].source, "host-0042");
    let low = of_kind(&a, PatternKind::LowActivity);
    assert_eq!(low.len(), 1, "{low:#?}");
    assert_eq!(low[0].source, "host-2999");
    assert_eq!(low[0].window_start_ms, T0 + 20 * MIN);
    // The burst also shifts host-0042's mix (20 errors against 36 infos).
    let shifts = of_kind(&a, PatternKind::SeverityShift);
    assert!(
        shifts.iter().all(|d| d.source == "host-0042"),
        "{shifts:#?}"
    );
}

#[test]
fn stream_windows_signal_a_cluster_once_per_burst() {
    let mut w = StreamWindows::new(PatternConfig::default(), 12);
    let ev = |id: i64, t: i64, anomaly: bool| Event {
        id,
        timestamp_ms: t,
        source: "api".into(),
        severity: Severity::Error,
        is_anomaly: anomaly,
    };
    assert!(w.observe(&ev(1, T0, true)).is_empty());
    assert!(w.observe(&ev(2, T0 + MIN, false)).is_empty());
    assert!(w.observe(&ev(3, T0 + 2 * MIN, true)).is_empty());
    let s = w.observe(&ev(4, T0 + 3 * MIN, true));
    assert_eq!(
        s,
        vec![StreamSignal::Cluster {
            source: "api".into(),
            anomalies: 3,
            window_start_ms: T0,
            window_end_ms: T0 + 3 * MIN + 1,
            log_entry_ids: vec![1, 3, 4],
        }]
    );
    // More anomalies in the same burst: no new signal.
    assert!(w.observe(&ev(5, T0 + 4 * MIN, true)).is_empty());
    // Another source is counted apart.
    let other = Event {
        source: "db".into(),
        ..ev(6, T0 + 4 * MIN, true)
    };
    assert!(w.observe(&other).is_empty());
    // After a quiet 10 minutes a new burst signals again.
    for (i, t) in [20, 21, 22].into_iter().enumerate() {
        let out = w.observe(&ev(10 + i as i64, T0 + t * MIN, true));
        assert_eq!(out.len(), usize::from(i == 2), "{out:?}");
    }
}

#[test]
fn stream_windows_signal_an_error_spike_against_recent_buckets() {
    let mut w = StreamWindows::new(PatternConfig::default(), 12);
    let mut id = 0;
    let mut ev = |t: i64, sev: Severity| {
        id += 1;
        Event {
            id,
            timestamp_ms: t,
            source: "pay".into(),
            severity: sev,
            is_anomaly: false,
        }
    };
    // Six buckets with one error each.
    for b in 0..6 {
        assert!(w
            .observe(&ev(T0 + b * 10 * MIN, Severity::Error))
            .is_empty());
        assert!(w
            .observe(&ev(T0 + b * 10 * MIN + MIN, Severity::Info))
            .is_empty());
    }
    let bucket = T0 + 6 * 10 * MIN;
    let mut signals = Vec::new();
    for j in 0..10 {
        signals.extend(w.observe(&ev(bucket + j * 1000, Severity::Error)));
    }
    assert_eq!(signals.len(), 1, "{signals:?}");
    match &signals[0] {
        StreamSignal::Spike {
            errors,
            bucket_start_ms,
            log_entry_ids,
            ..
        } => {
            assert_eq!(*bucket_start_ms, bucket);
            assert!(*errors >= 5);
            assert_eq!(log_entry_ids.len() as u64, *errors);
        }
        other => panic!("expected a spike, got {other:?}"),
    }
    w.evict_idle(bucket + 24 * 60 * MIN);
    assert_eq!(w.sources(), 0);
}

#[test]
fn the_default_configuration_is_valid_and_kinds_round_trip() {
    assert!(PatternConfig::default().validate().is_ok());
    let bad = PatternConfig {
        cluster_min: 1,
        ..PatternConfig::default()
    };
    assert!(bad.validate().is_err());
    for k in PatternKind::ALL {
        assert_eq!(PatternKind::parse(k.as_str()), Some(k));
    }
}

#[test]
fn a_source_that_starts_logging_mid_bucket_is_not_low_at_first() {
    let cfg = PatternConfig::default();
    let mut tl = Timeline::new();
    // Starts 9 minutes into a bucket (one entry there), then 30 per bucket.
    tl.add(T0 + 9 * MIN, "new", Severity::Info, false);
    tl.steady("new", T0 + 10 * MIN, T0 + 3 * HOUR, 30);
    let a = analyse(&cfg, T0, T0 + 3 * HOUR, &tl.events, &[]);
    assert!(
        of_kind(&a, PatternKind::LowActivity).is_empty(),
        "{:#?}",
        a.detections
    );
}

#[test]
fn counted_windows_give_the_same_answers_as_entry_by_entry() {
    use logcanary_detector::patterns::analyse_counted;
    let cfg = PatternConfig::default();
    let mut tl = Timeline::new();
    tl.steady("svc", T0, T0 + 2 * HOUR, 20);
    for j in 0..12 {
        tl.add(T0 + HOUR + j * 20_000, "svc", Severity::Error, j % 3 == 0);
    }
    let full = analyse(&cfg, T0, T0 + 2 * HOUR, &tl.events, &[]);
    // Counts for everything, entries only for the notable ones.
    let mut counts = std::collections::HashMap::new();
    for e in &tl.events {
        *counts
            .entry((e.source.clone(), cfg.bucket_of(e.timestamp_ms), e.severity))
            .or_insert(0u64) += 1;
    }
    let counts: Vec<BucketCount> = counts
        .into_iter()
        .map(|((source, bucket_start_ms, severity), count)| BucketCount {
            source,
            bucket_start_ms,
            severity,
            count,
        })
        .collect();
    let notable: Vec<Event> = tl
        .events
        .iter()
        .filter(|e| e.is_anomaly || e.severity >= Severity::Error)
        .cloned()
        .collect();
    let counted = analyse_counted(&cfg, T0, T0 + 2 * HOUR, &counts, &notable, &[]);
    assert_eq!(full.detections, counted.detections);
    assert_eq!(full.entries, counted.entries);
    assert_eq!(of_kind(&full, PatternKind::ErrorSpike).len(), 1);
    assert_eq!(of_kind(&full, PatternKind::AnomalyCluster).len(), 1);
}

#[test]
fn stream_windows_count_an_entry_listed_twice_once() {
    let mut w = StreamWindows::new(PatternConfig::default(), 12);
    let ev = |id: i64| Event {
        id,
        timestamp_ms: T0 + id * 1000,
        source: "api".into(),
        severity: Severity::Critical,
        is_anomaly: true,
    };
    for _ in 0..3 {
        assert!(w.observe(&ev(1)).is_empty());
        assert!(w.observe(&ev(2)).is_empty());
    }
    assert_eq!(w.observe(&ev(3)).len(), 1, "the third distinct anomaly");
}

#[test]
fn stream_windows_track_at_most_max_sources_and_forget_the_least_recently_active() {
    let mut w = StreamWindows::new(PatternConfig::default(), 12).with_limits(100, 5 * MIN);
    let ev = |id: i64, t: i64, source: &str, anomaly: bool| Event {
        id,
        timestamp_ms: t,
        source: source.into(),
        severity: Severity::Error,
        is_anomaly: anomaly,
    };
    // "api" starts a burst, then stays active while a flood of distinct sources arrives.
    assert!(w.observe(&ev(1, T0, "api", true)).is_empty());
    assert!(w.observe(&ev(2, T0 + 1000, "api", true)).is_empty());
    let mut id = 10;
    for i in 0..10_000 {
        id += 1;
        w.observe(&ev(id, T0 + 2000, &format!("flood-{i}"), false));
        assert!(w.sources() <= 100, "{} sources after {i}", w.sources());
        if i % 50 == 0 {
            id += 1;
            w.observe(&ev(id, T0 + 2000, "api", false));
        }
    }
    assert_eq!(w.sources(), 100);
    assert_eq!(w.evicted_sources(), 10_001 - 100);
    // The active source kept its window: the third anomaly completes its cluster.
    let out = w.observe(&ev(id + 1, T0 + 3000, "api", true));
    assert!(
        matches!(&out[..], [StreamSignal::Cluster { source, anomalies: 3, .. }] if source == "api"),
        "{out:?}"
    );
}

/// 3000-01-01T00:00:00Z.
const YEAR_3000: i64 = 32_503_680_000_000;

#[test]
fn a_line_stamped_in_year_3000_does_not_stop_later_clusters_of_its_source() {
    let mut w = StreamWindows::new(PatternConfig::default(), 12).with_limits(100, 5 * MIN);
    let ev = |id: i64, t: i64, anomaly: bool| Event {
        id,
        timestamp_ms: t,
        source: "api".into(),
        severity: Severity::Error,
        is_anomaly: anomaly,
    };
    w.set_now(T0);
    // One routine line and one anomalous line from a client whose clock is far off.
    assert!(w.observe(&ev(1, YEAR_3000, false)).is_empty());
    assert!(w.observe(&ev(2, YEAR_3000 + 1, true)).is_empty());
    assert_eq!(w.clamp(YEAR_3000), T0 + 5 * MIN);
    // Two bursts an hour apart, the wall clock advancing with them: both are clusters.
    for (burst, start) in [(0, T0 + HOUR), (1, T0 + 3 * HOUR)] {
        w.set_now(start);
        let mut found = Vec::new();
        for k in 0..3 {
            found.extend(w.observe(&ev(10 * (burst + 1) + k, start + k * MIN, true)));
        }
        assert_eq!(found.len(), 1, "burst {burst}: {found:?}");
        let StreamSignal::Cluster {
            window_start_ms,
            window_end_ms,
            log_entry_ids,
            ..
        } = &found[0]
        else {
            panic!("burst {burst}: not a cluster: {found:?}");
        };
        assert_eq!(*window_start_ms, start, "burst {burst}");
        assert_eq!(*window_end_ms, start + 2 * MIN + 1, "burst {burst}");
        assert_eq!(log_entry_ids.len(), 3, "burst {burst}: {log_entry_ids:?}");
    }
    // The source is not pinned either: idle for longer than the history, it is forgotten.
    w.evict_idle(T0 + 3 * HOUR + 13 * HOUR);
    assert_eq!(w.sources(), 0);
}
