//! Per-source volume over buckets: error spikes above the source's usual count, and low
//! activity (or silence) below it.

use serde_json::json;

use super::batch::SourceCounts;
use super::stats::robust_stats;
use super::{
    capped, is_error, source_name, Detection, PatternConfig, PatternKind, PatternSeverity,
};

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

pub(super) fn spikes(
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

pub(super) fn low_activity(
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
