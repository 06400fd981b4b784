//! Streaming windows for the real-time worker.

use std::collections::{HashMap, VecDeque};

use super::stats::robust_stats;
use super::{is_error, Event, PatternConfig};

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
