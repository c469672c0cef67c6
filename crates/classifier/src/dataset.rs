//! The processed data set that `preprocess` writes and `train` reads: CSV files with columns
//! `text,label,source` (label = class index, text already cleaned) and `labels.json`, the
//! class names in index order (negative/positive when absent).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The processed files `preprocess` writes and `train` reads: it trains on the first,
/// selects its epoch and fits its calibration on the second, and reads the third only for
/// the final evaluation.
pub const TRAIN_FILE: &str = "train.csv";
pub const VALIDATION_FILE: &str = "validation.csv";
pub const TEST_FILE: &str = "test.csv";

/// The class names of the processed folder, a JSON array in class-index order.
pub const LABELS_FILE: &str = "labels.json";

/// The class names of a folder without `labels.json` (binary sentiment), and the default.
pub const LABELS: [&str; 2] = ["negative", "positive"];

/// The class whose precision, recall and F1 are reported: `positive` where the labels have
/// one, else the last class (the highest star).
pub fn positive_class(labels: &[String]) -> usize {
    labels
        .iter()
        .position(|l| l.eq_ignore_ascii_case("positive"))
        .unwrap_or(labels.len().saturating_sub(1))
}

/// The class names of a processed data folder: its `labels.json`, or negative/positive.
pub fn read_labels(data_dir: &Path) -> Result<Vec<String>> {
    let path = data_dir.join(LABELS_FILE);
    if !path.is_file() {
        return Ok(LABELS.iter().map(|s| s.to_string()).collect());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let labels: Vec<String> = serde_json::from_str(&text)
        .map_err(|e| Error::artifact(&path, format!("not a JSON array of class names: {e}")))?;
    check_label_names(&labels).map_err(|e| Error::artifact(&path, e))?;
    Ok(labels)
}

/// At least two classes, each named, no name twice.
pub fn check_label_names(labels: &[String]) -> std::result::Result<(), String> {
    if labels.len() < 2 {
        return Err(format!(
            "{} class(es): a classifier needs at least two",
            labels.len()
        ));
    }
    if labels.iter().any(|l| l.trim().is_empty()) {
        return Err("a class name is empty".into());
    }
    for (i, l) in labels.iter().enumerate() {
        if labels[..i].contains(l) {
            return Err(format!("the class name `{l}` appears twice"));
        }
    }
    Ok(())
}

/// Writes `labels.json` into `dir`, atomically.
pub fn write_labels(dir: &Path, labels: &[String]) -> Result<()> {
    crate::model_dir::atomic::write_json(&dir.join(LABELS_FILE), &labels)
}

/// One labelled text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    pub text: String,
    /// Class index into the folder's labels (0 = negative, 1 = positive by default).
    pub label: usize,
    /// Which input it came from (for per-source metrics); may be empty.
    #[serde(default)]
    pub source: String,
}

/// Reads a processed CSV. Every row must have a text and a class index of the folder's
/// labels ([`read_labels`] of the file's folder); the error names the file and line of the
/// first row that does not.
pub fn read_examples(path: &Path) -> Result<Vec<Example>> {
    let labels = read_labels(path.parent().unwrap_or(Path::new(".")))?;
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
        if ex.label >= labels.len() {
            let row = out.len() + 1;
            return Err(Error::artifact(
                path,
                format!(
                    "row {row} after the header: label {} is not a class index: the folder's classes are {} \
                     (0..{}; {LABELS_FILE} names them)",
                    ex.label,
                    labels.join(", "),
                    labels.len() - 1
                ),
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
    // serde writes the header with the first row: an empty split still gets one, so that it
    // reads back as empty rather than as a file without columns.
    if examples.is_empty() {
        w.write_record(["text", "label", "source"])
            .map_err(|e| Error::artifact(path, e.to_string()))?;
    }
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
    fn an_empty_split_reads_back_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.csv");
        write_examples(&path, &[]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "text,label,source\n"
        );
    }

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
    fn labels_json_sets_the_classes_rows_are_checked_against() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "text,label\na,0\nb,2\n").unwrap();
        let err = read_examples(&path).unwrap_err().to_string();
        assert!(
            err.contains("row 2") && err.contains("negative, positive"),
            "{err}"
        );
        let three: Vec<String> = ["negative", "neutral", "positive"].map(String::from).into();
        write_labels(dir.path(), &three).unwrap();
        assert_eq!(read_labels(dir.path()).unwrap(), three);
        assert_eq!(read_examples(&path).unwrap()[1].label, 2);
        assert_eq!(positive_class(&three), 2);
        let stars: Vec<String> = ["1", "2", "3"].map(String::from).into();
        assert_eq!(positive_class(&stars), 2);
        std::fs::write(dir.path().join(LABELS_FILE), r#"["a", "a"]"#).unwrap();
        let err = read_labels(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("labels.json") && err.contains("twice"),
            "{err}"
        );
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
