//! The first scorer: template rarity and severity.
//!
//! Each message is masked into a template (numbers, ids, paths... replaced by
//! placeholders, with the detector's masking), the shared counts in the `templates` table
//! say how often that template was seen before, and the score combines that rarity with
//! the severity. The BERT-based scorer of `crates/detector` replaces this once wired in;
//! until then this one is real, explainable and shared by every worker replica.

use std::collections::HashMap;

use db::{models::EntryScore, models::LogEntry, templates::Observation};

/// Weights and threshold of the score.
#[derive(Debug, Clone, Copy)]
pub struct ScoringConfig {
    /// Score at or above which an entry is anomalous.
    pub threshold: f64,
    /// Share of the score that comes from rarity (the rest from severity).
    pub rarity_weight: f64,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        Self {
            threshold: 0.7,
            rarity_weight: 0.6,
        }
    }
}

pub fn severity_weight(severity: &str) -> f64 {
    match severity {
        "CRITICAL" => 1.0,
        "ERROR" => 0.8,
        "WARNING" => 0.4,
        "INFO" => 0.1,
        _ => 0.0,
    }
}

/// Templates of a batch of entries, aggregated for one `observe` round trip.
pub struct MaskedBatch {
    /// Template key of each entry, in entry order.
    pub keys: Vec<String>,
    pub observations: Vec<Observation>,
}

/// Masks every entry and counts each template once per batch (in time order, so the
/// first occurrence in a batch is the novel one).
pub fn mask_batch(entries: &[LogEntry]) -> MaskedBatch {
    let mut keys = Vec::with_capacity(entries.len());
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut observations: Vec<Observation> = Vec::new();
    for entry in entries {
        let template = detector::masking::mask(&entry.message);
        let key = template.clone();
        match index.get(&key) {
            Some(&i) => {
                let o = &mut observations[i];
                o.count += 1;
                o.last_seen = o.last_seen.max(entry.logged_at);
            }
            None => {
                index.insert(key.clone(), observations.len());
                observations.push(Observation {
                    key: key.clone(),
                    template,
                    count: 1,
                    last_seen: entry.logged_at,
                });
            }
        }
        keys.push(key);
    }
    MaskedBatch { keys, observations }
}

/// Template id and prior count per template key.
pub struct Prior {
    pub id: i64,
    pub seen_before: i64,
}

/// Scores entries given how often each template was seen before this batch.
pub fn score(
    entries: &[LogEntry],
    keys: &[String],
    priors: &HashMap<String, Prior>,
    config: &ScoringConfig,
) -> Vec<EntryScore> {
    // Occurrences within this batch count as "seen" for later entries of the batch.
    let mut seen_in_batch: HashMap<&str, i64> = HashMap::new();
    entries
        .iter()
        .zip(keys)
        .map(|(entry, key)| {
            let prior = priors.get(key);
            let earlier = seen_in_batch.entry(key.as_str()).or_insert(0);
            let seen = prior.map_or(0, |p| p.seen_before) + *earlier;
            *earlier += 1;
            let rarity = 1.0 / (1.0 + seen as f64).sqrt();
            let sev = severity_weight(&entry.severity);
            let s = (config.rarity_weight * rarity + (1.0 - config.rarity_weight) * sev)
                .clamp(0.0, 1.0);
            let is_anomaly = s >= config.threshold;
            EntryScore {
                id: entry.id,
                anomaly_score: (s * 1000.0).round() / 1000.0,
                is_anomaly,
                summary: summary(key, seen, &entry.severity, is_anomaly),
                template_id: prior.map(|p| p.id),
            }
        })
        .collect()
}

fn summary(template: &str, seen: i64, severity: &str, anomalous: bool) -> String {
    let shown: String = template.chars().take(120).collect();
    let pattern = if seen == 0 {
        format!("New message pattern '{shown}', never seen before")
    } else if seen < 5 {
        format!(
            "Rare message pattern '{shown}', seen {seen} time{} before",
            if seen == 1 { "" } else { "s" }
        )
    } else {
        format!("Common message pattern '{shown}', seen {seen} times before")
    };
    let verdict = if anomalous { "Anomaly" } else { "Normal" };
    format!("{verdict}: {pattern}; severity {severity}.")
}

/// Entries with the newest timestamp last, as the scorer expects.
pub fn in_time_order(mut entries: Vec<LogEntry>) -> Vec<LogEntry> {
    entries.sort_by_key(|e| (e.logged_at, e.id));
    entries
}

/// True for an anomaly the notifier must hear about at once.
pub fn is_critical(severity: &str, score: &EntryScore) -> bool {
    score.is_anomaly && matches!(severity, "ERROR" | "CRITICAL")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn entry(id: i64, severity: &str, message: &str) -> LogEntry {
        LogEntry {
            id,
            received_at: Utc::now(),
            logged_at: Utc::now(),
            severity: severity.into(),
            message: message.into(),
            source: None,
            analysis_task_id: None,
            anomaly_score: None,
            is_anomaly: None,
            summary: None,
            template_id: None,
            analyzed_at: None,
        }
    }

    #[test]
    fn a_new_error_is_anomalous_and_its_repeats_are_not() {
        let entries: Vec<LogEntry> = (0..20)
            .map(|i| {
                entry(
                    i,
                    "ERROR",
                    &format!("Disk /dev/sda{i} failed after {i} retries"),
                )
            })
            .collect();
        let batch = mask_batch(&entries);
        assert_eq!(
            batch.observations.len(),
            1,
            "one template for all twenty lines"
        );
        let scores = score(
            &entries,
            &batch.keys,
            &HashMap::new(),
            &ScoringConfig::default(),
        );
        assert!(scores[0].is_anomaly, "{:?}", scores[0]);
        assert!(scores[0].summary.contains("New message pattern"));
        assert!(!scores[19].is_anomaly, "{:?}", scores[19]);
        assert!(scores[19].anomaly_score < scores[0].anomaly_score);
    }

    #[test]
    fn severity_matters() {
        let entries = vec![
            entry(1, "INFO", "User alice logged in"),
            entry(2, "CRITICAL", "Kernel panic: not syncing"),
        ];
        let batch = mask_batch(&entries);
        let scores = score(
            &entries,
            &batch.keys,
            &HashMap::new(),
            &ScoringConfig::default(),
        );
        assert!(!scores[0].is_anomaly);
        assert!(scores[1].is_anomaly);
        assert!(scores[1].anomaly_score > scores[0].anomaly_score);
    }

    #[test]
    fn known_templates_score_low() {
        let entries = vec![entry(1, "ERROR", "Connection to 10.0.0.1 closed")];
        let batch = mask_batch(&entries);
        let priors = HashMap::from([(
            batch.keys[0].clone(),
            Prior {
                id: 7,
                seen_before: 500,
            },
        )]);
        let scores = score(&entries, &batch.keys, &priors, &ScoringConfig::default());
        assert!(!scores[0].is_anomaly);
        assert_eq!(scores[0].template_id, Some(7));
        assert!(scores[0].summary.contains("seen 500 times"));
    }
}
