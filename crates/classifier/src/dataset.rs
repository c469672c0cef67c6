//! The processed data set that `preprocess` writes and `train` reads: CSV files with columns
//! `text,label,source`, label 0 = negative, 1 = positive, text already cleaned.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The processed files `preprocess` writes and `train` reads: it trains on the first,
/// selects its epoch and fits its calibration on the second, and reads the third only for
/// the final evaluation.
pub const TRAIN_FILE: &str = "train.csv";
pub const VALIDATION_FILE: &str = "validation.csv";
pub const TEST_FILE: &str = "test.csv";

/// Class names, in class-index order, of every model this tool trains.
pub const LABELS: [&str; 2] = ["negative", "positive"];

/// The class whose precision, recall and F1 are reported.
pub const POSITIVE: usize = 1;

/// One labelled text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    pub text: String,
    /// Class index: 0 = negative, 1 = positive.
    pub label: usize,
    /// Which input it came from (for per-source metrics); may be empty.
    #[serde(default)]
    pub source: String,
}

/// Reads a processed CSV. Every row must have a text and a 0/1 label; the error names the
/// file and line of the first row that does not.
pub fn read_examples(path: &Path) -> Result<Vec<Example>> {
    let file = std::fs::File::open(path).map_err(|e| {
        Error::Input(format!(
            "cannot open {}: {e}. Run `preprocess` first (it writes data/processed/train.csv and test.csv) \
             or pass --data-dir",
            path.display()
        ))
    })?;
    let mut reader = csv::Reader::from_reader(std::io::BufReader::new(file));
    let headers = reader
        .headers()
        .map_err(|e| Error::artifact(path, format!("cannot read the CSV header: {e}")))?
        .clone();
    for col in ["text", "label"] {
        if !headers.iter().any(|h| h == col) {
            return Err(Error::artifact(
                path,
                format!(
                    "no `{col}` column (columns: {}): processed files have text,label[,source]",
                    headers.iter().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    let mut out = Vec::new();
    for row in reader.deserialize::<Example>() {
        let ex = row.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            Error::artifact(path, format!("line {line}: {e}"))
        })?;
        if ex.label >= LABELS.len() {
            return Err(Error::artifact(
                path,
                format!("label {} is not 0 (negative) or 1 (positive)", ex.label),
            ));
        }
        out.push(ex);
    }
    Ok(out)
}

/// Writes examples as a processed CSV (header `text,label,source`).
/// A CSV header row as column names: lossy UTF-8, without a byte-order mark or surrounding
/// spaces (spreadsheet exports add both), so `--text-column text` finds ` text`.
pub fn header_names(headers: &csv::ByteRecord) -> Vec<String> {
    headers
        .iter()
        .map(|h| {
            String::from_utf8_lossy(h)
                .trim_start_matches('\u{feff}')
                .trim()
                .to_string()
        })
        .collect()
}

pub fn write_examples(path: &Path, examples: &[Example]) -> Result<()> {
    let mut w = csv::Writer::from_path(path).map_err(|e| Error::artifact(path, e.to_string()))?;
    for ex in examples {
        w.serialize(ex)
            .map_err(|e| Error::artifact(path, e.to_string()))?;
    }
    w.flush().map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_quotes_commas_and_newlines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        let rows = vec![
            Example {
                text: "a \"quoted\", multi\nline text".into(),
                label: 1,
                source: "imdb".into(),
            },
            Example {
                text: "plain".into(),
                label: 0,
                source: String::new(),
            },
        ];
        write_examples(&path, &rows).unwrap();
        assert_eq!(read_examples(&path).unwrap(), rows);
    }

    #[test]
    fn bad_label_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "text,label\nok,1\nbad,x\n").unwrap();
        let err = read_examples(&path).unwrap_err().to_string();
        assert!(err.contains("t.csv") && err.contains("line 3"), "{err}");
    }
}
