//! The periodic analysis of a window: counts per source and bucket, then every detector.

use std::collections::{BTreeMap, HashMap};

use super::cluster::clusters;
use super::severity_mix::severity_shift;
use super::volume::{low_activity, spikes};
use super::{sev_index, Analysis, BucketCount, Event, PatternConfig};
use crate::scorer::Severity;

/// Per-source counts over the reference range (baseline + window).
#[derive(Default)]
pub(super) struct SourceCounts {
    /// bucket start -> counts per severity.
    pub(super) buckets: BTreeMap<i64, [u64; 5]>,
    /// Window entries per bucket start: (id, severity), for entry ids.
    pub(super) window_ids: BTreeMap<i64, Vec<(i64, Severity)>>,
    pub(super) window_mix: [u64; 5],
    pub(super) baseline_mix: [u64; 5],
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
