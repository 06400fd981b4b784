//! The detectors' thresholds and the bucket arithmetic every analysis shares.

use serde::{Deserialize, Serialize};

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
