//! `logcanary-eval INPUT.jsonl [--feedback N] [--baseline severity|new-template] [--batch N]`
//!
//! Replays a labelled JSONL file through the detector with a fresh install's defaults and
//! prints, as its last line, one JSON object:
//! `{"lines","anomalies","flagged","precision","recall","f1","feedback_used","lines_per_second"}`.
//! Diagnostics go to stderr. See `logcanary_detector::replay` for the rules.

use std::path::PathBuf;
use std::process::ExitCode;

use logcanary_detector::embedder::{Embedder, EmbedderConfig};
use logcanary_detector::replay::{read_jsonl, replay, replay_baseline, Baseline, ReplayOptions};
use logcanary_detector::scorer::{Scorer, ScorerConfig};

const USAGE: &str = "usage: logcanary-eval INPUT.jsonl [--feedback N] \
                     [--baseline severity|new-template] [--batch N] [--trace] \
                     [--meaning-severity-max X] [--set FIELD=VALUE ...]\n\
                     --set changes any ScorerConfig field (e.g. --set normal_after_windows=4), \
                     for sweeps; fresh-install defaults otherwise";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `FIELD=VALUE` on the serde form of the config (VALUE is JSON, e.g. `0.5` or `true`).
fn set_field(config: &ScorerConfig, assignment: &str) -> Result<ScorerConfig, String> {
    let (field, raw) = assignment
        .split_once('=')
        .ok_or_else(|| format!("--set wants FIELD=VALUE, got {assignment:?}"))?;
    let mut value = serde_json::to_value(config).map_err(|e| e.to_string())?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| "config is not an object".to_string())?;
    if !object.contains_key(field) {
        return Err(format!("no config field {field:?}"));
    }
    let parsed: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| format!("--set {field}: {e}"))?;
    object.insert(field.to_string(), parsed);
    serde_json::from_value(value).map_err(|e| format!("--set {field}: {e}"))
}

fn run() -> Result<(), String> {
    let mut input: Option<PathBuf> = None;
    let mut options = ReplayOptions::default();
    let mut baseline: Option<Baseline> = None;
    let mut config = ScorerConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value; {USAGE}"))
        };
        match arg.as_str() {
            "--feedback" => {
                let v = value("--feedback")?;
                // An empty FEEDBACK= from make means none.
                options.feedback = if v.is_empty() {
                    0
                } else {
                    v.parse().map_err(|_| format!("bad --feedback {v:?}"))?
                };
            }
            "--batch" => {
                let v = value("--batch")?;
                options.batch = v.parse().map_err(|_| format!("bad --batch {v:?}"))?;
            }
            "--trace" => options.trace = true,
            "--min-priority" => {
                let v = value("--min-priority")?;
                options.min_priority =
                    v.parse().map_err(|_| format!("bad --min-priority {v:?}"))?;
            }
            "--meaning-severity-max" => {
                let v = value("--meaning-severity-max")?;
                config.meaning_severity_max = v
                    .parse()
                    .map_err(|_| format!("bad --meaning-severity-max {v:?}"))?;
            }
            "--baseline" => baseline = Some(value("--baseline")?.parse()?),
            "--set" => {
                let v = value("--set")?;
                config = set_field(&config, &v)?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other if input.is_none() && !other.starts_with("--") => {
                input = Some(PathBuf::from(other));
            }
            other => return Err(format!("unexpected argument {other:?}; {USAGE}")),
        }
    }
    let input = input.ok_or_else(|| USAGE.to_string())?;
    let records = read_jsonl(&input).map_err(|e| format!("{}: {e}", input.display()))?;
    // The pace decides what can be learned as normal (an hour of presence): say it, so a
    // file whose times were read on the wrong scale shows at once.
    if let (Some(first), Some(last)) = (records.first(), records.last()) {
        #[allow(clippy::cast_precision_loss)] // a span of log time, shown in hours
        let hours = (last.line.timestamp_ms - first.line.timestamp_ms) as f64 / 3_600_000.0;
        eprintln!(
            "{} lines spanning {hours:.2} hours of log time",
            records.len()
        );
    }

    let report = match baseline {
        Some(b) => {
            eprintln!("baseline {b:?} over {} lines", records.len());
            replay_baseline(b, &config, &records)
        }
        None => {
            let embedder =
                Embedder::start(EmbedderConfig::from_env()).map_err(|e| e.to_string())?;
            let mut scorer = Scorer::new(config, embedder);
            let report = replay(&mut scorer, &records, &options).map_err(|e| e.to_string())?;
            eprintln!(
                "templates {}, lines that needed the model {} ({:.2}%), model calls {}",
                report.templates,
                scorer.lines_needing_model(),
                100.0 * scorer.lines_needing_model() as f64 / records.len().max(1) as f64,
                report.model_calls,
            );
            report
        }
    };
    println!("{}", report.to_json());
    Ok(())
}
