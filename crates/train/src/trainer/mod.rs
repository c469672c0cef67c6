//! The training loop: micro-batches, gradient accumulation, schedule, evaluation on the
//! validation split after every epoch, the best epoch kept in the model folder, checkpoints,
//! then the kept model's calibration (on validation) and its one evaluation on the test
//! split, and the run's records.
//!
//! Here: the run's set-up, resume and interrupt. [`step`]: one micro-batch and optimizer
//! step. [`epochs`]: the epoch loop. [`evaluation`]: validation, calibration, test.
//! [`record`]: metrics.json and run_summary.json.

mod epochs;
mod evaluation;
mod record;
mod step;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use classifier::dataset::{Example, TRAIN_FILE};
use classifier::model_dir::Purpose;
use classifier::models::Trainable;
use classifier::results;
use classifier::{Cleaning, LoadOptions, ModelFiles, Pipeline};
use indicatif::ProgressBar;

use crate::config::{Args, Hyperparameters};
use crate::data::{load_splits, stratified_sample};
use crate::ema::Ema;
use crate::optim::{AdamW, AdamWConfig};
use crate::resume::{self, TrainState};
use crate::runlog::{DataStats, RunSummary};
use crate::schedule::LinearSchedule;

pub use classifier::text::cleaning::CLEANING_FILE;

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    Completed(Box<RunSummary>),
    /// Stopped by a signal; the checkpoint lets `--resume` carry on.
    Interrupted {
        checkpoint: PathBuf,
    },
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Examples per class, in class-index order.
fn class_balance(examples: &[Example], classes: usize) -> Vec<usize> {
    let mut counts = vec![0; classes];
    for e in examples {
        counts[e.label] += 1;
    }
    counts
}

fn load_cleaning(data_dir: &Path) -> Result<Cleaning> {
    let path = data_dir.join(CLEANING_FILE);
    if !path.is_file() {
        tracing::warn!(
            "{} not found: the data was not made by `preprocess`, so the model will serve text uncleaned",
            path.display()
        );
        return Ok(Cleaning::none());
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a cleaning file", path.display()))
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// Everything a run needs, prepared once.
struct Run<'a> {
    args: &'a Args,
    /// This run's version folder, models/<run-id>/ (known once the run id is).
    model_dir: PathBuf,
    hyper: Hyperparameters,
    ckpt_dir: PathBuf,
    train: Vec<Example>,
    train_ids: Vec<Vec<u32>>,
    eval: Vec<Example>,
    eval_ids: Vec<Vec<u32>>,
    base: ModelFiles,
    pipeline: Pipeline,
    model: Trainable,
    optimizer: AdamW,
    /// The weight average that evaluation and the saved model use (`--ema-decay`).
    ema: Option<Ema>,
    schedule: LinearSchedule,
    micro_batches_per_epoch: usize,
}

/// Trains as `args` say. `stop` is polled between micro-batches: once set, the run saves a
/// checkpoint and returns [`Outcome::Interrupted`].
pub fn run(args: &Args, stop: &AtomicBool) -> Result<Outcome> {
    args.validate()?;
    let wall = Instant::now();
    let splits = load_splits(&args.data_dir, args.seed)?;
    let (train_available, eval_available) = (splits.train.len(), splits.validation.len());
    let train = stratified_sample(splits.train, args.train_samples, args.seed);
    let eval = stratified_sample(splits.validation, args.eval_samples, args.seed ^ 1);
    let counts = class_balance(&train, splits.labels.len());
    if let Some(empty) = counts.iter().position(|&c| c == 0) {
        bail!(
            "{} has no `{}` rows (rows per class {}: {counts:?}): a classifier needs examples \
             of every class; drop the class from the label map or add data",
            args.data_dir.join(TRAIN_FILE).display(),
            splits.labels[empty],
            splits.labels.join("/"),
        );
    }
    let class_weights = args.class_weight.weights(&counts);
    let cleaning = load_cleaning(&args.data_dir)?;
    set_products(args);
    let base = load_base(args, &splits.labels)?;
    let max_length = args.max_length.min(base.config.max_tokens());
    if max_length < args.max_length {
        tracing::warn!(
            "--max-length {} exceeds the model's {} positions; using {max_length}",
            args.max_length,
            base.config.max_tokens()
        );
    }
    let hyper = args.hyperparameters(max_length, base.config.pooling(), class_weights);
    let pipeline = Pipeline {
        cleaning,
        max_length,
        truncation: args.truncation,
        temperature: 1.0,
    };
    let encode = |examples: &[Example]| {
        let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
        base.tokenizer
            .encode_batch(&texts, max_length, args.truncation)
    };
    let (train_ids, eval_ids) = (encode(&train)?, encode(&eval)?);

    let model = base.trainable()?;
    let optimizer = optimizer(args, &model);
    let ema = (args.ema_decay > 0.0)
        .then(|| Ema::new(&model.params, args.ema_decay))
        .transpose()?;
    let micro_batches_per_epoch = train.len().div_ceil(args.batch_size);
    let steps_per_epoch = micro_batches_per_epoch.div_ceil(args.grad_accum) as u64;
    let schedule = LinearSchedule::new(
        args.lr,
        args.warmup_ratio,
        steps_per_epoch * args.epochs as u64,
    );
    let run = Run {
        args,
        model_dir: PathBuf::new(),
        hyper,
        ckpt_dir: args.results_dir.join(results::CHECKPOINT_DIR),
        train,
        train_ids,
        eval,
        eval_ids,
        base,
        pipeline,
        model,
        optimizer,
        ema,
        schedule,
        micro_batches_per_epoch,
    };
    let data = run.data_stats(
        (train_available, eval_available),
        splits.validation_from,
        max_length,
    );
    run.train_loop(stop, wall, data)
}

/// Sets the process's product precision as --matmul-precision asks, with a warning when
/// this CPU runs them otherwise.
fn set_products(args: &Args) {
    let products = classifier::set_matmul_precision(args.matmul_precision);
    if products != args.matmul_precision {
        let why = kernels::gemm::bf16_fallback_reason().unwrap_or_default();
        tracing::warn!(
            "--matmul-precision {} runs products in {products}: {why}",
            args.matmul_precision
        );
    }
}

/// The base model to fine-tune on `labels`, with a fresh head where it has none of that size.
fn load_base(args: &Args, labels: &[String]) -> Result<ModelFiles> {
    tracing::info!(model = %args.base_model, "loading the base model");
    let mut base = ModelFiles::load(
        &args.base_model,
        &LoadOptions {
            labels: Some(labels.to_vec()),
            seed: args.seed,
            revision: args.revision.clone(),
            pooling: args.pooling_choice(),
            purpose: Purpose::Train,
        },
    )
    .with_context(|| format!("loading base model `{}`", args.base_model))?;
    // transformers' convention for "fine-tuned from": the api's /info reports it.
    base.config
        .extra_mut()
        .insert("_name_or_path".into(), base.source.id.clone().into());
    Ok(base)
}

/// AdamW over the model's parameters with the run's decay, layer-wise rates and clipping.
fn optimizer(args: &Args, model: &Trainable) -> AdamW {
    AdamW::new(
        model.params.clone(),
        AdamWConfig {
            weight_decay: args.weight_decay,
            layer_lr_decay: args.layer_lr_decay,
            max_grad_norm: (args.max_grad_norm > 0.0).then_some(args.max_grad_norm),
            ..AdamWConfig::default()
        },
    )
}

impl Run<'_> {
    /// The class names being trained, in index order.
    fn labels(&self) -> Vec<String> {
        self.base
            .config
            .labels()
            .expect("the loaded config was validated")
    }

    /// What the run trains and evaluates on, for the run summary: `available` rows of train
    /// and validation before sampling.
    fn data_stats(
        &self,
        (train_rows_available, eval_rows_available): (usize, usize),
        validation_from: String,
        max_length: usize,
    ) -> DataStats {
        let mut train_sources: Vec<String> = self.train.iter().map(|e| e.source.clone()).collect();
        train_sources.sort();
        train_sources.dedup();
        let tokens = &self.train_ids;
        DataStats {
            data_dir: self.args.data_dir.clone(),
            train_rows_available,
            train_rows: self.train.len(),
            eval_rows_available,
            eval_rows: self.eval.len(),
            validation_from,
            test_rows_available: 0,
            test_rows: 0,
            train_class_balance: class_balance(&self.train, self.labels().len()),
            eval_class_balance: class_balance(&self.eval, self.labels().len()),
            test_class_balance: Vec::new(),
            train_sources,
            mean_train_tokens: tokens.iter().map(Vec::len).sum::<usize>() as f64
                / tokens.len() as f64,
            fraction_truncated: tokens.iter().filter(|i| i.len() >= max_length).count() as f64
                / tokens.len() as f64,
        }
    }

    fn fresh_state(&self) -> TrainState {
        let started_at = now();
        // The time, and a few random bits: runs started in the same second get their own
        // version folders.
        let salt = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
            ^ std::process::id().rotate_left(16);
        TrainState {
            run_id: format!("{}-{:04x}", started_at.replace(':', "-"), salt & 0xffff),
            started_at,
            hyperparameters: self.hyper.clone(),
            train_rows: self.train.len(),
            eval_rows: self.eval.len(),
            epoch: 0,
            next_batch: 0,
            optimizer_step: 0,
            best_epoch: None,
            best_f1: None,
            history: Vec::new(),
            train_seconds: 0.0,
            wall_seconds: 0.0,
            examples_seen: 0,
            resumed: 0,
        }
    }

    /// The state to start from: the checkpoint's with --resume, else a fresh run's.
    fn start_state(&mut self) -> Result<TrainState> {
        if !self.args.resume {
            if resume::exists(&self.ckpt_dir) {
                tracing::warn!(
                    "starting a new run; the unfinished one in {} will be overwritten (pass --resume to continue it)",
                    self.ckpt_dir.display()
                );
            }
            return Ok(self.fresh_state());
        }
        let mut s = resume::restore(
            &self.ckpt_dir,
            &self.hyper,
            self.train.len(),
            self.eval.len(),
            &self.model,
            &mut self.optimizer,
            self.ema.as_mut(),
        )?;
        s.resumed += 1;
        tracing::info!(
            epoch = s.epoch + 1,
            step = s.optimizer_step,
            "resuming run {}",
            s.run_id
        );
        Ok(s)
    }

    fn checkpoint(&self, state: &TrainState) -> Result<()> {
        resume::save(
            &self.ckpt_dir,
            state,
            &self.model,
            &self.optimizer,
            self.ema.as_ref(),
        )
        .with_context(|| format!("saving a checkpoint to {}", self.ckpt_dir.display()))
    }

    fn interrupted(&self, state: &TrainState, progress: &ProgressBar) -> Result<Outcome> {
        progress.abandon();
        self.checkpoint(state)?;
        tracing::warn!(
            "interrupted at epoch {} step {}: checkpoint saved to {}; continue with `train --resume` and the same flags",
            state.epoch + 1,
            state.optimizer_step,
            self.ckpt_dir.display()
        );
        Ok(Outcome::Interrupted {
            checkpoint: self.ckpt_dir.clone(),
        })
    }
}
