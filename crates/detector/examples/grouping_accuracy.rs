//! Prints template-mining grouping accuracy per Loghub-2.0 system and the average.
//!
//! `cargo run -p logcanary-detector --release --example grouping_accuracy [LOGHUB_DIR]`
//!
//! LOGHUB_DIR defaults to `../shared/data/loghub` relative to the repository root. With
//! `--worst N` it also prints, per system, the N largest wrongly grouped true events. With
//! `--raw-lines` it mines each sample's raw lines (`<System>_2k.log`, header and all, as a
//! shipper that does not parse lines sends them) against the same ground truth.

use std::path::PathBuf;
use std::process::ExitCode;

use logcanary_detector::drain::MinerConfig;
use logcanary_detector::eval::{
    loghub_structured_path, mining_accuracy, read_loghub_structured, EvalError, LabelledLine,
    LOGHUB_SYSTEMS,
};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/loghub");
    let mut threshold = None;
    let mut worst = 0usize;
    let mut raw_lines = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--raw-lines" => raw_lines = true,
            "--threshold" => threshold = args.next().and_then(|v| v.parse().ok()),
            "--worst" => worst = args.next().and_then(|v| v.parse().ok()).unwrap_or(5),
            other => dir = PathBuf::from(other),
        }
    }
    let mut config = MinerConfig::default();
    if let Some(t) = threshold {
        config.similarity_threshold = t;
    }
    println!("{:<12} {:>6} {:>9}", "system", "lines", "accuracy");
    let mut total = 0.0;
    for system in LOGHUB_SYSTEMS {
        let path = loghub_structured_path(&dir, system);
        let read = read_loghub_structured(&path).and_then(|lines| {
            if raw_lines {
                with_raw_lines(&dir, system, lines)
            } else {
                Ok(lines)
            }
        });
        let lines = match read {
            Ok(lines) => lines,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let accuracy = mining_accuracy(&lines, &config);
        total += accuracy;
        println!("{:<12} {:>6} {:>9.4}", system, lines.len(), accuracy);
        if worst > 0 {
            print_worst(&lines, &config, worst);
        }
    }
    println!(
        "{:<12} {:>6} {:>9.4}",
        "average",
        "",
        total / LOGHUB_SYSTEMS.len() as f64
    );
    ExitCode::SUCCESS
}

/// `lines` with each one's raw line in place of its `Content` (the raw file and the
/// structured one list the same lines in the same order).
fn with_raw_lines(
    dir: &std::path::Path,
    system: &str,
    mut lines: Vec<LabelledLine>,
) -> Result<Vec<LabelledLine>, EvalError> {
    let path = dir.join(system).join(format!("{system}_2k.log"));
    let bytes = std::fs::read(&path).map_err(|source| EvalError::Read {
        path: path.clone(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let raw: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    if raw.len() != lines.len() {
        return Err(EvalError::Format {
            path,
            reason: format!(
                "{} raw lines for {} structured rows",
                raw.len(),
                lines.len()
            ),
        });
    }
    for (line, raw) in lines.iter_mut().zip(raw) {
        line.content = raw.to_owned();
    }
    Ok(lines)
}

/// Diagnostics: the largest true events whose lines were not grouped exactly, with the
/// mined templates they ended up in.
fn print_worst(lines: &[logcanary_detector::eval::LabelledLine], config: &MinerConfig, n: usize) {
    use std::collections::{BTreeMap, BTreeSet};
    let mut miner = logcanary_detector::drain::TemplateMiner::new(config.clone());
    let ids: Vec<_> = lines
        .iter()
        .map(|l| miner.mine(&l.content).template_id)
        .collect();
    let mut by_event: BTreeMap<&str, BTreeSet<&logcanary_detector::drain::TemplateId>> =
        BTreeMap::new();
    let mut by_template: BTreeMap<_, BTreeSet<&str>> = BTreeMap::new();
    let mut sizes: BTreeMap<&str, usize> = BTreeMap::new();
    for (l, id) in lines.iter().zip(&ids) {
        by_event.entry(&l.event_id).or_default().insert(id);
        by_template.entry(id).or_default().insert(&l.event_id);
        *sizes.entry(&l.event_id).or_default() += 1;
    }
    let mut bad: Vec<_> = by_event
        .iter()
        .filter(|(_, t)| t.len() > 1 || t.iter().any(|id| by_template[id].len() > 1))
        .map(|(e, t)| (sizes[e], *e, t))
        .collect();
    bad.sort_by_key(|b| std::cmp::Reverse(b.0));
    for (size, event, templates) in bad.into_iter().take(n) {
        let example = lines
            .iter()
            .find(|l| l.event_id == event)
            .map(|l| l.content.as_str());
        println!(
            "   {event} ({size} lines), e.g. {:?}",
            example.unwrap_or("")
        );
        println!(
            "      masked {:?}",
            logcanary_detector::masking::mask(example.unwrap_or(""))
        );
        for id in templates.iter().take(4) {
            let text = miner.template(id).map(|t| t.join(" ")).unwrap_or_default();
            println!("      -> {text:?} (events {:?})", by_template[id]);
        }
    }
}
