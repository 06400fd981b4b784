//! Settings every scoring worker flattens into its command line, so the analysis and
//! real-time workers read the same variables with the same defaults.

use std::time::Duration;

use detector::patterns::PatternConfig;

/// Detector settings shared by every worker that scores (analysis-worker and
/// realtime-worker flatten this, so both read the same variables with the same defaults).
#[derive(clap::Args, Clone, Debug)]
pub struct ScoringArgs {
    /// Score at or above which an entry is flagged anomalous (0..=1); the detector's
    /// default when unset.
    #[arg(long, env = "LOGCANARY_ANOMALY_THRESHOLD", value_name = "LOGCANARY_ANOMALY_THRESHOLD", value_parser = parse_unit)]
    pub anomaly_threshold: Option<f64>,

    /// Lines the detector learns from before it flags anything (shared by all replicas:
    /// lines counted in the `templates` table count); the detector's default when unset.
    #[arg(
        long,
        env = "LOGCANARY_WARMUP_LINES",
        value_name = "LOGCANARY_WARMUP_LINES"
    )]
    pub warmup_lines: Option<u64>,

    /// Severity weight (0..=1; ERROR is 0.8) a template can get for reading like a failure,
    /// whatever its log level; 0 judges lines by their level only. The detector's default
    /// (0.8) when unset.
    #[arg(long, env = "LOGCANARY_MEANING_SEVERITY_MAX", value_name = "LOGCANARY_MEANING_SEVERITY_MAX", value_parser = parse_unit)]
    pub meaning_severity_max: Option<f64>,

    /// The same bound for lines of a source that marks its trouble by level (at least 1 %
    /// of its lines at WARNING or above): there an INFO line that only reads like a failure
    /// is mostly routine chatter. Never above `LOGCANARY_MEANING_SEVERITY_MAX`. The
    /// detector's default (0.6) when unset.
    #[arg(long, env = "LOGCANARY_LEVELLED_MEANING_MAX", value_name = "LOGCANARY_LEVELLED_MEANING_MAX", value_parser = parse_unit)]
    pub levelled_meaning_max: Option<f64>,

    /// How much more a template's newness counts, on its first 10 lines, when it came
    /// after the stream had settled (none of the latest 300 lines this replica scored
    /// started a template; nothing once 5 % of them did); 0 turns it off. The detector's default (0.15) when
    /// unset.
    #[arg(long, env = "LOGCANARY_SETTLED_WEIGHT", value_name = "LOGCANARY_SETTLED_WEIGHT", value_parser = parse_unit)]
    pub settled_weight: Option<f64>,

    /// How stale this replica's copy of the shared templates and labels may get before a
    /// batch pulls the changes, in milliseconds (0: before every batch).
    #[arg(
        long,
        env = "LOGCANARY_TEMPLATE_REFRESH_MS",
        value_name = "LOGCANARY_TEMPLATE_REFRESH_MS",
        default_value_t = 5000
    )]
    pub template_refresh_ms: u64,

    /// Most templates this replica keeps in memory (its miner, embeddings and counts).
    /// Past it the least recently seen are evicted, operator-labelled ones last; a line of
    /// an evicted template brings it back from Postgres (same row, same id). Each new
    /// template costs a model run, and clients decide how many there are.
    #[arg(long, env = "LOGCANARY_MAX_TEMPLATES", value_name = "LOGCANARY_MAX_TEMPLATES", default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(100..=10_000_000))]
    pub max_templates: u64,

    /// Directory holding the sentence model (`model.onnx`, `tokenizer.json`); default
    /// `.cache/model` under the nearest ancestor directory that has a `.cache/` (where
    /// `make setup` puts it).
    #[arg(long, env = "LOGCANARY_MODEL_DIR", value_name = "LOGCANARY_MODEL_DIR")]
    pub model_dir: Option<std::path::PathBuf>,

    /// The ONNX Runtime shared library (`libonnxruntime.so`); default under `.cache/`
    /// like the model.
    #[arg(long, env = "ORT_DYLIB_PATH", value_name = "ORT_DYLIB_PATH")]
    pub ort_dylib_path: Option<std::path::PathBuf>,

    /// Threads ONNX Runtime uses for one model run. The model runs only for texts never
    /// seen (new templates), so more threads mostly speed up a cold start (two threads:
    /// 2 960 lines/s cold against 2 120 with one, on two cores; BENCHMARKS.md).
    #[arg(long, env = "LOGCANARY_MODEL_THREADS", value_name = "LOGCANARY_MODEL_THREADS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub model_threads: u16,
}

impl ScoringArgs {
    /// The detector's configuration: its defaults with this worker's overrides.
    pub fn scorer_config(&self) -> detector::scorer::ScorerConfig {
        let defaults = detector::scorer::ScorerConfig::default();
        detector::scorer::ScorerConfig {
            threshold: self
                .anomaly_threshold
                .map_or(defaults.threshold, |t| t as f32),
            warmup_lines: self.warmup_lines.unwrap_or(defaults.warmup_lines),
            meaning_severity_max: self
                .meaning_severity_max
                .map_or(defaults.meaning_severity_max, |m| m as f32),
            levelled_meaning_max: self
                .levelled_meaning_max
                .map_or(defaults.levelled_meaning_max, |m| m as f32),
            settled_weight: self
                .settled_weight
                .map_or(defaults.settled_weight, |w| w as f32),
            max_templates: usize::try_from(self.max_templates).unwrap_or(usize::MAX),
            ..defaults
        }
    }

    /// Where the model and ONNX Runtime are loaded from.
    pub fn embedder_config(&self) -> detector::embedder::EmbedderConfig {
        detector::embedder::EmbedderConfig {
            intra_threads: usize::from(self.model_threads),
            ..detector::embedder::EmbedderConfig::with_defaults(
                self.model_dir.clone().filter(|p| !p.as_os_str().is_empty()),
                self.ort_dylib_path
                    .clone()
                    .filter(|p| !p.as_os_str().is_empty()),
            )
        }
    }

    pub fn template_refresh(&self) -> Duration {
        Duration::from_millis(self.template_refresh_ms)
    }
}

fn parse_unit(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("expected a number from 0 to 1, got {raw:?}")),
    }
}

/// Thresholds of pattern analysis; flags that are also environment variables, shared by
/// the analysis worker (periodic analysis) and the real-time worker (sliding windows).
#[derive(clap::Args, Clone, Debug)]
pub struct PatternSettings {
    /// Anomalies inside the cluster window that make an anomaly cluster.
    #[arg(long = "pattern-cluster-min", env = "LOGCANARY_PATTERN_CLUSTER_MIN", value_name = "LOGCANARY_PATTERN_CLUSTER_MIN", default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=100_000))]
    pub cluster_min: u32,
    /// Span of an anomaly cluster, in seconds.
    #[arg(long = "pattern-cluster-window-secs", env = "LOGCANARY_PATTERN_CLUSTER_WINDOW_SECS", value_name = "LOGCANARY_PATTERN_CLUSTER_WINDOW_SECS", default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub cluster_window_secs: u32,
    /// Counting bucket of error spikes and low activity, in seconds.
    #[arg(long = "pattern-bucket-secs", env = "LOGCANARY_PATTERN_BUCKET_SECS", value_name = "LOGCANARY_PATTERN_BUCKET_SECS", default_value_t = 600, value_parser = clap::value_parser!(u32).range(10..=86_400))]
    pub bucket_secs: u32,
    /// Robust deviations (scaled MAD) above a source's median error count that make a spike.
    #[arg(long = "pattern-spike-k", env = "LOGCANARY_PATTERN_SPIKE_K", value_name = "LOGCANARY_PATTERN_SPIKE_K", default_value_t = 5.0, value_parser = parse_positive)]
    pub spike_k: f64,
    /// Fewest ERROR/CRITICAL entries in a bucket that can be a spike.
    #[arg(
        long = "pattern-spike-min",
        env = "LOGCANARY_PATTERN_SPIKE_MIN",
        value_name = "LOGCANARY_PATTERN_SPIKE_MIN",
        default_value_t = 5
    )]
    pub spike_min: u64,
    /// A bucket with at most this share of a source's usual count is low activity.
    #[arg(long = "pattern-low-ratio", env = "LOGCANARY_PATTERN_LOW_RATIO", value_name = "LOGCANARY_PATTERN_LOW_RATIO", default_value_t = 0.2, value_parser = parse_ratio)]
    pub low_ratio: f64,
    /// Usual entries per bucket below which a source is too quiet to call low.
    #[arg(long = "pattern-low-min-expected", env = "LOGCANARY_PATTERN_LOW_MIN_EXPECTED", value_name = "LOGCANARY_PATTERN_LOW_MIN_EXPECTED", default_value_t = 5.0, value_parser = parse_positive)]
    pub low_min_expected: f64,
    /// Fewest entries in the window and in the baseline to compare severity mixes.
    #[arg(
        long = "pattern-severity-min-samples",
        env = "LOGCANARY_PATTERN_SEVERITY_MIN_SAMPLES",
        value_name = "LOGCANARY_PATTERN_SEVERITY_MIN_SAMPLES",
        default_value_t = 30
    )]
    pub severity_min_samples: u64,
    /// Chi-square p-value below which a severity mix differs from its baseline.
    #[arg(long = "pattern-severity-p-value", env = "LOGCANARY_PATTERN_SEVERITY_P_VALUE", value_name = "LOGCANARY_PATTERN_SEVERITY_P_VALUE", default_value_t = 0.001, value_parser = parse_ratio)]
    pub severity_p_value: f64,
    /// Jensen-Shannon distance (0..1) a severity mix must move by as well.
    #[arg(long = "pattern-severity-min-distance", env = "LOGCANARY_PATTERN_SEVERITY_MIN_DISTANCE", value_name = "LOGCANARY_PATTERN_SEVERITY_MIN_DISTANCE", default_value_t = 0.1, value_parser = parse_ratio)]
    pub severity_min_distance: f64,
    /// Hours before the window whose counts are the baseline.
    #[arg(long = "pattern-baseline-hours", env = "LOGCANARY_PATTERN_BASELINE_HOURS", value_name = "LOGCANARY_PATTERN_BASELINE_HOURS", default_value_t = 168, value_parser = clap::value_parser!(u32).range(0..=8760))]
    pub baseline_hours: u32,
    /// Windows with at most this many entries are loaded entry by entry (every detection
    /// then names its entries); larger ones load only anomalies and errors.
    #[arg(long = "pattern-max-rows", env = "LOGCANARY_PATTERN_MAX_ROWS", value_name = "LOGCANARY_PATTERN_MAX_ROWS", default_value_t = 200_000, value_parser = clap::value_parser!(i64).range(1..))]
    pub max_rows: i64,
}

fn parse_positive(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("expected a positive number, got {raw:?}")),
    }
}

fn parse_ratio(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
        _ => Err(format!("expected a number between 0 and 1, got {raw:?}")),
    }
}

impl Default for PatternSettings {
    fn default() -> Self {
        let c = PatternConfig::default();
        Self {
            cluster_min: c.cluster_min as u32,
            cluster_window_secs: (c.cluster_window_ms / 1000) as u32,
            bucket_secs: (c.bucket_ms / 1000) as u32,
            spike_k: c.spike_k,
            spike_min: c.spike_min_count,
            low_ratio: c.low_ratio,
            low_min_expected: c.low_min_expected,
            severity_min_samples: c.severity_min_samples,
            severity_p_value: c.severity_p_value,
            severity_min_distance: c.severity_min_distance,
            baseline_hours: 168,
            max_rows: 200_000,
        }
    }
}

impl PatternSettings {
    /// The detectors' configuration.
    ///
    /// # Errors
    ///
    /// When the values do not make sense together; the message names the problem.
    pub fn config(&self) -> Result<PatternConfig, detector::patterns::ConfigError> {
        let c = PatternConfig {
            cluster_min: self.cluster_min as usize,
            cluster_window_ms: i64::from(self.cluster_window_secs) * 1000,
            bucket_ms: i64::from(self.bucket_secs) * 1000,
            spike_k: self.spike_k,
            spike_min_count: self.spike_min,
            low_ratio: self.low_ratio,
            low_min_expected: self.low_min_expected,
            severity_min_samples: self.severity_min_samples,
            severity_p_value: self.severity_p_value,
            severity_min_distance: self.severity_min_distance,
            ..PatternConfig::default()
        };
        c.validate()?;
        Ok(c)
    }
}
