//! What a run leaves behind: `results/runs/<run-id>/metrics.jsonl` (a line per logging step
//! and per evaluation), `results/metrics.json` and `results/run_summary.json`.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use classifier::MatmulPrecision;
use serde::{Deserialize, Serialize};

use classifier::calibration::Calibration;

use crate::config::Hyperparameters;
use crate::evaluate::Evaluation;

/// One line of metrics.jsonl.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Record {
    Train {
        step: u64,
        epoch: f64,
        loss: f64,
        lr: f64,
        grad_norm: f64,
        examples_per_s: f64,
    },
    Eval {
        step: u64,
        epoch: usize,
        #[serde(flatten)]
        metrics: Evaluation,
    },
}

/// Appends records to a run's metrics.jsonl, flushing each so a crash loses nothing.
pub struct RunLog {
    path: PathBuf,
    out: BufWriter<File>,
}

impl RunLog {
    pub fn open(results: &Path, run_id: &str) -> Result<Self> {
        let dir = classifier::results::run_dir(results, run_id);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(classifier::results::RUN_LOG_FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Self {
            path,
            out: BufWriter::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&mut self, record: &Record) -> Result<()> {
        serde_json::to_writer(&mut self.out, record)?;
        self.out.write_all(b"\n")?;
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// One finished epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub optimizer_steps: u64,
    /// Mean training loss over the epoch's micro-batches.
    pub train_loss: f64,
    pub eval: Evaluation,
}

/// `results/metrics.json`: the kept model's one evaluation on the test split (flattened),
/// with what selected and calibrated it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricsFile {
    #[serde(flatten)]
    pub eval: Evaluation,
    pub epoch: usize,
    pub labels: Vec<String>,
    /// What the metrics were computed on.
    pub split: String,
    /// How the kept epoch was chosen (never on the test split).
    pub selection: String,
    /// The kept model on the validation split, calibrated, as served.
    pub validation: Evaluation,
    pub calibration: CalibrationReport,
    pub model_dir: PathBuf,
}

/// The confidence temperature and what it did on held-out data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CalibrationReport {
    /// Probabilities are `softmax(logits / temperature)`; stored in pipeline.json.
    pub temperature: f32,
    pub fitted_on: String,
    pub validation_nll_before: f64,
    pub validation_nll_after: f64,
    pub validation_ece_before: f64,
    pub validation_ece_after: f64,
    pub test_ece_before: f64,
    pub test_ece_after: f64,
    /// The test split's reliability diagram, before and after.
    pub test_reliability_before: Calibration,
    pub test_reliability: Calibration,
}

/// `results/run_summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_id: String,
    pub status: String,
    pub started_at: String,
    pub finished_at: String,
    pub base_model: BaseModel,
    pub hyperparameters: Hyperparameters,
    pub data: DataStats,
    /// Each epoch's evaluation on the validation split.
    pub epochs: Vec<EpochRecord>,
    pub best_epoch: Option<usize>,
    /// How the kept epoch was chosen.
    #[serde(default)]
    pub selection: String,
    /// The kept model's one evaluation on the test split.
    #[serde(default)]
    pub test: Option<Evaluation>,
    #[serde(default)]
    pub calibration: Option<CalibrationReport>,
    pub wall_time_s: f64,
    pub train_time_s: f64,
    pub train_examples_per_s: f64,
    pub optimizer_steps: u64,
    pub peak_rss_mb: Option<f64>,
    pub threads: usize,
    /// The precision products really ran in (bf16 falls back to f32 where bf16 products would
    /// not be faster: without AMX, or with only Intel's AVX-512 BF16).
    #[serde(default)]
    pub matmul_precision: MatmulPrecision,
    pub resumed: u32,
    pub versions: Versions,
    pub outputs: Outputs,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaseModel {
    pub id: String,
    /// Hub commit, when it came from the Hub.
    pub revision: Option<String>,
    pub model_type: String,
    /// `loaded` or `fresh` (with why).
    pub head: String,
    pub parameters: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataStats {
    pub data_dir: PathBuf,
    pub train_rows_available: usize,
    pub train_rows: usize,
    /// Validation rows (the per-epoch evaluation) available and used.
    pub eval_rows_available: usize,
    pub eval_rows: usize,
    /// `validation.csv`, or the share of train.csv held out for a folder without one.
    #[serde(default)]
    pub validation_from: String,
    #[serde(default)]
    pub test_rows_available: usize,
    #[serde(default)]
    pub test_rows: usize,
    pub train_class_balance: Vec<usize>,
    pub eval_class_balance: Vec<usize>,
    #[serde(default)]
    pub test_class_balance: Vec<usize>,
    pub train_sources: Vec<String>,
    /// Mean tokens per training text after truncation, and the share truncated.
    pub mean_train_tokens: f64,
    pub fraction_truncated: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Versions {
    pub sentiment_rs: String,
    pub candle: String,
    pub tokenizers: String,
}

impl Default for Versions {
    fn default() -> Self {
        Self {
            sentiment_rs: env!("CARGO_PKG_VERSION").into(),
            candle: env!("DEP_VERSION_CANDLE_CORE").into(),
            tokenizers: env!("DEP_VERSION_TOKENIZERS").into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outputs {
    /// The run's version folder, models/<run-id>/.
    pub model_dir: PathBuf,
    pub metrics: PathBuf,
    pub run_log: PathBuf,
    /// Whether the model was promoted into the served folder, and why (or why not).
    #[serde(default)]
    pub promoted: Option<bool>,
    #[serde(default)]
    pub promotion: Option<String>,
    /// The served folder (model_output/).
    #[serde(default)]
    pub served_dir: Option<PathBuf>,
}
