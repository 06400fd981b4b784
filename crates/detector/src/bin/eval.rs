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
                     [--meaning-severity-max X]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
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
            "--meaning-severity-max" => {
                let v = value("--meaning-severity-max")?;
                config.meaning_severity_max = v
                    .parse()
                    .map_err(|_| format!("bad --meaning-severity-max {v:?}"))?;
            }
            "--baseline" => baseline = Some(value("--baseline")?.parse()?),
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
