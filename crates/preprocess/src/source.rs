//! Inputs: what a `--source` names and how its rows are read.
//!
//! Readers stream rows to a callback, one [`Row`] per record or a [`Malformed`] saying which
//! line is broken and why; they fail outright only when the input as a whole is unusable
//! (missing file, missing column), before any row is read.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use classifier::model_dir::hub::HubSettings;

use crate::labels::LabelMap;

/// The train/test side a source assigns to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

impl Split {
    fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "train" | "training" => Some(Split::Train),
            "test" | "testing" | "validation" | "valid" | "dev" | "eval" => Some(Split::Test),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Tsv,
    Jsonl,
    Parquet,
    /// A folder with `pos/` and `neg/` (optionally under `train/` and `test/`) of `.txt` files.
    AclImdb,
    /// A Hugging Face Hub data set with parquet files.
    Hub,
    /// The api's prediction log (a SQLite file or a PostgreSQL URL): its corrected
    /// predictions, each with the label a user gave.
    Feedback,
}

impl Format {
    fn parse(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "csv" => Format::Csv,
            "tsv" | "tab" => Format::Tsv,
            "jsonl" | "ndjson" | "json" => Format::Jsonl,
            "parquet" => Format::Parquet,
            "aclimdb" | "folder" | "dir" => Format::AclImdb,
            "hub" => Format::Hub,
            "feedback" | "db" | "sqlite" | "prediction-log" => Format::Feedback,
            other => bail!(
                "unknown format `{other}`: csv, tsv, jsonl, parquet, aclimdb, hub or feedback"
            ),
        })
    }
}

/// Hub data sets known by a short name.
const HUB_ALIASES: [(&str, &str); 1] = [("imdb", "stanfordnlp/imdb")];

/// One input with its settings, from `--source LOCATION[,key=value...]`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SourceSpec {
    pub name: String,
    /// A PostgreSQL log's URL keeps its password here, but not in reports (`shown_location`).
    #[serde(serialize_with = "without_password")]
    pub location: String,
    pub format: Format,
    pub text_column: String,
    pub label_column: String,
    #[serde(serialize_with = "as_display")]
    pub labels: LabelMap,
    pub group_column: Option<String>,
    /// A column whose values (train/test) say which side a row belongs to.
    pub split_column: Option<String>,
}

fn as_display<S: serde::Serializer>(m: &LabelMap, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(m)
}

fn without_password<S: serde::Serializer>(location: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&prediction_log::hide_password(location))
}

/// Settings a source takes when its spec does not name them.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub text_column: String,
    pub label_column: String,
    pub labels: LabelMap,
    /// The class names as a map: what the prediction log's labels are.
    pub feedback_labels: LabelMap,
    pub group_column: Option<String>,
}

impl SourceSpec {
    /// The location as messages and reports show it: a database URL without its password.
    pub fn shown_location(&self) -> String {
        prediction_log::hide_password(&self.location)
    }

    /// Parses `LOCATION[,key=value...]` with keys name, format, text, label, labels, group,
    /// split.
    pub fn parse(spec: &str, d: &Defaults) -> Result<Self> {
        let mut parts = spec.split(',');
        let location = parts.next().unwrap_or_default().trim().to_string();
        if location.is_empty() {
            bail!("source `{spec}` names no file, folder or Hub data set");
        }
        let mut keys = BTreeMap::new();
        for part in parts {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                anyhow!("source `{spec}`: `{part}` is not key=value (keys: name, format, text, label, labels, group, split)")
            })?;
            keys.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        let path_buf = PathBuf::from(&location);
        let path = path_buf.as_path();
        let format = match keys.remove("format") {
            Some(f) => Format::parse(&f)?,
            None if is_database_url(&location) => Format::Feedback,
            None if path.is_dir() => Format::AclImdb,
            None if path.exists() => {
                let ext = path
                    .extension()
                    .map(|e| e.to_string_lossy().to_ascii_lowercase())
                    .unwrap_or_default();
                Format::parse(&ext).map_err(|_| {
                    anyhow!("{location}: cannot tell the format from the extension `.{ext}`; add format=csv|tsv|jsonl|parquet")
                })?
            }
            None if location.starts_with('.')
                || location.starts_with('/')
                || location.contains('\\') =>
            {
                bail!("source {location} does not exist")
            }
            None => Format::Hub,
        };
        let location = if format == Format::Hub {
            HUB_ALIASES
                .iter()
                .find(|(alias, _)| *alias == location)
                .map_or(location.clone(), |(_, id)| id.to_string())
        } else {
            location
        };
        let default_name = match format {
            Format::Feedback => "feedback".to_string(),
            Format::Hub => location.rsplit('/').next().unwrap_or(&location).to_string(),
            _ => path
                .file_stem()
                .map_or(location.clone(), |s| s.to_string_lossy().into_owned()),
        };
        let labels = match (keys.remove("labels"), format) {
            (Some(m), _) => m
                .parse()
                .map_err(|e: String| anyhow!("source `{spec}`: {e}"))?,
            (None, Format::AclImdb) => LabelMap::folders(),
            (None, Format::Feedback) => d.feedback_labels.clone(),
            (None, _) => d.labels.clone(),
        };
        let out = Self {
            name: keys.remove("name").unwrap_or(default_name),
            format,
            text_column: keys.remove("text").unwrap_or_else(|| d.text_column.clone()),
            label_column: keys
                .remove("label")
                .unwrap_or_else(|| d.label_column.clone()),
            labels,
            group_column: keys.remove("group").or_else(|| d.group_column.clone()),
            split_column: keys.remove("split"),
            location,
        };
        if let Some(k) = keys.keys().next() {
            bail!(
                "source `{spec}`: unknown key `{k}` (keys: name, format, text, label, labels, group, split)"
            );
        }
        Ok(out)
    }
}

/// One record as read, before any checks.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub text: Option<String>,
    pub label: Option<String>,
    pub group: Option<String>,
    pub split: Option<Split>,
    /// Where it was read: line (text formats), row (parquet) or file (folders).
    pub location: String,
}

/// A record that could not be read, and why.
#[derive(Debug, Clone)]
pub struct Malformed {
    pub location: String,
    pub reason: String,
}

pub type RowResult = std::result::Result<Row, Malformed>;

/// Streams every row of `spec` to `sink`; `sink` may stop the read by returning an error.
pub fn read(
    spec: &SourceSpec,
    hub: &HubSettings,
    sink: &mut dyn FnMut(RowResult) -> Result<()>,
) -> Result<()> {
    let path = Path::new(&spec.location);
    match spec.format {
        Format::Csv => read_delimited(path, b',', spec, None, sink),
        Format::Tsv => read_delimited(path, b'\t', spec, None, sink),
        Format::Jsonl => read_jsonl(path, spec, sink),
        Format::Parquet => read_parquet(path, spec, None, sink),
        Format::AclImdb => read_folders(path, sink),
        Format::Hub => read_hub(spec, hub, sink),
        Format::Feedback => read_feedback(spec, sink),
    }
}

/// A prediction log named by URL (`sqlite:`, `postgres://`) or by a SQLite file's extension.
fn is_database_url(location: &str) -> bool {
    let l = location.to_ascii_lowercase();
    ["sqlite:", "postgres://", "postgresql://"]
        .iter()
        .any(|p| l.starts_with(p))
        || [".db", ".sqlite", ".sqlite3"]
            .iter()
            .any(|e| l.ends_with(e))
}

/// The corrected predictions of the api's log, as labelled rows.
fn read_feedback(spec: &SourceSpec, sink: &mut dyn FnMut(RowResult) -> Result<()>) -> Result<()> {
    let corrections = prediction_log::read_corrections(&spec.location)
        .with_context(|| format!("reading the corrections in {}", spec.shown_location()))?;
    if corrections.without_text > 0 {
        tracing::warn!(
            "{}: {} corrections have no text (the api ran with LOG_TEXT=false) and are skipped",
            spec.name,
            corrections.without_text
        );
    }
    for c in corrections.examples {
        sink(Ok(Row {
            text: Some(c.text),
            label: Some(c.label),
            group: None,
            split: None,
            location: format!("prediction {}", c.id),
        }))?;
    }
    Ok(())
}

fn column_index(
    headers: &[String],
    wanted: &str,
    what: &str,
    key: &str,
    path: &Path,
) -> Result<usize> {
    headers.iter().position(|h| h == wanted).ok_or_else(|| {
        anyhow!(
            "{}: no {what} column `{wanted}` (columns: {}); name it with --{key}-column or {key}=COLUMN in --source",
            path.display(),
            headers.join(", ")
        )
    })
}

fn optional_index(
    headers: &[String],
    wanted: Option<&str>,
    what: &str,
    path: &Path,
) -> Result<Option<usize>> {
    wanted
        .map(|w| {
            headers.iter().position(|h| h == w).ok_or_else(|| {
                anyhow!(
                    "{}: no {what} column `{w}` (columns: {})",
                    path.display(),
                    headers.join(", ")
                )
            })
        })
        .transpose()
}

fn read_delimited(
    path: &Path,
    delimiter: u8,
    spec: &SourceSpec,
    split: Option<Split>,
    sink: &mut dyn FnMut(RowResult) -> Result<()>,
) -> Result<()> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(BufReader::with_capacity(1 << 20, file));
    let headers = classifier::dataset::header_names(
        reader
            .byte_headers()
            .with_context(|| format!("{}: cannot read the header row", path.display()))?,
    );
    let text = column_index(&headers, &spec.text_column, "text", "text", path)?;
    let label = column_index(&headers, &spec.label_column, "label", "label", path)?;
    let group = optional_index(&headers, spec.group_column.as_deref(), "group", path)?;
    let split_col = optional_index(&headers, spec.split_column.as_deref(), "split", path)?;
    let mut record = csv::ByteRecord::new();
    loop {
        let line = reader.position().line() + 1;
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(line, |p| p.line());
                let location = format!("line {line}");
                if record.len() != headers.len() {
                    sink(Err(Malformed {
                        location,
                        reason: format!(
                            "{} fields, the header has {}",
                            record.len(),
                            headers.len()
                        ),
                    }))?;
                    continue;
                }
                let field = |i: usize| std::str::from_utf8(&record[i]).map(str::to_string);
                let row = (|| -> std::result::Result<Row, String> {
                    let get = |i| field(i).map_err(|_| "invalid UTF-8".to_string());
                    Ok(Row {
                        text: Some(get(text)?),
                        label: Some(get(label)?),
                        group: group.map(get).transpose()?,
                        split: match split_col {
                            Some(i) => Some(
                                Split::parse(&get(i)?).ok_or("split value is not train or test")?,
                            ),
                            None => split,
                        },
                        location: location.clone(),
                    })
                })();
                sink(row.map_err(|reason| Malformed { location, reason }))?;
            }
            Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => {
                return Err(anyhow!(e)).with_context(|| format!("reading {}", path.display()));
            }
            Err(e) => {
                let line = e.position().map_or(line, |p| p.line());
                sink(Err(Malformed {
                    location: format!("line {line}"),
                    reason: e.to_string(),
                }))?;
            }
        }
    }
    Ok(())
}

fn json_scalar(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(u8::from(*b).to_string()),
        _ => None,
    }
}

fn read_jsonl(
    path: &Path,
    spec: &SourceSpec,
    sink: &mut dyn FnMut(RowResult) -> Result<()>,
) -> Result<()> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut buf = Vec::new();
    let mut line = 0u64;
    loop {
        buf.clear();
        if reader
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("reading {}", path.display()))?
            == 0
        {
            break;
        }
        line += 1;
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let location = format!("line {line}");
        let row = (|| -> std::result::Result<Row, String> {
            let v: serde_json::Value =
                serde_json::from_slice(&buf).map_err(|e| format!("invalid JSON: {e}"))?;
            let obj = v.as_object().ok_or("not a JSON object")?;
            let get = |col: &str| obj.get(col).and_then(json_scalar);
            Ok(Row {
                text: get(&spec.text_column),
                label: get(&spec.label_column),
                group: spec.group_column.as_deref().and_then(get),
                split: match &spec.split_column {
                    Some(c) => Some(
                        get(c)
                            .and_then(|s| Split::parse(&s))
                            .ok_or("split value is not train or test")?,
                    ),
                    None => None,
                },
                location: location.clone(),
            })
        })();
        sink(row.map_err(|reason| Malformed { location, reason }))?;
    }
    Ok(())
}

/// The value at `row` of a parquet column as text, for the types labels and texts come in.
fn cell(col: &dyn Array, row: usize) -> Option<String> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    if col.is_null(row) {
        return None;
    }
    Some(match col.data_type() {
        DataType::Utf8 => col.as_string::<i32>().value(row).to_string(),
        DataType::LargeUtf8 => col.as_string::<i64>().value(row).to_string(),
        DataType::Utf8View => col.as_string_view().value(row).to_string(),
        DataType::Boolean => u8::from(col.as_boolean().value(row)).to_string(),
        DataType::Int8 => col.as_primitive::<Int8Type>().value(row).to_string(),
        DataType::Int16 => col.as_primitive::<Int16Type>().value(row).to_string(),
        DataType::Int32 => col.as_primitive::<Int32Type>().value(row).to_string(),
        DataType::Int64 => col.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::UInt8 => col.as_primitive::<UInt8Type>().value(row).to_string(),
        DataType::UInt16 => col.as_primitive::<UInt16Type>().value(row).to_string(),
        DataType::UInt32 => col.as_primitive::<UInt32Type>().value(row).to_string(),
        DataType::UInt64 => col.as_primitive::<UInt64Type>().value(row).to_string(),
        DataType::Float32 => col.as_primitive::<Float32Type>().value(row).to_string(),
        DataType::Float64 => col.as_primitive::<Float64Type>().value(row).to_string(),
        _ => return None,
    })
}

fn read_parquet(
    path: &Path,
    spec: &SourceSpec,
    split: Option<Split>,
    sink: &mut dyn FnMut(RowResult) -> Result<()>,
) -> Result<()> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{}: not a readable parquet file", path.display()))?;
    let headers: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let text = column_index(&headers, &spec.text_column, "text", "text", path)?;
    let label = column_index(&headers, &spec.label_column, "label", "label", path)?;
    let group = optional_index(&headers, spec.group_column.as_deref(), "group", path)?;
    let split_col = optional_index(&headers, spec.split_column.as_deref(), "split", path)?;
    let reader = builder
        .with_batch_size(8192)
        .build()
        .with_context(|| format!("{}: cannot read parquet", path.display()))?;
    let mut row_no = 0usize;
    for batch in reader {
        let batch: RecordBatch =
            batch.with_context(|| format!("{}: corrupt parquet data", path.display()))?;
        for r in 0..batch.num_rows() {
            row_no += 1;
            let get = |i: usize| cell(batch.column(i).as_ref(), r);
            let split = match split_col {
                Some(i) => get(i).as_deref().and_then(Split::parse),
                None => split,
            };
            sink(Ok(Row {
                text: get(text),
                label: get(label),
                group: group.and_then(get),
                split,
                location: format!("row {row_no}"),
            }))?;
        }
    }
    Ok(())
}

/// `pos/` and `neg/` folders of `.txt` files, under `train/` and `test/` when those exist.
fn read_folders(root: &Path, sink: &mut dyn FnMut(RowResult) -> Result<()>) -> Result<()> {
    let sides: Vec<(PathBuf, Option<Split>)> =
        if root.join("train").is_dir() || root.join("test").is_dir() {
            [("train", Split::Train), ("test", Split::Test)]
                .into_iter()
                .map(|(d, s)| (root.join(d), Some(s)))
                .filter(|(d, _)| d.is_dir())
                .collect()
        } else {
            vec![(root.to_path_buf(), None)]
        };
    let mut found = false;
    for (dir, split) in sides {
        for label in ["neg", "pos"] {
            let class_dir = dir.join(label);
            if !class_dir.is_dir() {
                continue;
            }
            found = true;
            let mut files: Vec<PathBuf> = std::fs::read_dir(&class_dir)
                .with_context(|| format!("cannot list {}", class_dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "txt"))
                .collect();
            files.sort();
            for f in files {
                let location = f.display().to_string();
                let row = match std::fs::read(&f) {
                    Ok(bytes) => match String::from_utf8(bytes) {
                        Ok(text) => Ok(Row {
                            text: Some(text),
                            label: Some(label.to_string()),
                            group: None,
                            split,
                            location,
                        }),
                        Err(_) => Err(Malformed {
                            location,
                            reason: "invalid UTF-8".into(),
                        }),
                    },
                    Err(e) => Err(Malformed {
                        location,
                        reason: e.to_string(),
                    }),
                };
                sink(row)?;
            }
        }
    }
    if !found {
        bail!(
            "{}: no pos/ or neg/ folder (an aclImdb-style source has pos/ and neg/ of .txt files, optionally under train/ and test/)",
            root.display()
        );
    }
    Ok(())
}

/// Parquet files of a Hub data set with the split each holds (from its path).
fn hub_files(spec: &SourceSpec, hub: &HubSettings) -> Result<Vec<(PathBuf, Split)>> {
    use hf_hub::{Cache, Repo, RepoType};
    let id = &spec.location;
    let cache = Cache::new(hub.cache_dir.clone());
    let repo = Repo::new(id.clone(), RepoType::Dataset);
    let explain = |reason: String| {
        anyhow!(
            "cannot get data set `{id}` from the Hugging Face Hub: {reason}. Hub cache: {}. \
             Offline? Pass local data instead: --source data/raw/reviews.csv (CSV/TSV/JSONL/parquet) \
             or an aclImdb folder (--source data/raw/aclImdb)",
            hub.cache_dir.display()
        )
    };
    let split_of = |name: &str| {
        let n = name.to_ascii_lowercase();
        if n.contains("unsup") {
            None
        } else if n.contains("train") {
            Some(Split::Train)
        } else if n.contains("test") || n.contains("valid") {
            Some(Split::Test)
        } else {
            None
        }
    };
    let mut files = Vec::new();
    if hub.offline {
        let cached = cache.repo(repo.clone());
        for name in hub.cached_files(&repo) {
            if let (true, Some(split), Some(path)) = (
                name.ends_with(".parquet"),
                split_of(&name),
                cached.get(&name),
            ) {
                files.push((path, split));
            }
        }
        if files.is_empty() {
            return Err(explain(
                "HF_HUB_OFFLINE is set and the cache does not hold its parquet files".into(),
            ));
        }
        files.sort();
        return Ok(files);
    }
    let api = hub.api().map_err(explain)?;
    let repo = api.repo(repo);
    let info = repo
        .info()
        .map_err(|e| explain(classifier::model_dir::hub::describe(&e)))?;
    for sibling in info.siblings {
        let name = sibling.rfilename;
        if !name.ends_with(".parquet") {
            continue;
        }
        if let Some(split) = split_of(&name) {
            let path = repo.get(&name).map_err(|e| {
                explain(format!(
                    "{name}: {}",
                    classifier::model_dir::hub::describe(&e)
                ))
            })?;
            files.push((path, split));
        }
    }
    if files.is_empty() {
        return Err(explain("it has no train/test parquet files".into()));
    }
    files.sort();
    Ok(files)
}

fn read_hub(
    spec: &SourceSpec,
    hub: &HubSettings,
    sink: &mut dyn FnMut(RowResult) -> Result<()>,
) -> Result<()> {
    for (path, split) in hub_files(spec, hub)? {
        tracing::info!(file = %path.display(), ?split, "reading Hub parquet");
        read_parquet(&path, spec, Some(split), sink)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Defaults {
        Defaults {
            text_column: "text".into(),
            label_column: "label".into(),
            labels: "0/1".parse().unwrap(),
            feedback_labels: "negative/positive".parse().unwrap(),
            group_column: None,
        }
    }

    #[test]
    fn a_prediction_log_is_read_for_its_corrections() {
        for location in [
            "sqlite:///app/results/predictions.db",
            "postgres://u@db/log",
            "x.db",
        ] {
            let s = SourceSpec::parse(location, &defaults()).unwrap();
            assert_eq!((s.format, s.name.as_str()), (Format::Feedback, "feedback"));
            assert_eq!(
                s.labels.class("negative"),
                Some(0),
                "labels are the class names"
            );
        }
    }

    #[test]
    fn spec_keys_override_defaults() {
        let s = SourceSpec::parse("imdb", &defaults()).unwrap();
        assert_eq!(
            (s.format, s.location.as_str(), s.name.as_str()),
            (Format::Hub, "stanfordnlp/imdb", "imdb")
        );
        let s = SourceSpec::parse(
            "tweets.csv,format=csv,name=tw,text=tweet,label=y,labels=0/4,group=user,split=part",
            &defaults(),
        )
        .unwrap();
        assert_eq!(s.name, "tw");
        assert_eq!(s.text_column, "tweet");
        assert_eq!(s.labels.class("4"), Some(1));
        assert_eq!(s.group_column.as_deref(), Some("user"));
        assert_eq!(s.split_column.as_deref(), Some("part"));
        assert!(SourceSpec::parse("a.csv,format=csv,colour=red", &defaults()).is_err());
        assert!(SourceSpec::parse("./missing.csv", &defaults()).is_err());
    }
}
