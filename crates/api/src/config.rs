//! The `api` command line: every setting a flag and an env var.

use std::path::PathBuf;

use clap::Parser;
use classifier::{LongText, LongTextPolicy, Precision};

/// How texts longer than the model's max length are read: shared by `api` and
/// `batch_predict`.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct LongTextArgs {
    /// `windows`: a text longer than the model's max length is read in overlapping windows
    /// whose logits are averaged (a 700-word review costs about four forward passes; texts
    /// that fit cost what they did); `truncate`: keep max-length tokens as the model was
    /// trained (its pipeline's truncation), one pass per text.
    #[arg(long, env = "LONG_TEXT", default_value_t = LongText::Windows)]
    pub long_text: LongText,

    /// Word pieces between the starts of two windows (0 = half a window).
    #[arg(long, env = "WINDOW_STRIDE", default_value_t = 0)]
    pub window_stride: usize,
}

impl LongTextArgs {
    pub fn policy(&self) -> LongTextPolicy {
        LongTextPolicy {
            mode: self.long_text,
            stride: self.window_stride,
        }
    }
}

/// The prediction log and live monitoring.
#[derive(clap::Args, Debug, Clone)]
pub struct MonitorArgs {
    /// Log every prediction (and accept POST /feedback): a SQLite file, e.g.
    /// `sqlite:///app/results/predictions.db` (one replica), or a PostgreSQL URL,
    /// `postgres://user:password@host:5432/db` (several replicas). Unset: no log.
    #[arg(long, env = "PREDICTION_LOG", hide_env_values = true)]
    pub prediction_log: Option<String>,

    /// Keep each text in the log; `false` keeps only its hash and length (then corrections
    /// cannot become training examples).
    #[arg(long, env = "LOG_TEXT", default_value_t = true, action = clap::ArgAction::Set)]
    pub log_text: bool,

    /// Keep at most this many predictions in the log, the newest (0: no bound). Corrected
    /// predictions are always kept.
    #[arg(long, env = "PREDICTION_LOG_MAX_ROWS", default_value_t = 1_000_000)]
    pub prediction_log_max_rows: u64,

    /// Delete predictions older than this many days (0: keep them). Corrected predictions
    /// are always kept.
    #[arg(long, env = "PREDICTION_LOG_MAX_DAYS", default_value_t = 0)]
    pub prediction_log_max_days: u64,

    /// Predictions waiting to be written; when the database is slow or down and this fills,
    /// predictions are still answered but not logged (counted in
    /// prediction_log_rows_dropped_total).
    #[arg(long, env = "PREDICTION_LOG_BUFFER", default_value_t = 10_000)]
    pub prediction_log_buffer: usize,

    /// Predictions in the live window behind /metrics' monitor_* gauges and drift scores.
    #[arg(long, env = "MONITOR_WINDOW", default_value_t = 1000)]
    pub monitor_window: usize,
}

impl MonitorArgs {
    /// PREDICTION_LOG, unless empty or `off` (compose's way to turn its default log off).
    pub fn log_url(&self) -> Option<&str> {
        self.prediction_log
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty() && !u.eq_ignore_ascii_case("off"))
    }
}

/// Serve the sentiment model over HTTP: POST /predict, GET /health, /info, /metrics,
/// /openapi.json and /docs.
#[derive(Parser, Debug, Clone)]
#[command(version)]
pub struct Args {
    /// Port to listen on.
    #[arg(long, env = "APP_PORT", default_value_t = 8000)]
    pub port: u16,

    /// Address to bind.
    #[arg(long, env = "APP_HOST", default_value = "0.0.0.0")]
    pub host: String,

    /// The model folder `train` wrote (Hugging Face layout), or a Hugging Face Hub id
    /// (owner/name) of a fine-tuned `*ForSequenceClassification`, fetched into the cache.
    #[arg(long, env = "MODEL_PATH", default_value = "model_output")]
    pub model_path: PathBuf,

    /// Where the training run's metrics.json lies, reported by /info.
    #[arg(long, env = "RESULTS_DIR", default_value = "results")]
    pub results_dir: PathBuf,

    /// The model versions `train` keeps, listed by GET /models (default: `models` beside
    /// the model folder).
    #[arg(long, env = "MODELS_DIR")]
    pub models_dir: Option<PathBuf>,

    /// Texts per forward pass of the model.
    #[arg(long, env = "MAX_BATCH_SIZE", default_value_t = 32)]
    pub max_batch_size: usize,

    /// Tokens per forward pass (texts x longest, padding included).
    #[arg(long, env = "MAX_BATCH_TOKENS", default_value_t = 16384)]
    pub max_batch_tokens: usize,

    /// Texts waiting for the model before new requests get 429.
    #[arg(long, env = "MAX_QUEUE", default_value_t = 512)]
    pub max_queue: usize,

    /// Texts per request.
    #[arg(long, env = "MAX_INPUTS", default_value_t = 64)]
    pub max_inputs: usize,

    /// Largest request body, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// When set, POST /predict requires `Authorization: Bearer <key>`.
    #[arg(long, env = "API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// CPU threads for the model (default: all available cores).
    #[arg(long, env = "NUM_THREADS")]
    pub threads: Option<usize>,

    /// Precision of the model's matrix products: f32, or int8 (dynamic quantisation:
    /// faster, especially for single texts, and within about half a point of f32's accuracy).
    #[arg(long, env = "PRECISION", default_value = "f32")]
    pub precision: Precision,

    /// Seconds between attempts to load a model that is missing or broken.
    #[arg(long, env = "MODEL_RETRY_SECONDS", default_value_t = 10)]
    pub model_retry_seconds: u64,

    /// A new model in the model folder is loaded, warmed up and swapped in without dropping a
    /// request: at once on file events, and checked every this many seconds for mounts that
    /// deliver none (0: only on POST /admin/reload or SIGHUP).
    #[arg(long, env = "MODEL_POLL_SECONDS", default_value_t = 5)]
    pub model_poll_seconds: u64,

    /// Seconds between SIGTERM and closing the listener. Meanwhile /health/ready answers 503
    /// (so a load balancer or Kubernetes stops sending new requests) while requests keep
    /// being served; then in-flight and queued work finishes and the process exits 0.
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", default_value_t = 5)]
    pub shutdown_grace_seconds: u64,

    #[command(flatten)]
    pub long_text: LongTextArgs,

    #[command(flatten)]
    pub monitor: MonitorArgs,
}

impl Args {
    /// --models-dir, else `models` beside the model folder.
    pub fn models_dir(&self) -> PathBuf {
        classifier::results::versions::models_dir(self.models_dir.as_deref(), &self.model_path)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.max_batch_size > 0,
            "--max-batch-size must be at least 1"
        );
        anyhow::ensure!(self.max_inputs > 0, "--max-inputs must be at least 1");
        anyhow::ensure!(
            self.max_queue >= self.max_inputs,
            "--max-queue ({}) must hold at least one full request (--max-inputs {})",
            self.max_queue,
            self.max_inputs
        );
        anyhow::ensure!(self.max_body_bytes >= 64, "--max-body-bytes is too small");
        anyhow::ensure!(
            self.monitor.monitor_window > 0,
            "--monitor-window must be at least 1"
        );
        if let Some(url) = self.monitor.log_url() {
            prediction_log::check_url(url)?;
        }
        Ok(())
    }
}

/// Compose passes `${NAME:-}`, so these defaults are the ones in force.
#[cfg(test)]
#[test]
fn env_example_shows_the_defaults() {
    let env_example = include_str!("../../../.env.example");
    service::check_env_example(&<Args as clap::CommandFactory>::command(), env_example);
}
