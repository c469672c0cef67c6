//! `batch_predict`: a CSV with a text column in, the same CSV with `sentiment` and
//! `confidence` (and optionally every label's probability) out.
//!
//! Streams in chunks, so memory does not grow with the file; keeps every input column and
//! row order; rows without text get empty predictions and are counted, never abort the run.
//! The output is written to a temporary file and renamed into place at the end.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use classifier::{BatchLimits, Classifier, Precision, Prediction, runtime};

use crate::config::LongTextArgs;
use crate::shard::{Manifest, Shard};

/// Add sentiment predictions to every row of a CSV file.
///
/// Example: batch_predict data/processed/small_test.csv results/predictions.csv
///
/// Split between workers: each runs `batch_predict --shard I/N INPUT PARTS_DIR`, then
/// `batch_predict merge PARTS_DIR OUTPUT` joins the parts in input order.
#[derive(Parser, Debug, Clone)]
#[command(version)]
pub struct BatchArgs {
    /// The CSV to classify (header row required).
    pub input: PathBuf,

    /// Where to write the CSV with predictions (replaced when complete); with a shard, the
    /// folder that gets its `part-I-of-N.csv`.
    pub output: PathBuf,

    /// Classify only shard I of N (0-based): rows I, I + N, I + 2N, ...
    #[arg(long, conflicts_with_all = ["shard_index", "shard_count"])]
    pub shard: Option<Shard>,

    /// The shard's index, as --shard's I; a Kubernetes Indexed Job's JOB_COMPLETION_INDEX
    /// when unset.
    #[arg(long, env = "SHARD_INDEX", requires = "shard_count")]
    pub shard_index: Option<usize>,

    /// How many shards, as --shard's N.
    #[arg(long, env = "SHARD_COUNT")]
    pub shard_count: Option<usize>,

    /// The column holding the text.
    #[arg(long, env = "TEXT_COLUMN", default_value = "text")]
    pub text_column: String,

    /// Also write one probability column per label (`prob_<label>`).
    #[arg(long, env = "PROBABILITIES")]
    pub probabilities: bool,

    /// Texts per forward pass of the model. (Not BATCH_SIZE: that is the trainer's.)
    #[arg(long, env = "PREDICT_BATCH_SIZE", default_value_t = 32)]
    pub batch_size: usize,

    /// Rows read and classified at a time; bounds memory.
    #[arg(long, env = "CHUNK_ROWS", default_value_t = 2048)]
    pub chunk_rows: usize,

    /// The model folder, or a Hugging Face Hub id (owner/name) of a fine-tuned
    /// `*ForSequenceClassification`.
    #[arg(long, env = "MODEL_PATH", default_value = "model_output")]
    pub model_path: PathBuf,

    /// CPU threads (default: all available cores).
    #[arg(long, env = "NUM_THREADS")]
    pub threads: Option<usize>,

    /// Precision of the model's matrix products: f32, or int8 (dynamic quantisation:
    /// faster, and within about half a point of f32's accuracy).
    #[arg(long, env = "PRECISION", default_value = "f32")]
    pub precision: Precision,

    #[command(flatten)]
    pub long_text: LongTextArgs,
}

/// What a run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BatchSummary {
    pub rows: u64,
    pub predicted: u64,
    /// Rows whose text was missing or blank (left without a prediction).
    pub empty: u64,
    pub seconds: f64,
    pub rows_per_s: f64,
    pub per_label: BTreeMap<String, u64>,
}

fn delimiter(path: &Path) -> u8 {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("tsv") => b'\t',
        _ => b',',
    }
}

impl BatchArgs {
    /// The shard to classify: --shard, else SHARD_INDEX (or JOB_COMPLETION_INDEX) of
    /// SHARD_COUNT; `None` for the whole input.
    pub fn shard(&self) -> Result<Option<Shard>> {
        if self.shard.is_some() {
            return Ok(self.shard);
        }
        let Some(count) = self.shard_count else {
            return Ok(None);
        };
        let index = match self.shard_index {
            Some(i) => i,
            None => std::env::var("JOB_COMPLETION_INDEX")
                .context("SHARD_COUNT is set but neither SHARD_INDEX nor JOB_COMPLETION_INDEX")?
                .parse()
                .context("JOB_COMPLETION_INDEX is not a number")?,
        };
        Ok(Some(Shard::new(index, count).map_err(anyhow::Error::msg)?))
    }
}

/// `batch_predict merge`: join the parts of a sharded run.
#[derive(Parser, Debug, Clone)]
#[command(name = "batch_predict merge")]
pub struct MergeArgs {
    /// The folder holding every `part-I-of-N.csv` and its manifest.
    pub parts: PathBuf,
    /// Where to write the joined CSV, rows in input order (replaced when complete).
    pub output: PathBuf,
}

/// Opens the input and finds the text column; fails before any model work.
fn open_input(
    args: &BatchArgs,
) -> Result<(csv::Reader<BufReader<File>>, csv::ByteRecord, usize, u64)> {
    let file =
        File::open(&args.input).with_context(|| format!("cannot open {}", args.input.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter(&args.input))
        .flexible(true)
        .from_reader(BufReader::with_capacity(1 << 20, file));
    let headers = reader
        .byte_headers()
        .with_context(|| format!("{}: cannot read the header row", args.input.display()))?
        .clone();
    if headers.is_empty() {
        bail!(
            "{} is empty: expected a header row with a `{}` column",
            args.input.display(),
            args.text_column
        );
    }
    let names = classifier::dataset::header_names(&headers);
    let column = names
        .iter()
        .position(|h| *h == args.text_column)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{} has no `{}` column (columns: {}); name the text column with --text-column",
                args.input.display(),
                args.text_column,
                names.join(", ")
            )
        })?;
    Ok((reader, headers, column, size))
}

/// Runs the whole batch; `progress` receives (bytes read, rows done) after every chunk.
pub fn run(args: &BatchArgs, progress: &mut dyn FnMut(u64, u64, u64)) -> Result<BatchSummary> {
    anyhow::ensure!(
        args.batch_size > 0 && args.chunk_rows > 0,
        "--batch-size and --chunk-rows must be positive"
    );
    let (mut reader, headers, column, size) = open_input(args)?;
    let shard = args.shard()?;
    let (output, out_dir) = output_path(args, shard)?;
    let classifier = load_classifier(args)?;
    let labels = classifier.labels().to_vec();

    let tmp = tempfile::Builder::new()
        .prefix(".batch_predict-")
        .suffix(".csv")
        .tempfile_in(&out_dir)
        .with_context(|| format!("cannot write in {}", out_dir.display()))?;
    let mut writer = csv::WriterBuilder::new()
        .delimiter(delimiter(&output))
        .flexible(true)
        .from_writer(std::io::BufWriter::with_capacity(1 << 20, tmp.as_file()));
    writer.write_byte_record(&output_header(&headers, &labels, args.probabilities))?;

    let started = Instant::now();
    let mut summary = BatchSummary::default();
    let mut chunk: Vec<csv::ByteRecord> = Vec::with_capacity(args.chunk_rows);
    let mut eof = false;
    let mut row = 0;
    while !eof {
        eof = read_chunk(&mut reader, &mut chunk, (&mut row, shard), args)?;
        let texts: Vec<Option<String>> = chunk
            .iter()
            .map(|r| {
                r.get(column)
                    .map(|t| String::from_utf8_lossy(t).into_owned())
                    .filter(|t| !t.trim().is_empty())
            })
            .collect();
        let present: Vec<&str> = texts.iter().flatten().map(String::as_str).collect();
        let mut preds = classifier
            .predict(&present)
            .context("the model failed on a chunk of rows")?
            .into_iter();
        for (record, text) in chunk.iter_mut().zip(&texts) {
            // Rows shorter than the header get their missing fields, so columns line up.
            while record.len() < headers.len() {
                record.push_field(b"");
            }
            let prediction = text
                .as_ref()
                .map(|_| preds.next().expect("one prediction per present text"));
            annotate(
                record,
                prediction,
                &labels,
                args.probabilities,
                &mut summary,
            );
            writer.write_byte_record(record)?;
        }
        progress(reader.position().byte(), size, summary.rows);
    }
    writer.flush()?;
    drop(writer);
    persist(tmp, &output)?;
    if let Some(s) = shard {
        Manifest::of(&args.input, s, summary.rows)?.write(&args.output)?;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    summary.rows_per_s = summary.rows as f64 / summary.seconds.max(1e-9);
    Ok(summary)
}

/// The file to write (a shard's part in the output folder) and its folder, created.
fn output_path(args: &BatchArgs, shard: Option<Shard>) -> Result<(PathBuf, PathBuf)> {
    let output = match shard {
        Some(s) => s.part_path(&args.output),
        None => args.output.clone(),
    };
    let out_dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    Ok((output, out_dir))
}

/// The model of `--model-path`, with the batch's limits, precision and long-text policy.
fn load_classifier(args: &BatchArgs) -> Result<Classifier> {
    let path = &args.model_path;
    let source = crate::model::model_source(path)
        .with_context(|| format!("resolving the model {}", path.display()))?
        .with_context(|| {
            format!(
                "no model at {}: it has no config.json; pass a model folder `train` wrote \
                 (--model-path / MODEL_PATH) or a Hub id such as \
                 cardiffnlp/twitter-roberta-base-sentiment-latest",
                path.display()
            )
        })?;
    let classifier = Classifier::load_source(source)
        .and_then(|c| {
            let max_length = c.pipeline().max_length;
            c.with_limits(BatchLimits {
                max_batch_size: args.batch_size,
                max_batch_tokens: args.batch_size * max_length,
            })
        })
        .and_then(|c| c.with_precision(args.precision))
        .map(|c| c.with_long_text(args.long_text.policy()))
        .with_context(|| format!("loading the model from {}", args.model_path.display()))?;
    runtime::release_free_memory();
    Ok(classifier)
}

/// The input's header with the prediction columns after it; a column whose name the input
/// already uses is prefixed with `predicted_`.
fn output_header(
    headers: &csv::ByteRecord,
    labels: &[String],
    probabilities: bool,
) -> csv::ByteRecord {
    let taken: Vec<&[u8]> = headers.iter().collect();
    let name = |base: &str| -> Vec<u8> {
        if taken.contains(&base.as_bytes()) {
            format!("predicted_{base}").into_bytes()
        } else {
            base.as_bytes().to_vec()
        }
    };
    let mut header = headers.clone();
    header.push_field(&name("sentiment"));
    header.push_field(&name("confidence"));
    if probabilities {
        for l in labels {
            header.push_field(&name(&format!("prob_{l}")));
        }
    }
    header
}

/// Reads up to `--chunk-rows` records of the shard into `chunk`, counting every row read in
/// `row`; returns whether the input has ended.
fn read_chunk(
    reader: &mut csv::Reader<BufReader<File>>,
    chunk: &mut Vec<csv::ByteRecord>,
    (row, shard): (&mut u64, Option<Shard>),
    args: &BatchArgs,
) -> Result<bool> {
    chunk.clear();
    while chunk.len() < args.chunk_rows {
        let mut record = csv::ByteRecord::new();
        match reader.read_byte_record(&mut record) {
            Ok(true) => {
                if shard.is_none_or(|s| s.takes(*row)) {
                    chunk.push(record);
                }
                *row += 1;
            }
            Ok(false) => return Ok(true),
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                bail!("{} line {line}: {e}", args.input.display());
            }
        }
    }
    Ok(false)
}

/// Appends a row's prediction columns (empty ones for a row without text) and counts it.
fn annotate(
    record: &mut csv::ByteRecord,
    prediction: Option<Prediction>,
    labels: &[String],
    probabilities: bool,
    summary: &mut BatchSummary,
) {
    summary.rows += 1;
    let Some(p) = prediction else {
        for _ in 0..2 + if probabilities { labels.len() } else { 0 } {
            record.push_field(b"");
        }
        summary.empty += 1;
        return;
    };
    record.push_field(labels[p.class].as_bytes());
    record.push_field(format!("{:.6}", p.confidence()).as_bytes());
    if probabilities {
        for prob in &p.probabilities {
            record.push_field(format!("{prob:.6}").as_bytes());
        }
    }
    *summary
        .per_label
        .entry(labels[p.class].clone())
        .or_default() += 1;
    summary.predicted += 1;
}

/// Moves the finished temporary file over `output` (readable by all, as a plain write).
pub(crate) fn persist(tmp: tempfile::NamedTempFile, output: &Path) -> Result<()> {
    tmp.as_file().sync_all()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.persist(output)
        .with_context(|| format!("cannot move the result to {}", output.display()))?;
    Ok(())
}

/// Compose passes `${NAME:-}`, so these defaults are the ones in force.
#[cfg(test)]
#[test]
fn env_example_shows_the_defaults() {
    let env_example = include_str!("../../../.env.example");
    service::check_env_example(&<BatchArgs as clap::CommandFactory>::command(), env_example);
}
