//! Streaming windows for the real-time worker.

use std::collections::{BTreeMap, HashMap, VecDeque};

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
    /// When the source last had an entry, in the windows' own arrival order.
    active: u64,
}

/// Per-source sliding windows for the real-time worker: anomaly clusters and error
/// spikes as entries stream in, without waiting for the periodic analysis.
///
/// Memory is bounded: each source keeps at most the anomalies of one cluster window, the
/// last `history_buckets` bucket counts and the error ids of its current bucket (capped);
/// sources idle for longer than the history are forgotten by [`StreamWindows::evict_idle`].
/// Entries should arrive roughly in time order; one older than the source's current bucket
/// is counted in it (late arrivals are not worth a second timeline).
///
/// Sources and timestamps come from clients, so both are bounded: at most `max_sources`
/// sources are tracked (the least recently active one is forgotten to make room), and once
/// the caller has set the clock ([`StreamWindows::set_now`]) an entry stamped more than
/// `max_future_ms` ahead of it counts as stamped at that limit, so a line dated in the far
/// future cannot hold a source's windows open (its anomalies still leave the cluster
/// window, and later bursts are still seen).
pub struct StreamWindows {
    config: PatternConfig,
    history_buckets: usize,
    sources: HashMap<String, SourceWindow>,
    /// Sources by last activity, oldest first.
    activity: BTreeMap<u64, String>,
    tick: u64,
    max_sources: usize,
    max_future_ms: i64,
    now_ms: Option<i64>,
    evicted: u64,
    /// Ids observed lately (oldest first), so an entry listed by two tasks counts once.
    seen: std::collections::HashSet<i64>,
    seen_order: VecDeque<i64>,
}

/// How many recent entry ids [`StreamWindows`] remembers to skip repeats.
const SEEN_IDS: usize = 100_000;

/// Default of [`StreamWindows::with_limits`]' `max_sources`.
pub const DEFAULT_MAX_SOURCES: usize = 10_000;

/// Default of [`StreamWindows::with_limits`]' `max_future_ms`: five minutes.
pub const DEFAULT_MAX_FUTURE_MS: i64 = 300_000;

impl StreamWindows {
    pub fn new(config: PatternConfig, history_buckets: usize) -> Self {
        Self {
            config,
            history_buckets: history_buckets.max(2),
            sources: HashMap::new(),
            activity: BTreeMap::new(),
            tick: 0,
            max_sources: DEFAULT_MAX_SOURCES,
            max_future_ms: DEFAULT_MAX_FUTURE_MS,
            now_ms: None,
            evicted: 0,
            seen: std::collections::HashSet::new(),
            seen_order: VecDeque::new(),
        }
    }

    /// At most `max_sources` sources (at least 1) tracked at once; entries at most
    /// `max_future_ms` ahead of the clock given to [`StreamWindows::set_now`].
    pub fn with_limits(mut self, max_sources: usize, max_future_ms: i64) -> Self {
        self.max_sources = max_sources.max(1);
        self.max_future_ms = max_future_ms.max(0);
        self
    }

    /// The wall clock, milliseconds since the Unix epoch: later entries are clamped to
    /// `now_ms + max_future_ms`. Until it is set, timestamps are taken as they are.
    pub fn set_now(&mut self, now_ms: i64) {
        self.now_ms = Some(self.now_ms.map_or(now_ms, |t| t.max(now_ms)));
    }

    /// Sources currently tracked.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// Sources forgotten so far to stay within `max_sources` (not counting idle ones).
    pub fn evicted_sources(&self) -> u64 {
        self.evicted
    }

    /// The timestamp the windows use for `timestamp_ms`: at most the clock plus the
    /// allowed skew.
    pub fn clamp(&self, timestamp_ms: i64) -> i64 {
        match self.now_ms {
            Some(now) => timestamp_ms.min(now.saturating_add(self.max_future_ms)),
            None => timestamp_ms,
        }
    }

    /// Marks the source active now, creating its window (after making room) if new.
    fn activate(&mut self, source: &str) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(w) = self.sources.get_mut(source) {
            self.activity.remove(&w.active);
        } else {
            while self.sources.len() >= self.max_sources {
                let Some((_, oldest)) = self.activity.pop_first() else {
                    break;
                };
                self.sources.remove(&oldest);
                self.evicted += 1;
            }
            self.sources
                .insert(source.to_owned(), SourceWindow::default());
        }
        self.activity.insert(tick, source.to_owned());
        if let Some(w) = self.sources.get_mut(source) {
            w.active = tick;
        }
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
        let timestamp_ms = self.clamp(e.timestamp_ms);
        self.activate(&e.source);
        let cfg = &self.config;
        let history = self.history_buckets;
        let Some(w) = self.sources.get_mut(&e.source) else {
            return Vec::new();
        };
        w.last_seen_ms = w.last_seen_ms.max(timestamp_ms);
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
            w.anomalies.push_back((timestamp_ms, e.id));
        }
        if e.is_anomaly && !w.cluster_open && w.anomalies.len() >= cfg.cluster_min {
            w.cluster_open = true;
            // Late arrivals sit behind later ones: the bounds are the extremes.
            let first = w.anomalies.iter().map(|a| a.0).min().unwrap_or(now);
            let last = w.anomalies.iter().map(|a| a.0).max().unwrap_or(now);
            out.push(StreamSignal::Cluster {
                source: e.source.clone(),
                anomalies: w.anomalies.len(),
                window_start_ms: first,
                window_end_ms: last + 1,
                log_entry_ids: w.anomalies.iter().map(|a| a.1).collect(),
            });
        }

        // Spikes: count errors in the entry's bucket.
        let bucket = cfg.bucket_of(timestamp_ms);
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
        let activity = &mut self.activity;
        self.sources.retain(|_, w| {
            let keep = now_ms - w.last_seen_ms < keep_ms.max(self.config.cluster_window_ms);
            if !keep {
                activity.remove(&w.active);
            }
            keep
        });
    }
}
