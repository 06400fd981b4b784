//! The anomaly eval: replay a labelled JSONL file through the scorer and count.
//!
//! Input: a labelled JSONL file, read by [`read_jsonl`] (the format is in [`input`]'s
//! docs). Lines are replayed in timestamp order (ties keep file order) through
//! [`Scorer::score_batch`], with the scorer's defaults (a fresh install).
//!
//! Labels never reach the detector except through the simulated operator: with a feedback
//! budget of `n`, the operator answers the top template of the review queue
//! ([`crate::review`], the ranking of `GET /api/review/`) after the batches, one answer per
//! template, with the budget spread evenly over the replay ([`answers_allowed`]: by the
//! end of batch `b` of `B`, `ceil(n x b / B)` answers in all), as an operator who looks at
//! the queue from time to time rather than spending every answer on the first lines; a
//! budget larger than the batches gives several answers after a batch. The queue is built
//! from what has arrived so
//! far, with the inputs `GET /api/review/` has: each template's recent lines (those since
//! the operator last looked, at least the endpoint's default day, [`REVIEW_WINDOW_MS`], and
//! at most its 720 hours, [`REVIEW_MAX_WINDOW_MS`]: `?hours=` set to the time since the
//! last look), their mean score at arrival and their most severe level, and whether the
//! detector has learned it as normal. The answer is the
//! majority true label of the template's lines so far: an answer never uses a line from
//! the future. It goes to [`Scorer::set_label_up_to`] with the most severe level among the
//! template's lines of the last day ([`RESCORE_WINDOW_MS`]; of its latest lines without
//! any; as the feedback endpoint stores it), and, as the feedback endpoint does, the template's latest
//! [`RESCORE_MAX_LINES`] lines, whatever their age, take the label's verdict (a normal one
//! only at the levels it covers).
//!
//! When a template is learned as normal, those of its latest [`RESCORE_MAX_LINES`] lines
//! that the level alone flagged, outside burst windows, are cleared as the scoring workers re-score stored
//! entries ([`crate::scorer::relearn`]).
//!
//! Two figures come out: the verdicts as stored at the end (what the API shows, re-scored
//! lines included: `precision`, `recall`, `f1`) and the verdicts as first given, when each
//! line arrived (`*_at_arrival`, what alerts went out on). They differ by the re-scoring
//! of answers and of learning.
//!
//! Two baselines run through the same reading and arithmetic: [`Baseline::Severity`] flags
//! ERROR and above; [`Baseline::NewTemplate`] flags the first occurrence of every template
//! the miner creates once the same warm-up as the scorer's is over.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use serde::Serialize;

use crate::drain::{TemplateChange, TemplateId, TemplateMiner};
use crate::scorer::relearn::{self, RESCORE_MAX_LINES};
use crate::scorer::{
    Label, LogLine, Score, ScoreError, Scorer, ScorerConfig, Severity, TextEmbedder,
};

pub mod input;

pub use input::{
    parse_jsonl, parse_rfc3339_ms, parse_timestamp_ms, read_jsonl, LabelledRecord, SECONDS_BELOW,
};

/// Errors from reading or replaying a labelled file.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("line {line}: {reason}")]
    Format { line: usize, reason: String },
    #[error(transparent)]
    Score(#[from] ScoreError),
}

/// Precision, recall and F1 from counts. Each is 0 when its denominator is 0.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Counts {
    pub lines: u64,
    pub anomalies: u64,
    pub flagged: u64,
    pub true_positives: u64,
}

impl Counts {
    pub fn add(&mut self, truth: Label, flagged: bool) {
        self.lines += 1;
        let anomaly = truth == Label::Anomaly;
        self.anomalies += u64::from(anomaly);
        self.flagged += u64::from(flagged);
        self.true_positives += u64::from(anomaly && flagged);
    }

    pub fn precision(&self) -> f64 {
        ratio(self.true_positives, self.flagged)
    }

    pub fn recall(&self) -> f64 {
        ratio(self.true_positives, self.anomalies)
    }

    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// The eval's result; [`Report::to_json`] is the line `make eval` prints last.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub counts: Counts,
    pub feedback_used: u64,
    pub lines_per_second: f64,
    /// Verdicts as given when each line arrived (before any re-scoring).
    pub at_arrival: Counts,
    /// Lines whose template needed the model (first sightings); for diagnostics.
    pub model_calls: u64,
    pub templates: usize,
}

impl Report {
    pub fn to_json(&self) -> serde_json::Value {
        let round = |x: f64| (x * 10_000.0).round() / 10_000.0;
        serde_json::json!({
            "lines": self.counts.lines,
            "anomalies": self.counts.anomalies,
            "flagged": self.counts.flagged,
            "precision": round(self.counts.precision()),
            "recall": round(self.counts.recall()),
            "f1": round(self.counts.f1()),
            "feedback_used": self.feedback_used,
            "lines_per_second": self.lines_per_second.round(),
            "precision_at_arrival": round(self.at_arrival.precision()),
            "recall_at_arrival": round(self.at_arrival.recall()),
            "f1_at_arrival": round(self.at_arrival.f1()),
        })
    }
}

/// A comparison detector that needs no model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// Flag every line at ERROR or above.
    Severity,
    /// Flag the first line of every template created after the warm-up.
    NewTemplate,
}

impl std::str::FromStr for Baseline {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "severity" => Ok(Self::Severity),
            "new-template" | "new_template" => Ok(Self::NewTemplate),
            other => Err(format!(
                "unknown baseline {other:?} (severity|new-template)"
            )),
        }
    }
}

/// How to replay.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayOptions {
    /// Most answers the simulated operator gives, spread over the batches
    /// ([`answers_allowed`]).
    pub feedback: u64,
    /// Lines per `score_batch` call (what a worker takes off the queue at once).
    pub batch: usize,
    /// Print every line's verdict to stderr (diagnostics).
    pub trace: bool,
    /// The simulated operator answers only when the top of the review queue has at least
    /// this priority (an answer that would change few verdicts is not worth asking for).
    pub min_priority: f32,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            feedback: 0,
            batch: 64,
            trace: false,
            min_priority: MIN_PRIORITY,
        }
    }
}

/// Review priority below which the simulated operator is not asked (see
/// [`ReplayOptions::min_priority`]).
pub const MIN_PRIORITY: f32 = 0.0;

/// Lines of a template the review queue counts: those of the last day of log time, the
/// default of `GET /api/review/`.
pub const REVIEW_WINDOW_MS: i64 = 24 * 3_600_000;

/// The longest window `GET /api/review/` counts lines over (`hours=720`).
pub const REVIEW_MAX_WINDOW_MS: i64 = 720 * 3_600_000;

/// The lines whose levels a `normal` answer covers: the template's lines of the last 24
/// hours, or its latest [`RESCORE_MAX_LINES`] without any (as the feedback endpoint stores
/// `label_max_level`). The answer re-scores the
/// template's latest [`RESCORE_MAX_LINES`] lines, whatever their age, as learning does.
pub const RESCORE_WINDOW_MS: i64 = 24 * 3_600_000;

/// What the simulated operator knows of one template: only lines that have arrived.
#[derive(Default)]
struct Seen {
    /// Its lines within the review window, oldest first.
    recent: VecDeque<RecentLine>,
    /// Its latest [`RESCORE_MAX_LINES`] lines, oldest first: what an answer re-scores.
    latest: VecDeque<usize>,
    anomalies: u64,
    normals: u64,
    /// The batch its first line came in (counted from 0): the product makes template rows
    /// per batch, so the queue's last tie-break (the oldest row) goes by it.
    first_batch: usize,
}

/// One line of a template within the review window.
struct RecentLine {
    timestamp_ms: i64,
    /// Its index in the replayed records.
    index: usize,
    /// Its score when it arrived (a label re-scores the verdict, not the stored score).
    score: f32,
    /// Its level's weight.
    level: f32,
    /// Its prior score (the review queue ranks a learned-normal template by it).
    prior: f32,
}

impl Seen {
    /// The review queue's input, as `GET /api/review/` aggregates it from stored lines:
    /// recent lines, their mean score, the weight of their most severe level. `None`
    /// without recent lines (the template is not in the window).
    fn review_input(&self, learned_normal: bool) -> Option<crate::review::ReviewInput> {
        if self.recent.is_empty() {
            return None;
        }
        #[allow(clippy::cast_precision_loss)] // a day's lines of one template
        let lines = self.recent.len() as f32;
        Some(crate::review::ReviewInput {
            score: self.recent.iter().map(|l| l.score).sum::<f32>() / lines,
            prior: self.recent.iter().map(|l| l.prior).sum::<f32>() / lines,
            lines: self.recent.len() as u64,
            severity: self.recent.iter().map(|l| l.level).fold(0.0, f32::max),
            learned_normal,
        })
    }
}

/// The replay's side of [`crate::scorer::relearn`]: keeps each template's latest
/// [`RESCORE_MAX_LINES`] lines and, on the line its template is learned as normal on,
/// clears the verdicts of those the level alone flagged (when that level was steady; of
/// any level for a continuous stream) outside burst windows (the SQL the scoring workers
/// run on stored entries does the same).
struct Relearn {
    config: ScorerConfig,
    window_ms: i64,
    levels: Vec<Severity>,
    lines: HashMap<TemplateId, VecDeque<(i64, usize, Severity)>>,
}

impl Relearn {
    fn new(config: &ScorerConfig) -> Self {
        Self {
            config: config.clone(),
            window_ms: config.presence_window_ms.max(1),
            levels: relearn::levels_flagged_alone(config),
            lines: HashMap::new(),
        }
    }

    fn push(&mut self, score: &Score, line: &LogLine, index: usize, verdicts: &mut [bool]) {
        let now = line.timestamp_ms;
        let lines = self.lines.entry(score.template_id.clone()).or_default();
        lines.push_back((now, index, line.severity));
        while lines.len() > RESCORE_MAX_LINES {
            lines.pop_front();
        }
        if !score.newly_learned_normal {
            return;
        }
        let mut per_window: HashMap<i64, u64> = HashMap::new();
        for &(t, _, _) in lines.iter() {
            *per_window.entry(t.div_euclid(self.window_ms)).or_default() += 1;
        }
        let plan = relearn::plan(&per_window, score.lifetime);
        let level_times: Vec<i64> = lines
            .iter()
            .filter(|(_, _, sev)| self.levels.contains(sev))
            .map(|&(t, _, _)| t)
            .collect();
        let level_steady = relearn::level_is_steady(&level_times, &self.config);
        for &(t, i, severity) in lines.iter() {
            if (plan.any_level || (level_steady && self.levels.contains(&severity)))
                && plan.windows.contains(&t.div_euclid(self.window_ms))
            {
                verdicts[i] = false;
            }
        }
    }
}

/// The simulated operator of `FEEDBACK=n`: it sees each template's lines as they arrive
/// and, after each batch, answers the top of the review queue (ranked as `GET
/// /api/review/` ranks it) with the majority label of the template's lines so far, once
/// per template.
#[derive(Default)]
struct Operator {
    seen: HashMap<TemplateId, Seen>,
    answered: HashSet<TemplateId>,
    used: u64,
    /// When (log time) the operator last looked at the queue: at first, the first line.
    last_look_ms: Option<i64>,
}

impl Operator {
    /// Notes one scored line, the `index`-th of the replay, in batch `batch`.
    fn observe(&mut self, record: &LabelledRecord, score: &Score, index: usize, batch: usize) {
        let entry = self
            .seen
            .entry(score.template_id.clone())
            .or_insert_with(|| Seen {
                first_batch: batch,
                ..Seen::default()
            });
        entry.recent.push_back(RecentLine {
            timestamp_ms: record.line.timestamp_ms,
            index,
            score: score.score,
            level: record.line.severity.weight(),
            prior: score.prior,
        });
        if entry.latest.len() == RESCORE_MAX_LINES {
            entry.latest.pop_front();
        }
        entry.latest.push_back(index);
        match record.label {
            Label::Anomaly => entry.anomalies += 1,
            Label::Normal => entry.normals += 1,
        }
    }

    /// Opens the review queue at `now` (the latest line's time): the operator reads it over
    /// the time since they last looked, at least the endpoint's default day and at most
    /// its 720 hours (`GET /api/review/?hours=`), so that someone who looks every few days
    /// at a quiet source sees what came in since. Lines before the window are forgotten:
    /// a later look's window never starts earlier.
    fn look(&mut self, now: i64) {
        let since_last = self.last_look_ms.map_or(0, |t| now.saturating_sub(t));
        let window = since_last.clamp(REVIEW_WINDOW_MS, REVIEW_MAX_WINDOW_MS);
        self.last_look_ms = Some(now);
        for s in self.seen.values_mut() {
            while s
                .recent
                .front()
                .is_some_and(|l| now.saturating_sub(l.timestamp_ms) > window)
            {
                s.recent.pop_front();
            }
        }
    }

    /// Answers the top question of the queue as [`Operator::look`] last opened it, at `now`,
    /// if one reaches `options.min_priority`: labels its template in `scorer` and
    /// re-scores its latest [`RESCORE_MAX_LINES`] lines in `verdicts`. Whether there was a
    /// question to answer.
    fn answer<E: TextEmbedder>(
        &mut self,
        scorer: &mut Scorer<E>,
        records: &[LabelledRecord],
        verdicts: &mut [bool],
        now: i64,
        options: &ReplayOptions,
    ) -> bool {
        let threshold = scorer.config().threshold;
        let top = scorer
            .review_candidates()
            .into_iter()
            .filter(|(id, _)| !self.answered.contains(id))
            .filter_map(|(id, learned_normal)| {
                let seen = self.seen.get(&id)?;
                let input = seen.review_input(learned_normal)?;
                Some(Question {
                    priority: crate::review::priority(&input, threshold),
                    lines: input.lines,
                    first_batch: seen.first_batch,
                    id,
                })
            })
            .min_by(asked_first)
            .map(|q| (q.priority, q.id));
        let Some((priority, id)) = top.filter(|(p, _)| *p >= options.min_priority) else {
            return false;
        };
        let Some(s) = self.seen.get(&id) else {
            return false;
        };
        let label = if s.anomalies > s.normals {
            Label::Anomaly
        } else {
            Label::Normal
        };
        // As the feedback endpoint does (`db::templates::recent_max_level` and
        // `rescore_latest`): a normal answer covers the levels the template's lines of the
        // last [`RESCORE_WINDOW_MS`] had come at (those of its latest lines without any: the
        // queue may have shown older ones), and the template's latest [`RESCORE_MAX_LINES`] lines
        // take the label's verdict, a normal one only at the levels it covers.
        let seen_level = s
            .recent
            .iter()
            .filter(|l| now.saturating_sub(l.timestamp_ms) <= RESCORE_WINDOW_MS)
            .map(|l| records[l.index].line.severity)
            .max()
            .or_else(|| s.latest.iter().map(|&i| records[i].line.severity).max())
            .unwrap_or(Severity::Critical);
        scorer.set_label_up_to(&id, label, seen_level);
        for &i in &s.latest {
            if label == Label::Anomaly || records[i].line.severity <= seen_level {
                verdicts[i] = label == Label::Anomaly;
            }
        }
        if options.trace {
            eprintln!(
                "OPERATOR {label:?} (priority {priority:.2}, {} lines in the window) on {}",
                s.recent.len(),
                scorer.template_text(&id)
            );
        }
        self.answered.insert(id);
        self.used += 1;
        true
    }
}

/// One question of the simulated operator's review queue.
struct Question {
    priority: f32,
    /// The template's lines in the window.
    lines: u64,
    /// The batch its first line came in.
    first_batch: usize,
    id: TemplateId,
}

/// The queue's order, as `GET /api/review/` sorts it: highest priority first, then most
/// lines in the window, then the oldest template row (the product makes rows per batch,
/// in template key order). `Less`: `a` is asked first.
fn asked_first(a: &Question, b: &Question) -> std::cmp::Ordering {
    b.priority
        .total_cmp(&a.priority)
        .then(b.lines.cmp(&a.lines))
        .then_with(|| (a.first_batch, &a.id).cmp(&(b.first_batch, &b.id)))
}

/// How many answers the operator may have given in all by the end of batch `batch`
/// (counted from 1) of `batches`, with a budget of `budget`: `ceil(budget x batch /
/// batches)`, the budget spread evenly, the whole of it by the last batch.
pub fn answers_allowed(budget: u64, batch: usize, batches: usize) -> u64 {
    let (batch, batches) = (batch as u64, batches.max(1) as u64);
    budget.saturating_mul(batch.min(batches)).div_ceil(batches)
}

/// One `--trace` line: truth, verdict, score and its parts, level, what decided, template
/// and summary.
fn trace_line(record: &LabelledRecord, score: &Score) {
    eprintln!(
        "{} {} {:.3} nov={:.2} sev={:.2} {} {:?} {} | {}",
        match record.label {
            Label::Anomaly => "A",
            Label::Normal => "n",
        },
        if score.is_anomaly { "FLAG" } else { "    " },
        score.score,
        score.novelty,
        score.severity,
        record.line.severity.as_str(),
        score.decided_by,
        score.template,
        score.summary,
    );
}

/// Replay `records` (already in timestamp order) through `scorer`, playing the operator.
pub fn replay<E: TextEmbedder>(
    scorer: &mut Scorer<E>,
    records: &[LabelledRecord],
    options: &ReplayOptions,
) -> Result<Report, ReplayError> {
    let started = Instant::now();
    let mut at_arrival = Counts::default();
    let mut verdicts: Vec<bool> = Vec::with_capacity(records.len());
    // With --trace: each line's template, for the final verdicts' listing.
    let mut templates: Vec<String> = Vec::new();
    let mut operator = Operator {
        last_look_ms: records.first().map(|r| r.line.timestamp_ms),
        ..Operator::default()
    };
    let mut offset = 0usize;
    // Each template's latest lines (time, index, level), for the re-scoring
    // that learning it as normal does (`scorer::relearn`).
    let mut relearn = Relearn::new(scorer.config());
    let batches = records.len().div_ceil(options.batch.max(1));
    for (b, chunk) in records.chunks(options.batch.max(1)).enumerate() {
        let lines: Vec<LogLine> = chunk.iter().map(|r| r.line.clone()).collect();
        let scores = scorer.score_batch(&lines)?;
        for (k, (record, score)) in chunk.iter().zip(&scores).enumerate() {
            at_arrival.add(record.label, score.is_anomaly);
            verdicts.push(score.is_anomaly);
            relearn.push(score, &record.line, offset + k, &mut verdicts);
            operator.observe(record, score, offset + k, b);
            if options.trace {
                templates.push(score.template.clone());
                trace_line(record, score);
            }
        }
        offset += chunk.len();
        let allowed = answers_allowed(options.feedback, b + 1, batches);
        let now = chunk.last().map_or(0, |r| r.line.timestamp_ms);
        if operator.used < allowed {
            operator.look(now);
        }
        while operator.used < allowed
            && operator.answer(scorer, records, &mut verdicts, now, options)
        {}
    }
    let mut counts = Counts::default();
    for (i, (record, &flagged)) in records.iter().zip(&verdicts).enumerate() {
        counts.add(record.label, flagged);
        if options.trace && (record.label == Label::Anomaly) != flagged {
            let kind = if flagged { "FALSE-POSITIVE" } else { "MISSED" };
            eprintln!(
                "FINAL {kind} {}",
                templates.get(i).map_or("", String::as_str)
            );
        }
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    Ok(Report {
        counts,
        feedback_used: operator.used,
        lines_per_second: records.len() as f64 / elapsed,
        at_arrival,
        model_calls: scorer.model_calls(),
        templates: scorer.templates(),
    })
}

/// Run a baseline over `records` with the defaults of `config` (its warm-up and miner).
pub fn replay_baseline(
    baseline: Baseline,
    config: &ScorerConfig,
    records: &[LabelledRecord],
) -> Report {
    let started = Instant::now();
    let mut counts = Counts::default();
    let mut miner = TemplateMiner::new(config.miner.clone());
    for (i, record) in records.iter().enumerate() {
        let flagged = match baseline {
            Baseline::Severity => record.line.severity >= Severity::Error,
            Baseline::NewTemplate => {
                let mined = miner.mine(&record.line.message);
                mined.change == TemplateChange::Created && i as u64 >= config.warmup_lines
            }
        };
        counts.add(record.label, flagged);
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    Report {
        counts,
        at_arrival: counts,
        feedback_used: 0,
        lines_per_second: records.len() as f64 / elapsed,
        model_calls: 0,
        templates: miner.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorer::{BagOfWords, DecidedBy};

    fn record(t: i64, severity: &str, message: &str, label: Label) -> LabelledRecord {
        LabelledRecord {
            line: LogLine {
                timestamp_ms: t,
                severity: Severity::parse(severity),
                message: message.into(),
                source: None,
            },
            label,
        }
    }

    /// Replays `recs` through a fresh scorer (the defaults but `warmup_lines`) with a
    /// budget of `feedback` answers over batches of `batch` lines.
    fn replay_fresh(
        recs: &[LabelledRecord],
        warmup_lines: u64,
        feedback: u64,
        batch: usize,
    ) -> (Scorer<BagOfWords>, Report) {
        let config = ScorerConfig {
            warmup_lines,
            ..ScorerConfig::default()
        };
        let mut s = Scorer::new(config, BagOfWords);
        let opts = ReplayOptions {
            feedback,
            batch,
            ..ReplayOptions::default()
        };
        let r = replay(&mut s, recs, &opts).unwrap();
        (s, r)
    }

    #[test]
    fn precision_recall_f1_by_hand() {
        // 10 lines, 4 anomalies; 5 flagged of which 3 are anomalies.
        let mut c = Counts::default();
        let truth = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0];
        let flags = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0];
        for (t, f) in truth.iter().zip(flags) {
            let label = if *t == 1 {
                Label::Anomaly
            } else {
                Label::Normal
            };
            c.add(label, f == 1);
        }
        assert_eq!(
            (c.lines, c.anomalies, c.flagged, c.true_positives),
            (10, 4, 5, 3)
        );
        assert!((c.precision() - 0.6).abs() < 1e-12);
        assert!((c.recall() - 0.75).abs() < 1e-12);
        // 2PR/(P+R) = 0.9/1.35.
        assert!((c.f1() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(Counts::default().f1(), 0.0);
        assert_eq!(Counts::default().precision(), 0.0);
    }

    #[test]
    fn the_operator_ranks_with_the_inputs_of_the_review_endpoint() {
        // GET /api/review/ aggregates a template's lines of the window: their count, mean
        // score and most severe level. The simulated operator counts the same.
        let mut seen = Seen::default();
        assert_eq!(seen.review_input(false), None);
        for (i, (score, level)) in [(0.7, Severity::Critical), (0.3, Severity::Info)]
            .into_iter()
            .enumerate()
        {
            seen.recent.push_back(RecentLine {
                timestamp_ms: i as i64,
                index: i,
                score,
                level: level.weight(),
                prior: score,
            });
        }
        let input = seen.review_input(true).unwrap();
        assert_eq!(input.lines, 2);
        assert!((input.score - 0.5).abs() < 1e-6);
        assert!((input.severity - 1.0).abs() < 1e-6);
        assert!(input.learned_normal);
    }

    #[test]
    fn the_operators_queue_breaks_ties_as_the_review_endpoint_does() {
        let q = |priority: f32, lines: u64, first_batch: usize, id: &str| Question {
            priority,
            lines,
            first_batch,
            id: TemplateId(id.into()),
        };
        let mut queue = [
            q(0.5, 3, 0, "b"),
            q(0.5, 3, 0, "a"),
            q(0.9, 1, 5, "z"),
            q(0.5, 3, 1, "0"),
            q(0.5, 7, 2, "y"),
        ];
        queue.sort_by(asked_first);
        let order: Vec<&str> = queue.iter().map(|q| q.id.0.as_str()).collect();
        // Highest priority; then most lines; then the row made first: an earlier batch,
        // then within a batch the template key.
        assert_eq!(order, ["z", "y", "a", "b", "0"]);
    }

    #[test]
    fn baselines_count_through_the_same_arithmetic() {
        let config = ScorerConfig {
            warmup_lines: 2,
            ..ScorerConfig::default()
        };
        let recs = vec![
            record(1, "INFO", "worker 1 started", Label::Normal),
            record(2, "ERROR", "disk full on sda", Label::Normal),
            record(3, "INFO", "worker 2 started", Label::Normal),
            record(4, "INFO", "kernel panic now", Label::Anomaly),
            record(5, "ERROR", "kernel panic now", Label::Anomaly),
        ];
        let sev = replay_baseline(Baseline::Severity, &config, &recs);
        assert_eq!((sev.counts.flagged, sev.counts.true_positives), (2, 1));
        let new = replay_baseline(Baseline::NewTemplate, &config, &recs);
        // "disk full" is new but inside the warm-up; "kernel panic" is new after it.
        assert_eq!((new.counts.flagged, new.counts.true_positives), (1, 1));
        assert!((new.counts.recall() - 0.5).abs() < 1e-12);
    }

    fn stream() -> Vec<LabelledRecord> {
        let mut recs = Vec::new();
        let routine = [
            "session opened for user alice",
            "session closed for user alice",
            "GET /api/health 200",
            "cache refresh finished in 12 ms",
        ];
        let mut t = 0;
        for round in 0..40 {
            for m in routine {
                t += 1000;
                recs.push(record(
                    t,
                    "INFO",
                    &m.replace("alice", &format!("user{round}")),
                    Label::Normal,
                ));
            }
        }
        // Five distinct alarming messages, each twice, and a few new benign ones.
        for (i, m) in [
            "kernel panic not syncing fatal exception",
            "disk failure detected on array controller",
            "out of memory killer invoked on worker",
            "segmentation fault in storage daemon thread",
            "corrupted journal replay aborted mount",
        ]
        .iter()
        .enumerate()
        {
            for _ in 0..2 {
                t += 1000;
                recs.push(record(t, "ERROR", m, Label::Anomaly));
            }
            t += 1000;
            recs.push(record(
                t,
                "ERROR",
                &format!("minor retry {i} scheduled by planner"),
                Label::Normal,
            ));
        }
        recs
    }

    #[test]
    fn feedback_budget_is_respected_and_answers_once_per_template() {
        let recs = stream();
        let config = ScorerConfig {
            warmup_lines: 50,
            ..ScorerConfig::default()
        };
        let mut free = Scorer::new(config.clone(), BagOfWords);
        let none = replay(&mut free, &recs, &ReplayOptions::default()).unwrap();
        assert_eq!(none.feedback_used, 0);
        assert_eq!(none.counts.lines, recs.len() as u64);
        assert_eq!(none.counts.anomalies, 10);
        assert!(none.counts.flagged >= 3, "{none:?}");

        for budget in [1, 2, 3] {
            let mut s = Scorer::new(config.clone(), BagOfWords);
            let opts = ReplayOptions {
                feedback: budget,
                batch: 1,
                ..ReplayOptions::default()
            };
            let r = replay(&mut s, &recs, &opts).unwrap();
            assert_eq!(r.feedback_used, budget, "{r:?}");
            assert_eq!(s.export().labels.len() as u64, budget);
        }
        // A huge budget is only used on flagged templates, once each.
        let mut s = Scorer::new(config, BagOfWords);
        let opts = ReplayOptions {
            feedback: 10_000,
            batch: 1,
            ..ReplayOptions::default()
        };
        let r = replay(&mut s, &recs, &opts).unwrap();
        assert!(r.feedback_used <= r.counts.flagged, "{r:?}");
        assert_eq!(s.export().labels.len() as u64, r.feedback_used);
    }

    #[test]
    fn the_answer_budget_is_spread_evenly_over_the_batches() {
        // By the end of batch b of B: ceil(n x b / B) answers in all.
        let spread: Vec<u64> = (1..=8).map(|b| answers_allowed(4, b, 8)).collect();
        assert_eq!(spread, vec![1, 1, 2, 2, 3, 3, 4, 4]);
        // Ten answers over 32 batches: the first after batch 1, the last by batch 32, never
        // more than one per batch.
        let allowed: Vec<u64> = (1..=32).map(|b| answers_allowed(10, b, 32)).collect();
        assert_eq!((allowed[0], allowed[31]), (1, 10));
        assert!(allowed.windows(2).all(|w| w[1] - w[0] <= 1), "{allowed:?}");
        // More answers than batches: several after a batch, all of them by the end.
        assert_eq!(answers_allowed(100, 1, 32), 4);
        assert_eq!(answers_allowed(100, 32, 32), 100);
        assert_eq!(answers_allowed(0, 5, 32), 0);
    }

    #[test]
    fn a_budget_larger_than_the_batches_is_used_in_full() {
        // Two batches, and more flagged templates than that: the operator answers several
        // after a batch instead of one per batch.
        let recs = stream();
        let (s, r) = replay_fresh(&recs, 50, 3, recs.len().div_ceil(2));
        assert_eq!(r.feedback_used, 3, "{r:?}");
        assert_eq!(s.export().labels.len(), 3);
    }

    #[test]
    fn the_simulated_operator_never_answers_with_a_label_from_the_future() {
        // One template: its first three lines are normal, the ten after them anomalous.
        // Answering after the first batch, the operator knows only the first line.
        let mut recs = Vec::new();
        for i in 0..13 {
            let label = if i < 3 { Label::Normal } else { Label::Anomaly };
            recs.push(record(
                i * 1000,
                "ERROR",
                "disk array degraded on node",
                label,
            ));
        }
        let (s, r) = replay_fresh(&recs, 0, 1, 1);
        assert_eq!(r.feedback_used, 1);
        let labels = s.export().labels;
        assert_eq!(
            labels.values().copied().collect::<Vec<_>>(),
            vec![Label::Normal]
        );
        // The answer made every later line normal: no true positive at all.
        assert_eq!(r.counts.true_positives, 0, "{r:?}");
    }

    #[test]
    fn an_operator_who_looks_rarely_reads_the_queue_since_the_last_look() {
        // A quiet source: a line every 6 hours. A failure arrives first, then a day and a
        // half of routine lines; the operator looks once, after all eight. The day's
        // window of `GET /api/review/` would hold only routine lines; reading everything
        // since the last look (here the start), the operator answers the failure, and a
        // later line of it follows the answer.
        let hour = 3_600_000;
        let mut recs = vec![record(
            0,
            "ERROR",
            "disk controller fault on shelf 3",
            Label::Anomaly,
        )];
        for k in 1..8 {
            recs.push(record(
                6 * hour * k,
                "INFO",
                "heartbeat from node",
                Label::Normal,
            ));
        }
        let (mut s, r) = replay_fresh(&recs, 0, 1, 8);
        assert_eq!(r.feedback_used, 1, "{r:?}");
        let later = s
            .score(&LogLine {
                timestamp_ms: 48 * hour,
                severity: Severity::Error,
                message: "disk controller fault on shelf 3".into(),
                source: None,
            })
            .unwrap();
        assert_eq!(later.decided_by, DecidedBy::Label, "{later:?}");
        assert!(later.is_anomaly, "{later:?}");
    }

    #[test]
    fn the_operators_window_is_the_time_since_the_last_look_within_the_endpoints_bounds() {
        let hour = 3_600_000;
        let mut op = Operator {
            last_look_ms: Some(0),
            ..Operator::default()
        };
        for (t, index) in [(0, 0), (30 * hour, 1), (70 * hour, 2)] {
            op.seen
                .entry(TemplateId(format!("t{index}")))
                .or_default()
                .recent
                .push_back(RecentLine {
                    timestamp_ms: t,
                    index,
                    score: 0.5,
                    level: 0.2,
                    prior: 0.5,
                });
        }
        let kept = |op: &Operator| {
            let mut ids: Vec<String> = op
                .seen
                .iter()
                .filter(|(_, s)| !s.recent.is_empty())
                .map(|(id, _)| id.0.clone())
                .collect();
            ids.sort();
            ids
        };
        // 72 hours since the last look: everything since then.
        op.look(72 * hour);
        assert_eq!(kept(&op), ["t0", "t1", "t2"]);
        // Two hours later: the endpoint's default day still holds the 70-hour line only.
        op.look(74 * hour);
        assert_eq!(kept(&op), ["t2"]);
        // Two months later: no more than the endpoint's 720 hours.
        op.seen
            .get_mut(&TemplateId("t2".into()))
            .unwrap()
            .recent
            .push_back(RecentLine {
                timestamp_ms: 74 * hour + 1,
                index: 3,
                score: 0.5,
                level: 0.2,
                prior: 0.5,
            });
        op.look(74 * hour + REVIEW_MAX_WINDOW_MS + 2);
        assert!(kept(&op).is_empty(), "{:?}", kept(&op));
    }

    #[test]
    fn an_answer_re_scores_the_templates_recent_lines() {
        // Routine lines, then a CRITICAL template that is really routine: flagged on
        // arrival, then answered normal, which re-scores its lines.
        let mut recs = Vec::new();
        let mut t = 0;
        for round in 0..30 {
            t += 1000;
            recs.push(record(
                t,
                "INFO",
                &format!("worker {round} started"),
                Label::Normal,
            ));
        }
        for _ in 0..5 {
            t += 1000;
            recs.push(record(
                t,
                "CRITICAL",
                "program load failed: user binary missing",
                Label::Normal,
            ));
        }
        let (_, r) = replay_fresh(&recs, 10, 5, 5);
        assert!(r.at_arrival.flagged >= 5, "{r:?}");
        assert_eq!(r.counts.flagged, 0, "{r:?}");
    }

    #[test]
    fn an_answer_re_scores_the_templates_lines_of_earlier_days_too() {
        // A quiet source: one line every 10 hours for 70 hours, answered "anomaly" after
        // the only batch. Every line follows the answer, not only those of the last day.
        let hour = 3_600_000;
        let recs: Vec<LabelledRecord> = (0..8)
            .map(|k| {
                record(
                    10 * k * hour,
                    "INFO",
                    "disk scrub found unreadable sectors",
                    Label::Anomaly,
                )
            })
            .collect();
        let (_, r) = replay_fresh(&recs, 0, 1, 64);
        assert_eq!(r.feedback_used, 1, "{r:?}");
        assert_eq!(r.counts.true_positives, 8, "{r:?}");
    }

    #[test]
    fn a_normal_answer_leaves_older_lines_above_the_levels_it_covers() {
        // Two CRITICAL lines on the first day, then the same message at INFO every 10
        // hours: the answer, "normal" from the last day's INFO lines, covers INFO only and
        // the older CRITICAL lines keep their flags.
        let hour = 3_600_000;
        let mut recs = vec![
            record(
                0,
                "CRITICAL",
                "disk scrub found unreadable sectors",
                Label::Anomaly,
            ),
            record(
                hour,
                "CRITICAL",
                "disk scrub found unreadable sectors",
                Label::Anomaly,
            ),
        ];
        for k in 2..8 {
            recs.push(record(
                10 * k * hour,
                "INFO",
                "disk scrub found unreadable sectors",
                Label::Normal,
            ));
        }
        let (_, r) = replay_fresh(&recs, 0, 1, 64);
        assert_eq!(r.feedback_used, 1, "{r:?}");
        assert_eq!(r.at_arrival.true_positives, 2, "{r:?}");
        assert_eq!(r.counts.true_positives, 2, "{r:?}");
        assert_eq!(r.counts.flagged, 2, "{r:?}");
    }

    #[test]
    fn learning_a_template_normal_clears_its_flagged_lines_of_earlier_days_too() {
        // A quiet source: a routine CRITICAL line every 15 hours. The first two are
        // flagged by their level; the third shows steady presence (three windows over an
        // hour), and the first, 30 hours old by then, is cleared with the second.
        let hour = 3_600_000;
        let recs: Vec<LabelledRecord> = (0..5)
            .map(|k| {
                record(
                    15 * k * hour,
                    "CRITICAL",
                    "node card power cycled by service controller",
                    Label::Normal,
                )
            })
            .collect();
        let (_, r) = replay_fresh(&recs, 0, 0, 1);
        assert_eq!(r.at_arrival.flagged, 2, "{r:?}");
        assert_eq!(r.counts.flagged, 0, "{r:?}");
    }

    #[test]
    fn learning_a_template_normal_clears_its_lines_flagged_by_level_alone_but_not_a_burst() {
        // A CRITICAL pattern every 20 minutes for five hours, with a burst of six of its
        // lines at 52 minutes, and an INFO pattern that reads like a failure beside it.
        // Learned normal at its 100-minute line: the five steady lines before it were
        // flagged by their level and are cleared; the burst window keeps its flags.
        let minute = 60_000;
        let mut recs = Vec::new();
        for k in 0..16 {
            let t = 20 * k * minute;
            recs.push(record(
                t,
                "CRITICAL",
                "node card power cycled by service controller",
                Label::Normal,
            ));
            recs.push(record(
                t + 1000,
                "INFO",
                "connection refused by peer retry scheduled",
                Label::Normal,
            ));
        }
        for k in 0..6 {
            recs.push(record(
                52 * minute + k * 10_000,
                "CRITICAL",
                "node card power cycled by service controller",
                Label::Anomaly,
            ));
        }
        recs.sort_by_key(|r| r.line.timestamp_ms);
        let (_, r) = replay_fresh(&recs, 0, 0, 4);
        // At arrival: the five steady lines before learning and the burst were flagged.
        assert!(r.at_arrival.true_positives == 6, "{r:?}");
        assert!(r.at_arrival.flagged >= 11, "{r:?}");
        // At the end: the burst only (the INFO lines were never flagged by level alone,
        // so whatever they got stays, and they are not CRITICAL anyway).
        assert_eq!(r.counts.true_positives, 6, "{r:?}");
        assert_eq!(
            r.counts.flagged,
            r.at_arrival.flagged - 5,
            "the five steady CRITICAL lines are cleared, nothing else: {r:?}"
        );
    }
}
