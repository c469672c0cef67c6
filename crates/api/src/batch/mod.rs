//! `batch_predict`: a table with a text column in (CSV, TSV or Parquet; one file, or a
//! folder or glob of parts), the same table with `sentiment` and `confidence` (and
//! optionally every label's probability) out.
//!
//! Streams in chunks, so memory does not grow with the input; keeps every input column and
//! row order (and, for Parquet, every column's type); rows without text get empty
//! predictions and are counted, never abort the run. The output is written to a temporary
//! file and renamed into place at the end. [`input`] resolves what is read, [`csv_rows`] and
//! [`parquet_rows`] read and write each format, [`shard`] splits a run between workers.

pub mod csv_rows;
pub mod input;
pub mod parquet_rows;
pub mod shard;

use std::collections::BTreeMap;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use classifier::{BatchLimits, Classifier, Precision, Prediction, runtime};

use crate::config::LongTextArgs;
use csv_rows::{CsvOut, CsvRows};
use input::Input;
use parquet_rows::{ParquetOut, ParquetRows};
use shard::{Manifest, PartFile, Shard};

/// Add sentiment predictions to every row of a CSV, TSV or Parquet table.
///
/// Example: batch_predict data/processed/small_test.csv results/predictions.csv
///
/// Split between workers: each runs `batch_predict --shard I/N INPUT PARTS_DIR`, then
/// `batch_predict merge PARTS_DIR OUTPUT` joins the parts in input order.
#[derive(Parser, Debug, Clone)]
#[command(version)]
pub struct BatchArgs {
    /// The table to classify: a .csv (header row required), .tsv or .parquet file, or a
    /// folder or glob (quoted: 'data/parts/*.parquet') of such files, read in name order.
    pub input: PathBuf,

    /// Where to write the table with predictions, in the input's format (replaced when
    /// complete); with a shard, the folder that gets its `part-I-of-N.csv` (or .parquet).
    pub output: PathBuf,

    /// Classify only shard I of N (0-based): rows I, I + N, I + 2N, ... of a file; files
    /// I, I + N, ... of a folder or glob.
    #[arg(long, conflicts_with_all = ["shard_index", "shard_count"])]
    pub shard: Option<Shard>,

    /// The shard's index, as --shard's I; a Kubernetes Indexed Job's JOB_COMPLETION_INDEX
    /// when unset.
    #[arg(long, env = "SHARD_INDEX", requires = "shard_count")]
    pub shard_index: Option<usize>,

    /// How many shards, as --shard's N.
    #[arg(long, env = "SHARD_COUNT")]
    pub shard_count: Option<usize>,

    /// A Swarm job task's `{{.Task.Slot}}`, as the shard's index: a number is taken modulo
    /// SHARD_COUNT, anything else is shard 0 (swarmkit numbers a replicated job's tasks from
    /// 0 and renders slot 0 as the task's id).
    #[arg(
        long,
        env = "SHARD_SLOT",
        requires = "shard_count",
        conflicts_with = "shard_index"
    )]
    pub shard_slot: Option<String>,

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
        let index = match (self.shard_index, &self.shard_slot) {
            (Some(i), _) => i,
            (None, Some(slot)) => slot.trim().parse::<usize>().map_or(0, |n| n % count),
            (None, None) => std::env::var("JOB_COMPLETION_INDEX")
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
    /// The folder holding every `part-I-of-N.csv` (or .parquet) and its manifest.
    pub parts: PathBuf,
    /// Where to write the joined table, rows in input order (replaced when complete).
    pub output: PathBuf,
}

/// Rows of a table, read a chunk at a time: the format's own record type, and the texts in it.
pub trait RowReader {
    type Chunk;
    /// Up to `max_rows` of the shard's rows (maybe fewer); `None` once the input has ended.
    fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Self::Chunk>>;
    /// Each row's text; `None` where it is missing or blank.
    fn texts(&self, chunk: &Self::Chunk) -> Result<Vec<Option<String>>>;
    /// (done, total) in the reader's unit (bytes of CSV, rows of Parquet).
    fn progress(&self) -> (u64, u64);
    /// The files read so far, with the rows taken from each.
    fn taken(&self) -> Vec<PartFile>;
}

/// Writes rows with their predictions (`None`: a row without text).
pub trait RowWriter {
    type Chunk;
    fn write(&mut self, chunk: Self::Chunk, predictions: &[Option<Prediction>]) -> Result<()>;
    fn finish(self) -> Result<()>;
}

/// The names of the prediction columns after the input's `taken` ones: `sentiment`,
/// `confidence`, and `prob_<label>` per label with `probabilities`; a name the input already
/// uses is prefixed with `predicted_`.
pub fn prediction_columns(taken: &[String], labels: &[String], probabilities: bool) -> Vec<String> {
    let name = |base: String| {
        if taken.contains(&base) {
            format!("predicted_{base}")
        } else {
            base
        }
    };
    let mut names = vec![name("sentiment".into()), name("confidence".into())];
    if probabilities {
        names.extend(labels.iter().map(|l| name(format!("prob_{l}"))));
    }
    names
}

/// Runs the whole batch; `progress` receives (done, total, rows done) after every chunk.
pub fn run(args: &BatchArgs, progress: &mut dyn FnMut(u64, u64, u64)) -> Result<BatchSummary> {
    anyhow::ensure!(
        args.batch_size > 0 && args.chunk_rows > 0,
        "--batch-size and --chunk-rows must be positive"
    );
    let input = Input::resolve(&args.input)?;
    let shard = args.shard()?;
    let (output, out_dir) = output_path(args, &input, shard)?;
    let tmp = tempfile::Builder::new()
        .prefix(".batch_predict-")
        .tempfile_in(&out_dir)
        .with_context(|| format!("cannot write in {}", out_dir.display()))?;
    let out = BufWriter::with_capacity(1 << 20, tmp.as_file().try_clone()?);
    let (summary, taken) = if input.format.is_parquet() {
        let rows = ParquetRows::open(&input, shard, &args.text_column)?;
        let classifier = load_classifier(args)?;
        let writer =
            ParquetOut::create(out, rows.schema(), classifier.labels(), args.probabilities)?;
        predict_rows(rows, writer, &classifier, args.chunk_rows, progress)?
    } else {
        let rows = CsvRows::open(&input, shard, &args.text_column)?;
        let classifier = load_classifier(args)?;
        let format = input::Format::of_output(&output);
        let writer = CsvOut::create(
            out,
            format,
            rows.headers(),
            classifier.labels(),
            args.probabilities,
        )?;
        predict_rows(rows, writer, &classifier, args.chunk_rows, progress)?
    };
    persist(tmp, &output)?;
    if let Some(s) = shard {
        Manifest::of(&input, s, summary.rows, taken)?.write(&args.output)?;
    }
    Ok(summary)
}

/// Streams every chunk of `rows` through the model into `writer`.
fn predict_rows<R: RowReader, W: RowWriter<Chunk = R::Chunk>>(
    mut rows: R,
    mut writer: W,
    classifier: &Classifier,
    chunk_rows: usize,
    progress: &mut dyn FnMut(u64, u64, u64),
) -> Result<(BatchSummary, Vec<PartFile>)> {
    let labels = classifier.labels();
    let started = Instant::now();
    let mut summary = BatchSummary::default();
    while let Some(chunk) = rows.next_chunk(chunk_rows)? {
        let texts = rows.texts(&chunk)?;
        let present: Vec<&str> = texts.iter().flatten().map(String::as_str).collect();
        let mut preds = classifier
            .predict(&present)
            .context("the model failed on a chunk of rows")?
            .into_iter();
        let predictions: Vec<Option<Prediction>> = texts
            .iter()
            .map(|t| {
                t.as_ref()
                    .map(|_| preds.next().expect("one prediction per present text"))
            })
            .collect();
        for p in &predictions {
            summary.count(p.as_ref().map(|p| labels[p.class].as_str()));
        }
        writer.write(chunk, &predictions)?;
        let (done, total) = rows.progress();
        progress(done, total, summary.rows);
    }
    writer.finish()?;
    summary.seconds = started.elapsed().as_secs_f64();
    summary.rows_per_s = summary.rows as f64 / summary.seconds.max(1e-9);
    Ok((summary, rows.taken()))
}

impl BatchSummary {
    /// Counts a row and its predicted label (`None`: no text).
    fn count(&mut self, label: Option<&str>) {
        self.rows += 1;
        match label {
            Some(l) => {
                *self.per_label.entry(l.to_string()).or_default() += 1;
                self.predicted += 1;
            }
            None => self.empty += 1,
        }
    }
}

/// The file to write (a shard's part in the output folder) and its folder, created.
fn output_path(
    args: &BatchArgs,
    input: &Input,
    shard: Option<Shard>,
) -> Result<(PathBuf, PathBuf)> {
    let output = match shard {
        Some(s) => s.part_path(&args.output, input.format.part_extension()),
        None => args.output.clone(),
    };
    input.check_output(&output)?;
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
    let env_example = include_str!("../../../../.env.example");
    service::check_env_example(&<BatchArgs as clap::CommandFactory>::command(), env_example);
}

/// Swarm's job slots (0 rendered as the task id, or 1..N) each name a distinct shard.
#[cfg(test)]
#[test]
fn swarm_task_slots_map_onto_every_shard_once() {
    let shard_of = |slot: &str| {
        BatchArgs::parse_from(["batch_predict", "in.csv", "parts", "--shard-count", "3"])
            .with_slot(slot)
            .shard()
            .unwrap()
            .unwrap()
            .index
    };
    let mut from_zero: Vec<usize> = ["s92mheq3ch9p784gq5bc5292t", "1", "2"]
        .iter()
        .map(|s| shard_of(s))
        .collect();
    let mut from_one: Vec<usize> = ["1", "2", "3"].iter().map(|s| shard_of(s)).collect();
    from_zero.sort_unstable();
    from_one.sort_unstable();
    assert_eq!(from_zero, [0, 1, 2]);
    assert_eq!(from_one, [0, 1, 2]);
}

#[cfg(test)]
impl BatchArgs {
    fn with_slot(mut self, slot: &str) -> Self {
        self.shard_slot = Some(slot.to_string());
        self
    }
}
