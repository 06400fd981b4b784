//! Patterns over time windows: anomaly clusters, error spikes, low activity and unusual
//! severity mixes, found in a window of already-scored entries against a baseline.
//!
//! Pure functions over data the caller loads: no clock, no I/O. [`analyse`] is what the
//! periodic `detect_anomaly_patterns` task runs; [`StreamWindows`] is the in-memory,
//! per-source sliding-window variant the real-time worker keeps between deliveries.
//!
//! # Buckets and re-runs
//!
//! Counting happens in buckets aligned to the Unix epoch (multiples of
//! [`PatternConfig::bucket_ms`]), not to the window's start, so two analyses of overlapping
//! windows (the default schedule runs a 24 h window every 6 h) report the same spike or
//! silence with the same bounds, and the store can drop the repeat. The window is widened
//! back to the start of its first bucket; its last bucket may be partial.
//!
//! # The four kinds
//!
//! - **Anomaly clusters** ([`PatternKind::AnomalyCluster`]): `cluster_min` or more
//!   anomalous entries (any source) inside some `cluster_window_ms` span. Overlapping
//!   qualifying spans are merged, so a long burst is one detection whose bounds are its
//!   first and last anomaly (stable across re-runs).
//! - **Error spikes** ([`PatternKind::ErrorSpike`]): per source, ERROR + CRITICAL entries in
//!   a bucket above `median + spike_k * scale` of that source's own buckets (baseline and
//!   window, from its first appearance), where `scale` is the MAD scaled to a standard
//!   deviation (×1.4826) and never less than the Poisson deviation `sqrt(median)` (nor 1),
//!   so a flat baseline does not turn one extra error into a spike. At least
//!   `spike_min_count` errors are required.
//! - **Low activity** ([`PatternKind::LowActivity`]): per source, buckets with at most
//!   `low_ratio` of the source's median count (scaled by the covered share of a partial
//!   bucket), when that median is at least `low_min_expected`; runs of such buckets are one
//!   detection, and a run of zero counts is reported as silence (a source that stops
//!   logging).
//! - **Severity patterns** ([`PatternKind::SeverityShift`]): per source, the window's mix of
//!   severities against the baseline's, by a chi-square test of homogeneity (p below
//!   `severity_p_value`) and a Jensen-Shannon distance of at least
//!   `severity_min_distance` (the effect size: large samples make tiny shifts
//!   "significant"), with at least `severity_min_samples` entries on each side.
//!
//! Entries without a source count under the source `""`; clusters span every source and
//! are reported under `""` too.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::scorer::Severity;

/// One scored entry of the window.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: i64,
    /// When the line was logged, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// `""` when the entry has none.
    pub source: String,
    pub severity: Severity,
    pub is_anomaly: bool,
}

/// Entries of one source, one severity, in one bucket of the baseline period.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketCount {
    pub source: String,
    /// Start of the bucket (a multiple of [`PatternConfig::bucket_ms`]).
    pub bucket_start_ms: i64,
    pub severity: Severity,
    pub count: u64,
}

/// The kinds of pattern; `as_str` is what the `pattern_detections.kind` column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatternKind {
    AnomalyCluster,
    ErrorSpike,
    LowActivity,
    SeverityShift,
}

impl PatternKind {
    pub const ALL: [PatternKind; 4] = [
        PatternKind::AnomalyCluster,
        PatternKind::ErrorSpike,
        PatternKind::LowActivity,
        PatternKind::SeverityShift,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PatternKind::AnomalyCluster => "anomaly_cluster",
            PatternKind::ErrorSpike => "error_spike",
            PatternKind::LowActivity => "low_activity",
            PatternKind::SeverityShift => "severity_shift",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// How serious a detection is; `as_str` is the `pattern_detections.severity` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PatternSeverity {
    Warning,
    Critical,
}

impl PatternSeverity {
    pub fn as_str(self) -> &'static str {
        match self {
            PatternSeverity::Warning => "WARNING",
            PatternSeverity::Critical => "CRITICAL",
        }
    }
}

/// One pattern found.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub kind: PatternKind,
    /// `""` for clusters (every source) and entries without a source.
    pub source: String,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub severity: PatternSeverity,
    /// The numbers that justify the detection, in words an operator can check.
    pub details: serde_json::Value,
    /// Entries involved, ascending, at most [`PatternConfig::max_entry_ids`].
    pub log_entry_ids: Vec<i64>,
}

/// Thresholds of the detectors. The defaults are what a fresh install runs with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatternConfig {
    /// Anomalies that make a cluster.
    pub cluster_min: usize,
    /// Span a cluster's anomalies must fit in.
    pub cluster_window_ms: i64,
    /// Counting bucket of spikes and low activity.
    pub bucket_ms: i64,
    /// Robust deviations above the median that make a spike.
    pub spike_k: f64,
    /// Fewest errors in a bucket that can be a spike.
    pub spike_min_count: u64,
    /// A bucket at or below this share of the expected count is low.
    pub low_ratio: f64,
    /// Expected entries per bucket below which a source is too quiet to judge.
    pub low_min_expected: f64,
    /// Fewest buckets of history (baseline and window) a source needs for spikes and low
    /// activity to be judged at all.
    pub min_reference_buckets: usize,
    /// Fewest entries on each side (window, baseline) for a severity comparison.
    pub severity_min_samples: u64,
    /// Chi-square p-value below which the mix differs.
    pub severity_p_value: f64,
    /// Jensen-Shannon distance (base 2, in [0, 1]) the mixes must differ by at least.
    pub severity_min_distance: f64,
    /// Entries dated up to this long after the window's end (client clocks ahead) still
    /// count in its last bucket; later ones are ignored.
    pub clock_skew_ms: i64,
    /// Most entry ids kept per detection.
    pub max_entry_ids: usize,
}

impl Default for PatternConfig {
    fn default() -> Self {
        Self {
            cluster_min: 3,
            cluster_window_ms: 10 * 60 * 1000,
            bucket_ms: 10 * 60 * 1000,
            spike_k: 5.0,
            spike_min_count: 5,
            low_ratio: 0.2,
            low_min_expected: 5.0,
            min_reference_buckets: 6,
            severity_min_samples: 30,
            severity_p_value: 0.001,
            severity_min_distance: 0.1,
            clock_skew_ms: 5 * 60 * 1000,
            max_entry_ids: 1000,
        }
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pattern configuration: {0}")]
pub struct ConfigError(pub String);

impl PatternConfig {
    /// Checks the knobs make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError(m.to_owned()));
        if self.cluster_min < 2 {
            return bad("cluster_min must be at least 2");
        }
        if self.cluster_window_ms <= 0 || self.bucket_ms <= 0 {
            return bad("cluster_window_ms and bucket_ms must be positive");
        }
        if !(self.spike_k.is_finite() && self.spike_k > 0.0) {
            return bad("spike_k must be a positive number");
        }
        if !(0.0..1.0).contains(&self.low_ratio) {
            return bad("low_ratio must be in [0, 1)");
        }
        if !(self.severity_p_value > 0.0 && self.severity_p_value < 1.0) {
            return bad("severity_p_value must be in (0, 1)");
        }
        if !(0.0..=1.0).contains(&self.severity_min_distance) {
            return bad("severity_min_distance must be in [0, 1]");
        }
        if self.clock_skew_ms < 0 || self.max_entry_ids == 0 {
            return bad("clock_skew_ms must be >= 0 and max_entry_ids > 0");
        }
        Ok(())
    }

    /// Start of the bucket holding `t`.
    pub fn bucket_of(&self, t: i64) -> i64 {
        t.div_euclid(self.bucket_ms) * self.bucket_ms
    }

    /// The range of entries an analysis of `[start_ms, end_ms)` reads: from the start of
    /// the first bucket to the end plus the clock-skew allowance.
    pub fn load_range(&self, start_ms: i64, end_ms: i64) -> (i64, i64) {
        (self.bucket_of(start_ms), end_ms + self.clock_skew_ms)
    }
}

/// What an analysis found, and what it looked at.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub detections: Vec<Detection>,
    /// Start of the first bucket (the window widened to a bucket boundary).
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    /// Entries counted in the window.
    pub entries: u64,
    pub anomalies: u64,
    pub sources: usize,
    /// Entries outside the window (dated after it beyond the clock-skew allowance, or
    /// before it): not counted.
    pub ignored_out_of_window: u64,
}

const SEVERITIES: [Severity; 5] = [
    Severity::Debug,
    Severity::Info,
    Severity::Warning,
    Severity::Error,
    Severity::Critical,
];

fn sev_index(s: Severity) -> usize {
    match s {
        Severity::Debug => 0,
        Severity::Info => 1,
        Severity::Warning => 2,
        Severity::Error => 3,
        Severity::Critical => 4,
    }
}

fn is_error(s: Severity) -> bool {
    matches!(s, Severity::Error | Severity::Critical)
}

/// Per-source counts over the reference range (baseline + window).
#[derive(Default)]
struct SourceCounts {
    /// bucket start -> counts per severity.
    buckets: BTreeMap<i64, [u64; 5]>,
    /// Window entries per bucket start: (id, severity), for entry ids.
    window_ids: BTreeMap<i64, Vec<(i64, Severity)>>,
    window_mix: [u64; 5],
    baseline_mix: [u64; 5],
}

/// Finds the patterns of `[start_ms, end_ms)` in `events` (every entry of the window, any
/// order) against `baseline` (bucketed counts from before the window, typically the
/// preceding days; may be empty). See the module docs for each detector.
///
/// Events outside [`PatternConfig::load_range`] are ignored and counted. A window shorter
/// than a bucket is analysed as its (partial) bucket. Never fails: an invalid
/// configuration should be rejected earlier with [`PatternConfig::validate`].
pub fn analyse(
    config: &PatternConfig,
    start_ms: i64,
    end_ms: i64,
    events: &[Event],
    baseline: &[BucketCount],
) -> Analysis {
    let mut counts: HashMap<(&str, i64, Severity), u64> = HashMap::new();
    for e in events {
        // Bucket starts outside the range are filtered (and counted) by analyse_counted.
        let bucket = if e.timestamp_ms >= end_ms.max(start_ms + 1) {
            e.timestamp_ms
        } else {
            config.bucket_of(e.timestamp_ms)
        };
        *counts
            .entry((e.source.as_str(), bucket, e.severity))
            .or_default() += 1;
    }
    let counts: Vec<BucketCount> = counts
        .into_iter()
        .map(|((source, bucket_start_ms, severity), count)| BucketCount {
            source: source.to_owned(),
            bucket_start_ms,
            severity,
            count,
        })
        .collect();
    analyse_counted(config, start_ms, end_ms, &counts, events, baseline)
}

/// As [`analyse`], for windows too large to load entry by entry: `window_counts` are the
/// window's entries counted per source, bucket and severity (they drive every statistic;
/// a count row whose bucket starts after the window's last bucket, within the clock-skew
/// allowance, counts in the last one), and `events` are the entries that may be named in
/// detections (at least every anomaly: clusters are found from them; ideally also the
/// ERROR/CRITICAL ones). Detections list only ids found in `events`.
pub fn analyse_counted(
    config: &PatternConfig,
    start_ms: i64,
    end_ms: i64,
    window_counts: &[BucketCount],
    events: &[Event],
    baseline: &[BucketCount],
) -> Analysis {
    let end_ms = end_ms.max(start_ms + 1);
    let (from, until) = config.load_range(start_ms, end_ms);
    let last_bucket = config.bucket_of(end_ms - 1);
    let in_range = |t: i64| t >= from && t < until;
    let mut ignored = 0u64;
    let mut in_window: Vec<&Event> = Vec::with_capacity(events.len());
    for e in events {
        if in_range(e.timestamp_ms) {
            in_window.push(e);
        }
    }
    in_window.sort_by_key(|e| (e.timestamp_ms, e.id));

    let mut sources: HashMap<&str, SourceCounts> = HashMap::new();
    for b in baseline {
        if b.bucket_start_ms >= from {
            continue; // the window's own entries are in `window_counts`
        }
        let s = sources.entry(b.source.as_str()).or_default();
        let bucket = config.bucket_of(b.bucket_start_ms);
        s.buckets.entry(bucket).or_default()[sev_index(b.severity)] += b.count;
        s.baseline_mix[sev_index(b.severity)] += b.count;
    }
    let mut entries = 0u64;
    for c in window_counts {
        if !in_range(c.bucket_start_ms) {
            ignored += c.count;
            continue;
        }
        entries += c.count;
        // Entries a little in the future (skewed clocks) count in the last bucket.
        let bucket = config.bucket_of(c.bucket_start_ms).min(last_bucket);
        let s = sources.entry(c.source.as_str()).or_default();
        s.buckets.entry(bucket).or_default()[sev_index(c.severity)] += c.count;
        s.window_mix[sev_index(c.severity)] += c.count;
    }
    for e in &in_window {
        let bucket = config.bucket_of(e.timestamp_ms).min(last_bucket);
        sources
            .entry(e.source.as_str())
            .or_default()
            .window_ids
            .entry(bucket)
            .or_default()
            .push((e.id, e.severity));
    }

    let mut detections = clusters(config, &in_window);
    let mut names: Vec<&str> = sources.keys().copied().collect();
    names.sort_unstable();
    for name in names {
        let s = &sources[name];
        detections.extend(spikes(config, name, s, from, last_bucket));
        detections.extend(low_activity(config, name, s, from, last_bucket, end_ms));
        detections.extend(severity_shift(config, name, s, from, end_ms));
    }
    Analysis {
        detections,
        window_start_ms: from,
        window_end_ms: end_ms,
        entries,
        anomalies: in_window.iter().filter(|e| e.is_anomaly).count() as u64,
        sources: sources
            .values()
            .filter(|s| s.window_mix.iter().sum::<u64>() > 0)
            .count(),
        ignored_out_of_window: ignored,
    }
}

fn capped(mut ids: Vec<i64>, max: usize) -> Vec<i64> {
    ids.sort_unstable();
    ids.dedup();
    ids.truncate(max);
    ids
}

/// Anomaly clusters over every source (see the module docs).
fn clusters(config: &PatternConfig, events: &[&Event]) -> Vec<Detection> {
    let anomalies: Vec<&Event> = events.iter().copied().filter(|e| e.is_anomaly).collect();
    let n = anomalies.len();
    let min = config.cluster_min;
    if n < min {
        return Vec::new();
    }
    // in_cluster[i]: anomaly i lies in some span of cluster_window_ms holding >= min.
    let mut in_cluster = vec![false; n];
    let mut j = 0;
    for i in 0..n {
        j = j.max(i);
        while j < n
            && anomalies[j].timestamp_ms - anomalies[i].timestamp_ms < config.cluster_window_ms
        {
            j += 1;
        }
        if j - i >= min {
            in_cluster[i..j].iter_mut().for_each(|m| *m = true);
        }
    }
    let mut out = Vec::new();
    let mut group: Vec<&Event> = Vec::new();
    let flush = |group: &mut Vec<&Event>, out: &mut Vec<Detection>| {
        if group.len() < min {
            group.clear();
            return;
        }
        let first = group[0].timestamp_ms;
        let last = group[group.len() - 1].timestamp_ms;
        let mut by_source: BTreeMap<&str, u64> = BTreeMap::new();
        let mut by_severity: BTreeMap<&str, u64> = BTreeMap::new();
        for e in group.iter() {
            *by_source.entry(e.source.as_str()).or_default() += 1;
            *by_severity.entry(e.severity.as_str()).or_default() += 1;
        }
        let critical =
            group.len() >= 2 * min || group.iter().any(|e| e.severity == Severity::Critical);
        out.push(Detection {
            kind: PatternKind::AnomalyCluster,
            source: String::new(),
            window_start_ms: first,
            // Exclusive end, one past the last anomaly.
            window_end_ms: last + 1,
            severity: if critical {
                PatternSeverity::Critical
            } else {
                PatternSeverity::Warning
            },
            details: json!({
                "anomalies": group.len(),
                "threshold": min,
                "cluster_window_seconds": config.cluster_window_ms / 1000,
                "span_seconds": (last - first) as f64 / 1000.0,
                "sources": by_source,
                "severities": by_severity,
                "summary": format!(
                    "{} anomalies within {:.0} s (threshold: {} within {} min)",
                    group.len(), (last - first) as f64 / 1000.0, min, config.cluster_window_ms / 60_000
                ),
            }),
            log_entry_ids: capped(group.iter().map(|e| e.id).collect(), config.max_entry_ids),
        });
        group.clear();
    };
    for (i, e) in anomalies.iter().enumerate() {
        if !in_cluster[i] {
            flush(&mut group, &mut out);
            continue;
        }
        if let Some(prev) = group.last() {
            if e.timestamp_ms - prev.timestamp_ms >= config.cluster_window_ms {
                flush(&mut group, &mut out);
            }
        }
        group.push(e);
    }
    flush(&mut group, &mut out);
    out
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Median and scaled MAD of `values`.
pub fn robust_stats(values: &[f64]) -> (f64, f64) {
    let mut v = values.to_vec();
    let m = median(&mut v);
    let mut dev: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
    (m, 1.4826 * median(&mut dev))
}

/// The source's per-bucket values from its first bucket to `last_bucket` (zeros filled),
/// and the index where the window's buckets begin.
fn series(
    config: &PatternConfig,
    s: &SourceCounts,
    window_from: i64,
    last_bucket: i64,
    value: impl Fn(&[u64; 5]) -> u64,
) -> (Vec<(i64, u64)>, usize) {
    let Some((&first, _)) = s.buckets.iter().next() else {
        return (Vec::new(), 0);
    };
    let mut out = Vec::new();
    let mut window_index = None;
    let mut b = first;
    while b <= last_bucket {
        if b >= window_from && window_index.is_none() {
            window_index = Some(out.len());
        }
        out.push((b, s.buckets.get(&b).map_or(0, &value)));
        b += config.bucket_ms;
    }
    let len = out.len();
    (out, window_index.unwrap_or(len))
}

/// Runs of consecutive flagged window buckets: (first index, last index).
fn runs(flags: &[bool]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &f) in flags.iter().enumerate() {
        match (f, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i - 1));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, flags.len() - 1));
    }
    out
}

fn spikes(
    config: &PatternConfig,
    source: &str,
    s: &SourceCounts,
    window_from: i64,
    last_bucket: i64,
) -> Vec<Detection> {
    let (series, w) = series(config, s, window_from, last_bucket, |c| c[3] + c[4]);
    if series.len() < config.min_reference_buckets || w >= series.len() {
        return Vec::new();
    }
    let values: Vec<f64> = series.iter().map(|&(_, c)| c as f64).collect();
    let (med, mad) = robust_stats(&values);
    let scale = mad.max(med.sqrt()).max(1.0);
    let threshold = med + config.spike_k * scale;
    let flags: Vec<bool> = series[w..]
        .iter()
        .map(|&(_, c)| c >= config.spike_min_count && c as f64 > threshold)
        .collect();
    runs(&flags)
        .into_iter()
        .map(|(a, b)| {
            let buckets = &series[w + a..=w + b];
            let peak = buckets.iter().map(|&(_, c)| c).max().unwrap_or(0);
            let total: u64 = buckets.iter().map(|&(_, c)| c).sum();
            let ids: Vec<i64> = buckets
                .iter()
                .flat_map(|(t, _)| s.window_ids.get(t).into_iter().flatten())
                .filter(|(_, sev)| is_error(*sev))
                .map(|(id, _)| *id)
                .collect();
            let start = buckets[0].0;
            let end = buckets[buckets.len() - 1].0 + config.bucket_ms;
            Detection {
                kind: PatternKind::ErrorSpike,
                source: source.to_owned(),
                window_start_ms: start,
                window_end_ms: end,
                severity: if peak as f64 >= 2.0 * threshold {
                    PatternSeverity::Critical
                } else {
                    PatternSeverity::Warning
                },
                details: json!({
                    "errors": total,
                    "peak_bucket_errors": peak,
                    "baseline_median": med,
                    "baseline_mad": mad,
                    "threshold": threshold,
                    "k": config.spike_k,
                    "bucket_seconds": config.bucket_ms / 1000,
                    "reference_buckets": series.len(),
                    "summary": format!(
                        "{peak} ERROR/CRITICAL entries in {} min from {:?}, against a usual {med:.1} (threshold {threshold:.1} = median + {} x robust deviation {scale:.1})",
                        config.bucket_ms / 60_000, source_name(source), config.spike_k
                    ),
                }),
                log_entry_ids: capped(ids, config.max_entry_ids),
            }
        })
        .collect()
}

fn source_name(source: &str) -> &str {
    if source.is_empty() {
        "(no source)"
    } else {
        source
    }
}

fn low_activity(
    config: &PatternConfig,
    source: &str,
    s: &SourceCounts,
    window_from: i64,
    last_bucket: i64,
    end_ms: i64,
) -> Vec<Detection> {
    let (series, w) = series(config, s, window_from, last_bucket, |c| c.iter().sum());
    if series.len() < config.min_reference_buckets || w >= series.len() {
        return Vec::new();
    }
    // The last bucket may be partial: judge it only when it is at least half covered, and
    // leave it out of the median.
    let covered = |t: i64| ((end_ms - t) as f64 / config.bucket_ms as f64).clamp(0.0, 1.0);
    // A source's first bucket is partial too (it started logging during it): it is no
    // sign of low activity, nor part of the usual count.
    let first = series[0].0;
    let complete: Vec<f64> = series
        .iter()
        .filter(|&&(t, _)| covered(t) >= 1.0 && t != first)
        .map(|&(_, c)| c as f64)
        .collect();
    if complete.len() < config.min_reference_buckets {
        return Vec::new();
    }
    let (expected, _) = robust_stats(&complete);
    if expected < config.low_min_expected {
        return Vec::new();
    }
    let flags: Vec<bool> = series[w..]
        .iter()
        .map(|&(t, c)| {
            let f = covered(t);
            t != first && f >= 0.5 && (c as f64) <= config.low_ratio * expected * f
        })
        .collect();
    runs(&flags)
        .into_iter()
        .map(|(a, b)| {
            let buckets = &series[w + a..=w + b];
            let total: u64 = buckets.iter().map(|&(_, c)| c).sum();
            let expected_total: f64 = buckets.iter().map(|&(t, _)| expected * covered(t)).sum();
            let silent = total == 0;
            let start = buckets[0].0;
            let end = (buckets[buckets.len() - 1].0 + config.bucket_ms).min(end_ms);
            let ids: Vec<i64> = buckets
                .iter()
                .flat_map(|(t, _)| s.window_ids.get(t).into_iter().flatten())
                .map(|(id, _)| *id)
                .collect();
            let minutes = (end - start) as f64 / 60_000.0;
            Detection {
                kind: PatternKind::LowActivity,
                source: source.to_owned(),
                window_start_ms: start,
                window_end_ms: end,
                severity: if silent {
                    PatternSeverity::Critical
                } else {
                    PatternSeverity::Warning
                },
                details: json!({
                    "entries": total,
                    "expected": expected_total,
                    "expected_per_bucket": expected,
                    "ratio": config.low_ratio,
                    "silent": silent,
                    "until_window_end": end >= end_ms,
                    "bucket_seconds": config.bucket_ms / 1000,
                    "summary": if silent {
                        format!("no entries from {:?} for {minutes:.0} min; about {expected_total:.0} expected", source_name(source))
                    } else {
                        format!("{total} entries from {:?} in {minutes:.0} min; about {expected_total:.0} expected", source_name(source))
                    },
                }),
                log_entry_ids: capped(ids, config.max_entry_ids),
            }
        })
        .collect()
}

fn severity_shift(
    config: &PatternConfig,
    source: &str,
    s: &SourceCounts,
    window_from: i64,
    end_ms: i64,
) -> Option<Detection> {
    let n_w: u64 = s.window_mix.iter().sum();
    let n_b: u64 = s.baseline_mix.iter().sum();
    if n_w < config.severity_min_samples || n_b < config.severity_min_samples {
        return None;
    }
    let (chi2, dof) = chi_square_homogeneity(&s.window_mix, &s.baseline_mix);
    if dof == 0 {
        return None;
    }
    let p = chi_square_sf(chi2, dof as f64);
    let distance = js_distance(&s.window_mix, &s.baseline_mix);
    if p >= config.severity_p_value || distance < config.severity_min_distance {
        return None;
    }
    let share = |mix: &[u64; 5], n: u64| -> BTreeMap<&'static str, f64> {
        SEVERITIES
            .iter()
            .map(|sev| {
                let v = mix[sev_index(*sev)] as f64 / n as f64;
                (sev.as_str(), (v * 1000.0).round() / 1000.0)
            })
            .collect()
    };
    // Entries of the levels that grew: the ones an operator wants to read.
    let grown: Vec<Severity> = SEVERITIES
        .iter()
        .copied()
        .filter(|sev| {
            let i = sev_index(*sev);
            s.window_mix[i] as f64 / n_w as f64 > s.baseline_mix[i] as f64 / n_b as f64
        })
        .collect();
    let ids: Vec<i64> = s
        .window_ids
        .values()
        .flatten()
        .filter(|(_, sev)| grown.contains(sev))
        .map(|(id, _)| *id)
        .collect();
    Some(Detection {
        kind: PatternKind::SeverityShift,
        source: source.to_owned(),
        window_start_ms: window_from,
        window_end_ms: end_ms,
        severity: if distance >= 0.3 {
            PatternSeverity::Critical
        } else {
            PatternSeverity::Warning
        },
        details: json!({
            "window_entries": n_w,
            "baseline_entries": n_b,
            "window_mix": share(&s.window_mix, n_w),
            "baseline_mix": share(&s.baseline_mix, n_b),
            "chi_square": chi2,
            "degrees_of_freedom": dof,
            "p_value": p,
            "js_distance": distance,
            "grown": grown.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "summary": format!(
                "severity mix of {:?} differs from its baseline (Jensen-Shannon distance {distance:.2}, chi-square p = {p:.1e}, {n_w} vs {n_b} entries)",
                source_name(source)
            ),
        }),
        log_entry_ids: capped(ids, config.max_entry_ids),
    })
}

/// Pearson's chi-square statistic of a 2 x k table (levels seen on either side) and its
/// degrees of freedom.
pub fn chi_square_homogeneity(a: &[u64; 5], b: &[u64; 5]) -> (f64, usize) {
    let (na, nb) = (a.iter().sum::<u64>() as f64, b.iter().sum::<u64>() as f64);
    let n = na + nb;
    if na == 0.0 || nb == 0.0 {
        return (0.0, 0);
    }
    let mut chi2 = 0.0;
    let mut levels = 0;
    for i in 0..5 {
        let col = (a[i] + b[i]) as f64;
        if col == 0.0 {
            continue;
        }
        levels += 1;
        for (obs, row) in [(a[i] as f64, na), (b[i] as f64, nb)] {
            let exp = row * col / n;
            chi2 += (obs - exp).powi(2) / exp;
        }
    }
    (chi2, levels.max(1) - 1)
}

/// Jensen-Shannon distance (square root of the divergence, base 2), in [0, 1].
pub fn js_distance(a: &[u64; 5], b: &[u64; 5]) -> f64 {
    let (na, nb) = (a.iter().sum::<u64>() as f64, b.iter().sum::<u64>() as f64);
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    let mut js = 0.0;
    for i in 0..5 {
        let (p, q) = (a[i] as f64 / na, b[i] as f64 / nb);
        let m = (p + q) / 2.0;
        if p > 0.0 {
            js += 0.5 * p * (p / m).log2();
        }
        if q > 0.0 {
            js += 0.5 * q * (q / m).log2();
        }
    }
    js.clamp(0.0, 1.0).sqrt()
}

/// P(X >= x) for X chi-square with `k` degrees of freedom.
pub fn chi_square_sf(x: f64, k: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    upper_regularized_gamma(k / 2.0, x / 2.0)
}

fn ln_gamma(x: f64) -> f64 {
    // Lanczos approximation (g = 7, n = 9), accurate to ~1e-15 for x > 0.
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Q(a, x) = Γ(a, x) / Γ(a): series below a + 1, continued fraction above.
fn upper_regularized_gamma(a: f64, x: f64) -> f64 {
    let gln = ln_gamma(a);
    if x < a + 1.0 {
        let (mut sum, mut del, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..500 {
            ap += 1.0;
            del *= x / ap;
            sum += del;
            if del.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        (1.0 - sum * (-x + a * x.ln() - gln).exp()).clamp(0.0, 1.0)
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..500 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let del = d * c;
            h *= del;
            if (del - 1.0).abs() < 1e-15 {
                break;
            }
        }
        ((-x + a * x.ln() - gln).exp() * h).clamp(0.0, 1.0)
    }
}

/// What [`StreamWindows::observe`] says about one entry.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamSignal {
    /// `cluster_min` or more anomalies from this source inside the cluster window; fired
    /// once per cluster (again only after the source's window has emptied of anomalies).
    Cluster {
        source: String,
        anomalies: usize,
        window_start_ms: i64,
        window_end_ms: i64,
        log_entry_ids: Vec<i64>,
    },
    /// The source's errors in the current bucket crossed its spike threshold (median +
    /// k x robust deviation of its recent buckets); fired once per bucket.
    Spike {
        source: String,
        errors: u64,
        threshold: f64,
        bucket_start_ms: i64,
        log_entry_ids: Vec<i64>,
    },
}

#[derive(Default)]
struct SourceWindow {
    /// Anomalies inside the cluster window: (timestamp, id).
    anomalies: VecDeque<(i64, i64)>,
    cluster_open: bool,
    /// Recent buckets' error counts, oldest first: (bucket start, errors).
    buckets: VecDeque<(i64, u64)>,
    /// Error entries of the current bucket.
    current_ids: Vec<i64>,
    spiked_bucket: Option<i64>,
    last_seen_ms: i64,
}

/// Per-source sliding windows for the real-time worker: anomaly clusters and error
/// spikes as entries stream in, without waiting for the periodic analysis.
///
/// Memory is bounded: each source keeps at most the anomalies of one cluster window, the
/// last `history_buckets` bucket counts and the error ids of its current bucket (capped);
/// sources idle for longer than the history are forgotten by [`StreamWindows::evict_idle`].
/// Entries should arrive roughly in time order; one older than the source's current bucket
/// is counted in it (late arrivals are not worth a second timeline).
pub struct StreamWindows {
    config: PatternConfig,
    history_buckets: usize,
    sources: HashMap<String, SourceWindow>,
    /// Ids observed lately (oldest first), so an entry listed by two tasks counts once.
    seen: std::collections::HashSet<i64>,
    seen_order: VecDeque<i64>,
}

/// How many recent entry ids [`StreamWindows`] remembers to skip repeats.
const SEEN_IDS: usize = 100_000;

impl StreamWindows {
    pub fn new(config: PatternConfig, history_buckets: usize) -> Self {
        Self {
            config,
            history_buckets: history_buckets.max(2),
            sources: HashMap::new(),
            seen: std::collections::HashSet::new(),
            seen_order: VecDeque::new(),
        }
    }

    /// Sources currently tracked.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// Adds one scored entry; returns what it completed, if anything. An entry already
    /// observed lately (by id) is skipped.
    pub fn observe(&mut self, e: &Event) -> Vec<StreamSignal> {
        if !self.seen.insert(e.id) {
            return Vec::new();
        }
        self.seen_order.push_back(e.id);
        if self.seen_order.len() > SEEN_IDS {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        let cfg = &self.config;
        let history = self.history_buckets;
        let w = self.sources.entry(e.source.clone()).or_default();
        w.last_seen_ms = w.last_seen_ms.max(e.timestamp_ms);
        let mut out = Vec::new();

        // Clusters: slide the window to end at this entry. A burst is over once its
        // anomalies have all left the window.
        let now = w.last_seen_ms;
        while w
            .anomalies
            .front()
            .is_some_and(|&(t, _)| now - t >= cfg.cluster_window_ms)
        {
            w.anomalies.pop_front();
        }
        if w.anomalies.is_empty() {
            w.cluster_open = false;
        }
        if e.is_anomaly {
            w.anomalies.push_back((e.timestamp_ms, e.id));
        }
        if e.is_anomaly && !w.cluster_open && w.anomalies.len() >= cfg.cluster_min {
            w.cluster_open = true;
            let first = w.anomalies.front().map_or(now, |a| a.0);
            let last = w.anomalies.back().map_or(now, |a| a.0);
            out.push(StreamSignal::Cluster {
                source: e.source.clone(),
                anomalies: w.anomalies.len(),
                window_start_ms: first,
                window_end_ms: last + 1,
                log_entry_ids: w.anomalies.iter().map(|a| a.1).collect(),
            });
        }

        // Spikes: count errors in the entry's bucket.
        let bucket = cfg.bucket_of(e.timestamp_ms);
        match w.buckets.back() {
            Some(&(b, _)) if bucket > b => {
                // Fill skipped buckets with zeros so quiet periods count in the median.
                let mut next = b + cfg.bucket_ms;
                while next < bucket && w.buckets.len() <= history {
                    w.buckets.push_back((next, 0));
                    next += cfg.bucket_ms;
                }
                w.buckets.push_back((bucket, 0));
                w.current_ids.clear();
            }
            None => w.buckets.push_back((bucket, 0)),
            _ => {}
        }
        while w.buckets.len() > history + 1 {
            w.buckets.pop_front();
        }
        if is_error(e.severity) {
            if let Some(last) = w.buckets.back_mut() {
                last.1 += 1;
            }
            if w.current_ids.len() < cfg.max_entry_ids {
                w.current_ids.push(e.id);
            }
            let (current_start, errors) = w.buckets.back().copied().unwrap_or((bucket, 0));
            let past: Vec<f64> = w
                .buckets
                .iter()
                .take(w.buckets.len().saturating_sub(1))
                .map(|&(_, c)| c as f64)
                .collect();
            if past.len() + 1 >= cfg.min_reference_buckets && w.spiked_bucket != Some(current_start)
            {
                let (med, mad) = robust_stats(&past);
                let threshold = med + cfg.spike_k * mad.max(med.sqrt()).max(1.0);
                if errors >= cfg.spike_min_count && errors as f64 > threshold {
                    w.spiked_bucket = Some(current_start);
                    out.push(StreamSignal::Spike {
                        source: e.source.clone(),
                        errors,
                        threshold,
                        bucket_start_ms: current_start,
                        log_entry_ids: w.current_ids.clone(),
                    });
                }
            }
        }
        out
    }

    /// Forgets sources whose last entry is older than the history at `now_ms`.
    pub fn evict_idle(&mut self, now_ms: i64) {
        let keep_ms = self.config.bucket_ms * self.history_buckets as i64;
        self.sources
            .retain(|_, w| now_ms - w.last_seen_ms < keep_ms.max(self.config.cluster_window_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chi_square_survival_matches_tables() {
        // Critical values at p = 0.001 for 1..=4 degrees of freedom.
        for (x, k) in [(10.828, 1.0), (13.816, 2.0), (16.266, 3.0), (18.467, 4.0)] {
            let p = chi_square_sf(x, k);
            assert!((p - 0.001).abs() < 2e-5, "k={k}: {p}");
        }
        assert!((chi_square_sf(2.0, 2.0) - (-1.0f64).exp()).abs() < 1e-12);
        assert_eq!(chi_square_sf(0.0, 3.0), 1.0);
    }

    #[test]
    fn js_distance_bounds() {
        let a = [0, 10, 0, 0, 0];
        let b = [0, 0, 0, 10, 0];
        assert!((js_distance(&a, &b) - 1.0).abs() < 1e-12);
        assert_eq!(js_distance(&a, &a), 0.0);
    }

    #[test]
    fn robust_stats_ignore_one_outlier() {
        let (m, mad) = robust_stats(&[2.0, 3.0, 2.0, 3.0, 2.0, 100.0]);
        assert_eq!(m, 2.5);
        assert!((mad - 0.7413).abs() < 1e-3);
    }
}
