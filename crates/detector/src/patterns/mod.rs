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
//!
//! # Where things are
//!
//! The shared data types are here; [`PatternConfig`] and its checks in `config`; the
//! batch analysis ([`analyse`], [`analyse_counted`]) in `batch`, with one module per kind
//! of detector (`cluster`, `volume` for spikes and low activity, `severity_mix`); the
//! statistics they rely on ([`robust_stats`], [`chi_square_homogeneity`],
//! [`js_distance`], [`chi_square_sf`]) in `stats`; [`StreamWindows`] in `stream`.

mod batch;
mod cluster;
mod config;
mod severity_mix;
mod stats;
mod stream;
mod volume;

use serde::{Deserialize, Serialize};

use crate::scorer::Severity;

pub use batch::{analyse, analyse_counted};
pub use config::{ConfigError, PatternConfig};
pub use stats::{chi_square_homogeneity, chi_square_sf, js_distance, robust_stats};
pub use stream::{StreamSignal, StreamWindows, DEFAULT_MAX_FUTURE_MS, DEFAULT_MAX_SOURCES};

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

/// Entry ids of a detection: ascending, unique, at most `max`.
fn capped(mut ids: Vec<i64>, max: usize) -> Vec<i64> {
    ids.sort_unstable();
    ids.dedup();
    ids.truncate(max);
    ids
}

/// How a source is named in summaries.
fn source_name(source: &str) -> &str {
    if source.is_empty() {
        "(no source)"
    } else {
        source
    }
}
