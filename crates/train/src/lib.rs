//! Fine-tuning the DistilBERT sentiment classifier on the CPU.
//!
//! - [`config`]: the command line (every flag with its env var).
//! - [`data`]: sampling and length-grouped micro-batches.
//! - [`optim`], [`schedule`]: fused AdamW with accumulation and clipping; linear warm-up
//!   and decay.
//! - [`ema`]: the moving average of the weights that evaluation and the saved model use.
//! - [`trainer`]: the loop, evaluation, best-epoch saving.
//! - [`evaluate`]: metrics overall and per source.
//! - [`resume`]: checkpoints that `--resume` continues from.
//! - [`runlog`]: metrics.jsonl, metrics.json, run_summary.json.
//! - [`tracking`]: the finished run logged to an MLflow tracking server.
//! - [`registry`]: model versions in models/<run-id>/, promotion into model_output/,
//!   rollback.

#![forbid(unsafe_code)]

pub mod config;
pub mod data;
pub mod ema;
pub mod evaluate;
pub mod optim;
pub mod registry;
pub mod resume;
pub mod runlog;
pub mod schedule;
pub mod tracking;
pub mod trainer;

pub use config::Args;
pub use trainer::{Outcome, run};
