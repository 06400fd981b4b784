//! Severity shifts: a source's mix of levels in the window against its baseline.

use std::collections::BTreeMap;

use serde_json::json;

use super::batch::SourceCounts;
use super::stats::{chi_square_homogeneity, chi_square_sf, js_distance};
use super::{
    capped, sev_index, source_name, Detection, PatternConfig, PatternKind, PatternSeverity,
    SEVERITIES,
};
use crate::scorer::Severity;

/// The severity-shift detection of one source, if its mix changed enough (see the module
/// docs of [`super`]).
pub(super) fn severity_shift(
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
