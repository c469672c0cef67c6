//! The `train` command line: every flag, its env var and default.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use classifier::{MatmulPrecision, Pooling, PoolingChoice, Truncation};

use crate::registry::Promote;
use serde::{Deserialize, Serialize};

/// Fine-tune a DistilBERT (or BERT-family) sentiment classifier on the CPU.
///
/// Reads data/processed/{train,validation,test}.csv (written by `preprocess`), trains with
/// gradient accumulation, evaluates on the validation split after every epoch, keeps the
/// best epoch by validation macro F1 in models/<run-id>/ (Hugging Face layout), fits a
/// confidence temperature on validation, evaluates the kept model once on the test split,
/// writes results/metrics.json, results/run_summary.json and
/// results/runs/<run-id>/metrics.jsonl, and promotes the model into model_output/ (--promote).
///
/// `train models list|promote ID|rollback` manages the versions.
#[derive(Parser, Debug, Clone)]
#[command(version)]
pub struct Args {
    /// Base model: a Hugging Face Hub id or a local model folder (DistilBERT or BERT family,
    /// e.g. an all-MiniLM-L6-v2 folder).
    #[arg(long, env = "MODEL_NAME", default_value = "distilbert-base-uncased")]
    pub base_model: String,

    /// Hub revision (branch, tag or commit) of the base model.
    #[arg(long, env = "MODEL_REVISION")]
    pub revision: Option<String>,

    /// Folder with train.csv, validation.csv and test.csv from `preprocess` (a folder
    /// without validation.csv gets a seeded tenth of train.csv held out instead).
    #[arg(long, env = "DATA_DIR", default_value = "data/processed")]
    pub data_dir: PathBuf,

    /// The served model folder: a finished run's model is copied here (atomically) when it
    /// is promoted (--promote).
    #[arg(long, env = "MODEL_PATH", default_value = "model_output")]
    pub output_dir: PathBuf,

    /// The model versions: each run's model in <models-dir>/<run-id>/, and registry.json
    /// (default: `models` beside the served folder).
    #[arg(long, env = "MODELS_DIR")]
    pub models_dir: Option<PathBuf>,

    /// When a finished run becomes the served model: if-better (its validation macro F1
    /// beats the serving model's on this run's validation split), always, or never.
    #[arg(long, env = "PROMOTE", value_enum, default_value_t = Promote::IfBetter)]
    pub promote: Promote,

    /// Versions kept in the models folder; the oldest never-promoted ones go first.
    #[arg(long, env = "KEEP_MODELS", default_value_t = 10)]
    pub keep_models: usize,

    /// An MLflow tracking server (e.g. http://localhost:5000): each finished run is logged
    /// there (parameters, metric history, model and summary as artifacts), and a promoted
    /// model becomes a new version of --mlflow-model-name. Its failures never fail training.
    #[arg(long, env = "MLFLOW_TRACKING_URI")]
    pub mlflow_tracking_uri: Option<String>,

    /// The MLflow experiment the runs go to (created on first use).
    #[arg(long, env = "MLFLOW_EXPERIMENT_NAME", default_value = "sentiment")]
    pub mlflow_experiment: String,

    /// The MLflow registered model that promoted models become versions of.
    #[arg(long, env = "MLFLOW_MODEL_NAME", default_value = "sentiment")]
    pub mlflow_model_name: String,

    /// A bearer token for the tracking server, if it needs one.
    #[arg(long, env = "MLFLOW_TRACKING_TOKEN", hide_env_values = true)]
    pub mlflow_token: Option<String>,

    /// Where metrics.json, run_summary.json, runs/<run-id>/ and the resume checkpoint go.
    #[arg(long, env = "RESULTS_DIR", default_value = "results")]
    pub results_dir: PathBuf,

    /// Passes over the training data.
    #[arg(long, env = "EPOCHS", default_value_t = 2)]
    pub epochs: usize,

    /// Examples per forward/backward pass (micro-batch).
    #[arg(long, env = "BATCH_SIZE", default_value_t = 8)]
    pub batch_size: usize,

    /// Micro-batches whose gradients are summed into one optimizer step; the effective batch
    /// is batch-size x grad-accum.
    #[arg(long, env = "GRAD_ACCUM_STEPS", default_value_t = 8)]
    pub grad_accum: usize,

    /// Peak learning rate (AdamW).
    #[arg(long, env = "LEARNING_RATE", default_value_t = 5e-5)]
    pub lr: f64,

    /// Decoupled weight decay, not applied to biases and LayerNorm weights.
    #[arg(long, env = "WEIGHT_DECAY", default_value_t = 0.01)]
    pub weight_decay: f64,

    /// Layer-wise learning-rate decay: the head and the top encoder layer learn at --lr, each
    /// layer below at this factor times the one above, the embeddings lowest (Sun et al.
    /// 2019 found 0.95 best for BERT-base). 1 = one rate for every weight.
    #[arg(long, env = "LAYER_LR_DECAY", default_value_t = 1.0)]
    pub layer_lr_decay: f64,

    /// Evaluate and save an exponential moving average of the weights with this decay
    /// instead of the weights themselves (0 = off; 0.99 averages about the last 100
    /// optimizer steps). Smooths the noise of small-batch fine-tuning.
    #[arg(long, env = "EMA_DECAY", default_value_t = 0.0)]
    pub ema_decay: f64,

    /// R-Drop (Liang et al. 2021): run every example twice with different dropout and add
    /// this weight x the symmetric KL divergence between the two predictions to the loss
    /// (0 = off; the paper used 0.1-1 on GLUE). Regularises small data sets; a step costs
    /// about 1.5x as much (one pass over twice the rows).
    #[arg(long, env = "RDROP_ALPHA", default_value_t = 0.0)]
    pub rdrop_alpha: f64,

    /// Share of optimizer steps spent warming the learning rate up linearly.
    #[arg(long, env = "WARMUP_RATIO", default_value_t = 0.06)]
    pub warmup_ratio: f64,

    /// Clip the global gradient norm to this (0 = no clipping).
    #[arg(long, env = "MAX_GRAD_NORM", default_value_t = 1.0)]
    pub max_grad_norm: f64,

    /// Tokens per text, [CLS] and [SEP] included (at most the model's positions).
    #[arg(long, env = "MAX_LENGTH", default_value_t = classifier::text::pipeline::DEFAULT_MAX_LENGTH)]
    pub max_length: usize,

    /// Which tokens of a longer text to keep: head, tail or head-tail (first quarter + last
    /// three quarters; best for long reviews per Sun et al. 2019). Serving uses the same.
    #[arg(long, env = "TRUNCATION", default_value = "head-tail")]
    pub truncation: Truncation,

    /// What the classification head reads: `cls` (the first token, as transformers'
    /// DistilBertForSequenceClassification), `mean` (the mean of the tokens; what
    /// sentence-transformers encoders such as all-MiniLM-L6-v2 were trained with), or `auto`
    /// (the base folder's 1_Pooling/config.json when it has one, else cls). Unset: cls for a
    /// fresh head, and a fine-tuned base keeps its own. A mean-pooled model_output is ours to
    /// serve: transformers would load it as first-token.
    #[arg(long, env = "POOLING", value_enum)]
    pub pooling: Option<PoolingArg>,

    /// Precision of the matrix products: `f32`, or `bf16` (operands rounded to bf16, sums in
    /// f32: what PyTorch's bf16 autocast does to products; weights, gradients and the
    /// optimizer stay f32). bf16 is faster on CPUs with AMX (Intel Xeon 4th generation and
    /// later) or AVX-512 BF16 (AMD Zen 4 and later); elsewhere products stay f32, with a
    /// warning.
    #[arg(long, env = "MATMUL_PRECISION", default_value = "f32")]
    pub matmul_precision: MatmulPrecision,

    /// Train on a seeded, stratified sample of this many examples (0 = all).
    #[arg(long, env = "TRAIN_SAMPLES", default_value_t = 1500)]
    pub train_samples: usize,

    /// Select the epoch and fit the temperature on a seeded, stratified sample of this many
    /// validation examples (0 = all).
    #[arg(long, env = "EVAL_SAMPLES", default_value_t = 500)]
    pub eval_samples: usize,

    /// Evaluate the kept model once on a seeded, stratified sample of this many test
    /// examples (0 = all).
    #[arg(long, env = "TEST_SAMPLES", default_value_t = 2000)]
    pub test_samples: usize,

    /// Class weights of the loss: `balanced` weighs each class by the inverse of its share
    /// of the training data (n / (classes x n_class)), so a 70%-negative data set does not
    /// teach the model to say "negative" when unsure; `none` weighs every example alike;
    /// `auto` is balanced when the largest class exceeds 55% of the training data.
    #[arg(long, env = "CLASS_WEIGHT", value_enum, default_value_t = ClassWeight::Auto)]
    pub class_weight: ClassWeight,

    /// Seed for sampling, batch order, dropout and a fresh classification head.
    #[arg(long, env = "SEED", default_value_t = 42)]
    pub seed: u64,

    /// CPU threads (default: all available cores).
    #[arg(long, env = "NUM_THREADS")]
    pub threads: Option<usize>,

    /// Log a line (and a metrics.jsonl record) every this many optimizer steps.
    #[arg(long, env = "LOG_EVERY", default_value_t = 10)]
    pub log_every: u64,

    /// Save a resumable checkpoint every this many optimizer steps (0 = only when
    /// interrupted). Ctrl-C / SIGTERM always save one.
    #[arg(long, env = "CHECKPOINT_EVERY", default_value_t = 25)]
    pub checkpoint_every: u64,

    /// Continue the interrupted run whose checkpoint is in results/checkpoint.
    #[arg(long, env = "RESUME")]
    pub resume: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassWeight {
    None,
    Balanced,
    Auto,
}

/// `auto` turns balanced weights on above this majority share.
pub const AUTO_BALANCE_ABOVE: f64 = 0.55;

impl ClassWeight {
    /// The loss weight of each class for training labels with these per-class counts;
    /// `None` when every example weighs 1.
    pub fn weights(self, counts: &[usize]) -> Option<Vec<f64>> {
        let n: usize = counts.iter().sum();
        let majority = counts.iter().copied().max().unwrap_or(0) as f64 / n.max(1) as f64;
        let balanced = match self {
            ClassWeight::None => false,
            ClassWeight::Balanced => true,
            ClassWeight::Auto => majority > AUTO_BALANCE_ABOVE,
        };
        balanced.then(|| {
            counts
                .iter()
                .map(|&c| n as f64 / (counts.len() as f64 * c.max(1) as f64))
                .collect()
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PoolingArg {
    Auto,
    Cls,
    Mean,
}

impl Args {
    /// The models folder: --models-dir, else `models` beside the served folder.
    pub fn models_dir(&self) -> PathBuf {
        classifier::results::versions::models_dir(self.models_dir.as_deref(), &self.output_dir)
    }

    /// MLflow tracking, when a server is named.
    pub fn mlflow(&self) -> Option<crate::tracking::MlflowSettings> {
        Some(crate::tracking::MlflowSettings {
            uri: self.mlflow_tracking_uri.clone()?,
            experiment: self.mlflow_experiment.clone(),
            model_name: self.mlflow_model_name.clone(),
            token: self.mlflow_token.clone(),
        })
    }

    /// The head's pooling as asked on the command line.
    pub fn pooling_choice(&self) -> PoolingChoice {
        match self.pooling {
            None => PoolingChoice::Keep,
            Some(PoolingArg::Auto) => PoolingChoice::Auto,
            Some(PoolingArg::Cls) => PoolingChoice::Exactly(Pooling::Cls),
            Some(PoolingArg::Mean) => PoolingChoice::Exactly(Pooling::Mean),
        }
    }
}

/// The settings that decide what a run computes; a resume must match them exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hyperparameters {
    pub base_model: String,
    pub revision: Option<String>,
    pub epochs: usize,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub effective_batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Runs checkpointed before this field had one rate for all (1).
    #[serde(default = "one")]
    pub layer_lr_decay: f64,
    /// Runs checkpointed before this field had no average (0).
    #[serde(default)]
    pub ema_decay: f64,
    /// Runs checkpointed before this field had no R-Drop (0).
    #[serde(default)]
    pub rdrop_alpha: f64,
    pub warmup_ratio: f64,
    pub max_grad_norm: f64,
    pub adam_betas: (f64, f64),
    pub adam_eps: f64,
    pub max_length: usize,
    pub truncation: Truncation,
    /// As resolved for the base model (runs checkpointed before this field were first-token).
    #[serde(default)]
    pub pooling: Pooling,
    /// As asked; the run summary says what the CPU ran.
    #[serde(default)]
    pub matmul_precision: MatmulPrecision,
    pub train_samples: usize,
    pub eval_samples: usize,
    /// Runs checkpointed before this field evaluated every epoch on test (0 here).
    #[serde(default)]
    pub test_samples: usize,
    /// Per-class loss weights as resolved (`None`: all 1; runs checkpointed before this
    /// field had none).
    #[serde(default)]
    pub class_weights: Option<Vec<f64>>,
    pub seed: u64,
}

fn one() -> f64 {
    1.0
}

impl Args {
    pub fn validate(&self) -> anyhow::Result<()> {
        let positive = [
            ("--epochs", self.epochs),
            ("--batch-size", self.batch_size),
            ("--grad-accum", self.grad_accum),
        ];
        for (name, v) in positive {
            anyhow::ensure!(v > 0, "{name} must be at least 1");
        }
        anyhow::ensure!(
            self.lr > 0.0 && self.lr.is_finite(),
            "--lr must be positive"
        );
        anyhow::ensure!(
            (0.0..1.0).contains(&self.warmup_ratio),
            "--warmup-ratio must be in [0, 1)"
        );
        anyhow::ensure!(
            self.layer_lr_decay > 0.0 && self.layer_lr_decay <= 1.0,
            "--layer-lr-decay must be in (0, 1]"
        );
        anyhow::ensure!(
            (0.0..1.0).contains(&self.ema_decay),
            "--ema-decay must be in [0, 1)"
        );
        anyhow::ensure!(
            self.rdrop_alpha >= 0.0 && self.rdrop_alpha.is_finite(),
            "--rdrop-alpha must be >= 0"
        );
        anyhow::ensure!(self.max_grad_norm >= 0.0, "--max-grad-norm must be >= 0");
        anyhow::ensure!(self.max_length >= 8, "--max-length must be at least 8");
        Ok(())
    }

    /// What this run will compute with, after the model caps `max_length`, the head
    /// resolves the pooling and the training labels the class weights.
    pub fn hyperparameters(
        &self,
        max_length: usize,
        pooling: Pooling,
        class_weights: Option<Vec<f64>>,
    ) -> Hyperparameters {
        let adam = crate::optim::AdamWConfig::default();
        Hyperparameters {
            base_model: self.base_model.clone(),
            revision: self.revision.clone(),
            epochs: self.epochs,
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            effective_batch_size: self.batch_size * self.grad_accum,
            lr: self.lr,
            weight_decay: self.weight_decay,
            layer_lr_decay: self.layer_lr_decay,
            ema_decay: self.ema_decay,
            rdrop_alpha: self.rdrop_alpha,
            warmup_ratio: self.warmup_ratio,
            max_grad_norm: self.max_grad_norm,
            adam_betas: (adam.beta1, adam.beta2),
            adam_eps: adam.eps,
            max_length,
            truncation: self.truncation,
            pooling,
            matmul_precision: self.matmul_precision,
            train_samples: self.train_samples,
            eval_samples: self.eval_samples,
            test_samples: self.test_samples,
            class_weights,
            seed: self.seed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_weights_are_inverse_frequency_and_auto_needs_a_skew() {
        let w = ClassWeight::Balanced.weights(&[300, 100]).unwrap();
        assert_eq!(w, vec![400.0 / 600.0, 400.0 / 200.0]);
        let mean = (300.0 * w[0] + 100.0 * w[1]) / 400.0;
        assert!(
            (mean - 1.0).abs() < 1e-12,
            "weights average to 1 over the data"
        );
        assert_eq!(ClassWeight::Auto.weights(&[300, 100]), Some(w));
        assert_eq!(
            ClassWeight::Auto.weights(&[55, 45]),
            None,
            "55% is not a skew"
        );
        assert_eq!(ClassWeight::None.weights(&[300, 100]), None);
    }
}

/// Compose passes `${NAME:-}`, so these defaults are the ones in force.
#[cfg(test)]
#[test]
fn env_example_shows_the_defaults() {
    let env_example = include_str!("../../../.env.example");
    service::check_env_example(&<Args as clap::CommandFactory>::command(), env_example);
}
