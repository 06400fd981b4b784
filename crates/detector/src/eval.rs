//! Evaluation helpers: grouping accuracy of template mining against hand-labelled
//! templates (the Loghub-2.0 `*_structured_corrected.csv` files).
//!
//! Reads local files only; callers pass the paths.

use std::collections::HashMap;
use std::hash::Hash;
use std::path::{Path, PathBuf};

use crate::drain::{MinerConfig, TemplateMiner};

/// The 13 Loghub-2.0 systems with 2k-line samples.
pub const LOGHUB_SYSTEMS: &[&str] = &[
    "Apache",
    "HDFS",
    "HPC",
    "Hadoop",
    "HealthApp",
    "Linux",
    "Mac",
    "OpenSSH",
    "OpenStack",
    "Proxifier",
    "Spark",
    "Thunderbird",
    "Zookeeper",
];

/// Errors from reading a labelled sample.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
}

/// One labelled line: the message text and its ground-truth event id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledLine {
    pub content: String,
    pub event_id: String,
}

/// Grouping accuracy: the share of lines whose predicted group is exactly the set of lines
/// with the same true label. `predicted` and `truth` are parallel slices.
///
/// Returns 0 for empty input. Panics never; mismatched lengths use the shorter slice.
pub fn grouping_accuracy<P, T>(predicted: &[P], truth: &[T]) -> f64
where
    P: Eq + Hash,
    T: Eq + Hash,
{
    let n = predicted.len().min(truth.len());
    if n == 0 {
        return 0.0;
    }
    let mut truth_sizes: HashMap<&T, usize> = HashMap::new();
    for t in &truth[..n] {
        *truth_sizes.entry(t).or_default() += 1;
    }
    // For each predicted group: its size and the set of true labels inside it.
    let mut groups: HashMap<&P, (usize, Option<&T>, bool)> = HashMap::new();
    for (p, t) in predicted[..n].iter().zip(&truth[..n]) {
        let entry = groups.entry(p).or_insert((0, Some(t), true));
        entry.0 += 1;
        if entry.1 != Some(t) {
            entry.2 = false;
        }
    }
    let correct: usize = groups
        .values()
        .filter_map(|&(size, label, pure)| {
            let label = label?;
            (pure && truth_sizes.get(label) == Some(&size)).then_some(size)
        })
        .sum();
    correct as f64 / n as f64
}

/// Path of the structured CSV for `system` under a Loghub directory.
pub fn loghub_structured_path(loghub_dir: &Path, system: &str) -> PathBuf {
    loghub_dir
        .join(system)
        .join(format!("{system}_2k.log_structured_corrected.csv"))
}

/// Read `Content` and `EventId` from a Loghub structured CSV.
pub fn read_loghub_structured(path: &Path) -> Result<Vec<LabelledLine>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let format_error = |reason: String| EvalError::Format {
        path: path.to_path_buf(),
        reason,
    };
    let mut records = parse_csv(&text).into_iter();
    let header = records
        .next()
        .ok_or_else(|| format_error("empty file".into()))?;
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format_error(format!("no `{name}` column")))
    };
    let content_col = column("Content")?;
    let event_col = column("EventId")?;
    let mut lines = Vec::new();
    for (row, record) in records.enumerate() {
        if record.len() == 1 && record[0].is_empty() {
            continue;
        }
        let get = |col: usize| {
            record
                .get(col)
                .cloned()
                .ok_or_else(|| format_error(format!("row {} has {} fields", row + 2, record.len())))
        };
        lines.push(LabelledLine {
            content: get(content_col)?,
            event_id: get(event_col)?,
        });
    }
    Ok(lines)
}

/// Minimal RFC 4180 parser (quoted fields, doubled quotes, CRLF); enough for the Loghub
/// files and not worth a dependency.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            ',' => record.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            _ => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

/// Grouping accuracy of a fresh miner over one labelled sample, lines in file order.
pub fn mining_accuracy(lines: &[LabelledLine], config: &MinerConfig) -> f64 {
    let mut miner = TemplateMiner::new(config.clone());
    let predicted: Vec<_> = lines
        .iter()
        .map(|line| miner.mine(&line.content).template_id)
        .collect();
    let truth: Vec<&str> = lines.iter().map(|l| l.event_id.as_str()).collect();
    grouping_accuracy(&predicted, &truth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_counts_only_exact_groups() {
        // Truth: {0,1} = A, {2} = B, {3} = C. Predicted merges B and C.
        let truth = ["A", "A", "B", "C"];
        assert_eq!(grouping_accuracy(&[1, 1, 2, 2], &truth), 0.5);
        assert_eq!(grouping_accuracy(&[1, 1, 2, 3], &truth), 1.0);
        // Splitting A makes both of its lines wrong.
        assert_eq!(grouping_accuracy(&[1, 9, 2, 3], &truth), 0.5);
        assert_eq!(grouping_accuracy::<u8, &str>(&[], &[]), 0.0);
    }

    #[test]
    fn csv_handles_quotes_and_crlf() {
        let rows = parse_csv("a,b\r\n\"x, \"\"y\"\"\",2\r\nlast,1");
        assert_eq!(
            rows,
            vec![
                vec!["a".to_string(), "b".to_string()],
                vec!["x, \"y\"".to_string(), "2".to_string()],
                vec!["last".to_string(), "1".to_string()],
            ]
        );
    }
}
