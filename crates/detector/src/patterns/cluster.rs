//! Anomaly clusters: bursts of anomalous entries, over every source.

use std::collections::BTreeMap;

use serde_json::json;

use super::{capped, Detection, Event, PatternConfig, PatternKind, PatternSeverity};
use crate::scorer::Severity;

/// Anomaly clusters over every source (see the module docs).
pub(super) fn clusters(config: &PatternConfig, events: &[&Event]) -> Vec<Detection> {
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
