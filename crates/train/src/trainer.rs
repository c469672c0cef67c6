//! The training loop: micro-batches, gradient accumulation, schedule, evaluation on the
//! validation split after every epoch, the best epoch kept in the model folder, checkpoints,
//! then the kept model's calibration (on validation) and its one evaluation on the test
//! split, and the run's records.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use classifier::dataset::{Example, LABELS, TEST_FILE, TRAIN_FILE, read_examples};
use classifier::model_dir::PIPELINE_FILE;
use classifier::model_dir::{self, Head, Purpose, SaveRequest};
use classifier::models::Trainable;
use classifier::models::distilbert::Mode;
use classifier::results;
use classifier::{
    Classifier, Cleaning, LoadOptions, ModelFiles, Pipeline, Prediction, calibration,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{Args, Hyperparameters};
use crate::data::{epoch_batches, load_splits, stratified_sample};
use crate::ema::Ema;
use crate::evaluate::{self, Evaluation, score};
use crate::optim::{AdamW, AdamWConfig, StepStats};
use crate::resume::{self, TrainState};
use crate::runlog::{
    BaseModel, CalibrationReport, DataStats, EpochRecord, MetricsFile, Outputs, Record, RunLog,
    RunSummary, Versions,
};
use crate::schedule::LinearSchedule;

pub use classifier::text::cleaning::CLEANING_FILE;

/// Examples evaluated between checks for an interrupt.
const EVAL_CHUNK: usize = 256;

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

fn dropout_seed(seed: u64, epoch: usize, micro_batch: usize) -> u64 {
    kernels::site_seed(
        seed ^ 0xD409_0D70,
        ((epoch as u64) << 32) | micro_batch as u64,
    )
}

fn class_balance(examples: &[Example]) -> [usize; 2] {
    let pos = examples.iter().filter(|e| e.label == 1).count();
    [examples.len() - pos, pos]
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

/// Logs the kept model's one look at the test split, and what calibration did.
fn log_final(test: &Evaluation, c: &CalibrationReport) {
    let m = &test.overall;
    tracing::info!(
        "kept model on {} test examples (first look): accuracy {:.4} balanced {:.4} f1 {:.4} macro_f1 {:.4}; temperature {:.3} (validation ECE {:.4} -> {:.4}, test ECE {:.4} -> {:.4})",
        m.examples,
        m.accuracy,
        m.balanced_accuracy,
        m.f1_score,
        m.macro_f1,
        c.temperature,
        c.validation_ece_before,
        c.validation_ece_after,
        c.test_ece_before,
        c.test_ece_after
    );
    for (source, s) in &test.per_source {
        tracing::info!(
            "  {source}: accuracy {:.4} balanced {:.4} f1 {:.4} ({} examples)",
            s.accuracy,
            s.balanced_accuracy,
            s.f1_score,
            s.examples
        );
    }
}

/// The kept model's calibration and its one evaluation on the test split.
struct Final {
    test: Evaluation,
    validation: Evaluation,
    calibration: CalibrationReport,
}

/// The examples and summed loss since the last logged step.
struct Window {
    loss: f64,
    examples: usize,
    start: Instant,
}

impl Window {
    fn new() -> Self {
        Self {
            loss: 0.0,
            examples: 0,
            start: Instant::now(),
        }
    }

    /// Adds a micro-batch of `examples` whose mean loss was `loss`.
    fn add(&mut self, loss: f32, examples: usize) {
        self.loss += f64::from(loss) * examples as f64;
        self.examples += examples;
    }
}

/// Where a logged step falls: its number, its epoch (from 0) and the fraction of epochs
/// done, with the step's learning rate and gradient norm.
struct StepAt {
    step: u64,
    epoch: usize,
    frac_epoch: f64,
    lr: f64,
    grad_norm: f64,
}

/// A run's seconds of training and of wall clock, carried across resumes.
struct Clock {
    wall: Instant,
    train_before: f64,
    wall_before: f64,
    /// Training time of this process so far (optimizer steps done).
    trained: Duration,
}

impl Clock {
    fn new(wall: Instant, state: &TrainState) -> Self {
        Self {
            wall,
            train_before: state.train_seconds,
            wall_before: state.wall_seconds,
            trained: Duration::ZERO,
        }
    }

    /// Records the time so far in `state`; `in_flight` is training not yet in `trained`.
    fn stamp(&self, state: &mut TrainState, in_flight: Duration) {
        state.train_seconds = self.train_before + (self.trained + in_flight).as_secs_f64();
        state.wall_seconds = self.wall_seconds();
    }

    fn wall_seconds(&self) -> f64 {
        self.wall_before + self.wall.elapsed().as_secs_f64()
    }
}

/// What the epoch loop carries along: the run log, the progress bar, the clock, and the
/// flag that asks the run to stop.
struct Tracker<'s> {
    log: RunLog,
    progress: ProgressBar,
    clock: Clock,
    stop: &'s AtomicBool,
}

/// How an epoch's micro-batches ended.
enum EpochEnd {
    /// Every group ran; the mean training loss over the epoch's examples.
    Done { train_loss: f64 },
    /// `stop` was set: `state` says where to resume.
    Stopped,
}

/// Everything a run needs, prepared once.
struct Run<'a> {
    args: &'a Args,
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
    if class_balance(&train).contains(&0) {
        bail!(
            "{} has only one class ({:?} negative/positive): a classifier needs both",
            args.data_dir.join(TRAIN_FILE).display(),
            class_balance(&train)
        );
    }
    let class_weights = args.class_weight.weights(&class_balance(&train));
    let cleaning = load_cleaning(&args.data_dir)?;
    set_products(args);
    let base = load_base(args)?;
    let max_length = args.max_length.min(base.config.max_position_embeddings);
    if max_length < args.max_length {
        tracing::warn!(
            "--max-length {} exceeds the model's {} positions; using {max_length}",
            args.max_length,
            base.config.max_position_embeddings
        );
    }
    let hyper = args.hyperparameters(max_length, base.config.pooling, class_weights);
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

/// The base model to fine-tune, with a fresh two-label head where it has none.
fn load_base(args: &Args) -> Result<ModelFiles> {
    tracing::info!(model = %args.base_model, "loading the base model");
    let mut base = ModelFiles::load(
        &args.base_model,
        &LoadOptions {
            labels: Some(LABELS.iter().map(|s| s.to_string()).collect()),
            seed: args.seed,
            revision: args.revision.clone(),
            pooling: args.pooling_choice(),
            purpose: Purpose::Train,
        },
    )
    .with_context(|| format!("loading base model `{}`", args.base_model))?;
    // transformers' convention for "fine-tuned from": the api's /info reports it.
    base.config
        .extra
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
            train_class_balance: class_balance(&self.train),
            eval_class_balance: class_balance(&self.eval),
            test_class_balance: [0, 0],
            train_sources,
            mean_train_tokens: tokens.iter().map(Vec::len).sum::<usize>() as f64
                / tokens.len() as f64,
            fraction_truncated: tokens.iter().filter(|i| i.len() >= max_length).count() as f64
                / tokens.len() as f64,
        }
    }

    fn fresh_state(&self) -> TrainState {
        let started_at = now();
        TrainState {
            run_id: started_at.replace(':', "-"),
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

    fn forward_backward(
        &self,
        batch: &[usize],
        seed: u64,
    ) -> Result<(f32, candle_core::backprop::GradStore)> {
        classifier::runtime::on_pool(|| self.forward_backward_here(batch, seed))
    }

    fn forward_backward_here(
        &self,
        batch: &[usize],
        seed: u64,
    ) -> Result<(f32, candle_core::backprop::GradStore)> {
        // R-Drop runs the batch twice in one pass: dropout masks differ by row.
        let copies = if self.args.rdrop_alpha > 0.0 { 2 } else { 1 };
        let rows: Vec<usize> = batch.repeat(copies);
        let seqs: Vec<&[u32]> = rows.iter().map(|&i| self.train_ids[i].as_slice()).collect();
        let inputs = self.base.tokenizer.pad(&seqs, &Device::Cpu)?;
        let classes: Vec<usize> = rows.iter().map(|&i| self.train[i].label).collect();
        let labels: Vec<u32> = classes.iter().map(|&c| c as u32).collect();
        let labels = Tensor::from_vec(labels, rows.len(), &Device::Cpu)?;
        let logits = self.model.model.forward(
            &inputs.input_ids,
            &inputs.attention_mask,
            Mode::Train { seed },
        )?;
        let ce = match &self.hyper.class_weights {
            None => kernels::cross_entropy(&logits, &labels)?,
            Some(w) => {
                let w: Vec<f32> = classes.iter().map(|&c| w[c] as f32).collect();
                let w = Tensor::from_vec(w, rows.len(), &Device::Cpu)?;
                kernels::weighted_cross_entropy(&logits, &labels, &w)?
            }
        };
        let value = ce.to_scalar::<f32>()?;
        let loss = if copies == 2 {
            // The paper's CE1 + CE2 + alpha/2 (KL12 + KL21), halved to keep the CE scale.
            let n = batch.len();
            let kl = kernels::symmetric_kl(&logits.narrow(0, 0, n)?, &logits.narrow(0, n, n)?)?;
            (ce + (kl * (self.args.rdrop_alpha / 4.0))?)?
        } else {
            ce
        };
        Ok((value, loss.backward()?))
    }

    /// Times a forward/backward pass on a typical micro-batch and extrapolates. The first pass
    /// pays for page faults and allocator warm-up (it overestimated runs by 20-150%), so the
    /// second one is timed.
    fn estimate(&self, state: &TrainState) -> Result<Duration> {
        let batches = epoch_batches(&self.lengths(), self.args.batch_size, self.args.seed, 0);
        let cost = |b: &Vec<usize>| {
            b.len()
                * b.iter()
                    .map(|&i| self.train_ids[i].len())
                    .max()
                    .unwrap_or(0)
        };
        let mut sorted: Vec<&Vec<usize>> = batches.iter().collect();
        sorted.sort_by_key(|b| cost(b));
        let probe = sorted[sorted.len() / 2];
        let _ = self.forward_backward(probe, 0)?;
        let t = Instant::now();
        let _ = self.forward_backward(probe, 0)?;
        let per_token = t.elapsed().as_secs_f64() / cost(probe).max(1) as f64;
        let epoch_tokens: usize = batches.iter().map(cost).sum();
        let eval_tokens: usize = self.eval_ids.iter().map(Vec::len).sum();
        let epochs_left = (self.args.epochs - state.epoch) as f64;
        let done = state.next_batch as f64 / self.micro_batches_per_epoch as f64;
        // Inference costs about a third of a training pass per token.
        let secs = per_token
            * ((epochs_left - done) * epoch_tokens as f64 + epochs_left * eval_tokens as f64 / 3.0);
        Ok(Duration::from_secs_f64(secs))
    }

    fn lengths(&self) -> Vec<usize> {
        self.train_ids.iter().map(Vec::len).collect()
    }

    fn classifier(&self) -> Result<Classifier> {
        let model = self.model.frozen_model(&self.base.config)?;
        Ok(Classifier::from_parts(
            model,
            self.base.tokenizer.clone(),
            self.pipeline.clone(),
            self.base.config.clone(),
            self.base.source.clone(),
        )?)
    }

    /// Evaluates in chunks, giving up (None) if `stop` is set meanwhile.
    fn evaluate(&self, stop: &AtomicBool) -> Result<Option<Evaluation>> {
        let clf = self.classifier()?;
        let mut preds = Vec::with_capacity(self.eval.len());
        for chunk in self.eval_ids.chunks(EVAL_CHUNK) {
            if stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            preds.extend(clf.predict_ids(chunk)?);
        }
        Ok(Some(score(&preds, &self.eval)))
    }

    /// Runs `f` with the weight average (if any) in the model instead of the training weights.
    fn with_eval_weights<R>(&mut self, f: impl FnOnce(&Self) -> Result<R>) -> Result<R> {
        if let Some(ema) = self.ema.as_mut() {
            ema.swap(&self.model.params)?;
        }
        let out = f(self);
        if let Some(ema) = self.ema.as_mut() {
            ema.swap(&self.model.params)?;
        }
        out
    }

    fn save_model(&self) -> Result<()> {
        model_dir::save(
            &self.args.output_dir,
            &SaveRequest {
                config: &self.base.config,
                tensors: &self.model.named_tensors(),
                tokenizer: &self.base.tokenizer,
                pipeline: &self.pipeline,
            },
        )
        .with_context(|| format!("saving the model to {}", self.args.output_dir.display()))
    }

    /// One optimizer step over the accumulated gradients (and the EMA's update after it);
    /// returns the step's learning rate and statistics.
    fn optimizer_step(&mut self) -> Result<(f64, StepStats)> {
        let lr = self.schedule.lr(self.optimizer.steps_taken() + 1);
        let optimizer = &mut self.optimizer;
        let stats = classifier::runtime::on_pool(|| optimizer.step(lr))?;
        if let Some(ema) = self.ema.as_mut() {
            let params = &self.model.params;
            classifier::runtime::on_pool(|| ema.update(params))?;
        }
        Ok((lr, stats))
    }

    /// Logs a step: the progress bar's message, a log line and the run log's record, with
    /// the loss and speed of the window since the last one.
    fn report_step(
        &self,
        log: &mut RunLog,
        progress: &ProgressBar,
        window: &Window,
        at: StepAt,
    ) -> Result<()> {
        let StepAt {
            step,
            frac_epoch,
            lr,
            grad_norm,
            ..
        } = at;
        let ex_per_s = window.examples as f64 / window.start.elapsed().as_secs_f64();
        let loss = window.loss / window.examples.max(1) as f64;
        progress.set_message(format!(
            "epoch {}/{} loss {loss:.4} lr {lr:.2e} {ex_per_s:.1} ex/s",
            at.epoch + 1,
            self.args.epochs
        ));
        let total_steps = self.schedule.total_steps;
        progress.suspend(|| {
            tracing::info!(
                "step {step}/{total_steps} epoch {frac_epoch:.2} loss {loss:.4} lr {lr:.3e} grad_norm {grad_norm:.3} {ex_per_s:.1} ex/s"
            )
        });
        log.write(&Record::Train {
            step,
            epoch: frac_epoch,
            loss,
            lr,
            grad_norm,
            examples_per_s: ex_per_s,
        })
    }

    /// Forward and backward over one micro-batch of `epoch` before optimizer step `step`,
    /// its gradients added to the optimizer's; returns its loss.
    fn micro_batch(&mut self, batch: &[usize], seed: u64, epoch: usize, step: u64) -> Result<f32> {
        let (loss, grads) = self.forward_backward(batch, seed)?;
        if !loss.is_finite() {
            bail!(
                "the training loss became {loss} at epoch {} step {}: lower --lr (now {})",
                epoch + 1,
                step + 1,
                self.args.lr
            );
        }
        let optimizer = &mut self.optimizer;
        classifier::runtime::on_pool(|| {
            optimizer.accumulate(&grads, batch.len() as f64)?;
            drop(grads);
            anyhow::Ok(())
        })?;
        Ok(loss)
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

    fn train_loop(mut self, stop: &AtomicBool, wall: Instant, data: DataStats) -> Result<Outcome> {
        let mut state = self.start_state()?;
        let mut track = Tracker {
            log: RunLog::open(&self.args.results_dir, &state.run_id)?,
            progress: self.announce(&state)?,
            clock: Clock::new(wall, &state),
            stop,
        };
        for epoch in state.epoch..self.args.epochs {
            let train_loss = match self.train_epoch(epoch, &mut state, &mut track)? {
                EpochEnd::Done { train_loss } => train_loss,
                EpochEnd::Stopped => return self.interrupted(&state, &track.progress),
            };
            // End of the epoch: evaluate, keep the best, checkpoint past this point.
            let eval_start = Instant::now();
            let evaluated = track
                .progress
                .suspend(|| self.with_eval_weights(|run| run.evaluate(stop)))?;
            let Some(eval) = evaluated else {
                track.clock.stamp(&mut state, Duration::ZERO);
                return self.interrupted(&state, &track.progress);
            };
            let eval_seconds = eval_start.elapsed().as_secs_f64();
            let (log, progress) = (&mut track.log, &track.progress);
            self.record_epoch(&mut state, log, progress, eval, train_loss, eval_seconds)?;
            state.epoch = epoch + 1;
            state.next_batch = 0;
            if state.epoch < self.args.epochs {
                track.clock.stamp(&mut state, Duration::ZERO);
                self.checkpoint(&state)?;
            }
        }
        track.progress.finish_and_clear();
        let wall_time_s = track.clock.wall_seconds();
        self.finish(&state, data, track.log.path(), wall_time_s)
    }

    /// Logs the plan and its estimated time; the progress bar of the micro-batches to come.
    fn announce(&self, state: &TrainState) -> Result<ProgressBar> {
        let args = self.args;
        let estimate = self.estimate(state)?;
        tracing::info!(
            "training {} examples x {} epochs = {} optimizer steps of {} ({} x {} accumulated), evaluating {} examples per epoch; estimated time {}",
            self.train.len(),
            args.epochs,
            self.schedule.total_steps,
            self.hyper.effective_batch_size,
            args.batch_size,
            args.grad_accum,
            self.eval.len(),
            human(estimate)
        );
        let per_epoch = self.micro_batches_per_epoch as u64;
        let progress = ProgressBar::new(per_epoch * args.epochs as u64);
        progress.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} micro-batches {msg} [{elapsed_precise} < {eta_precise}]",
            )
            .expect("valid template"),
        );
        progress.set_position(state.epoch as u64 * per_epoch + state.next_batch as u64);
        Ok(progress)
    }

    /// Runs epoch `epoch`'s remaining accumulation groups: micro-batches, optimizer steps,
    /// step logs and periodic checkpoints. Stops between micro-batches once `stop` is set,
    /// with `state` as of the last optimizer step.
    fn train_epoch(
        &mut self,
        epoch: usize,
        state: &mut TrainState,
        track: &mut Tracker,
    ) -> Result<EpochEnd> {
        let args = self.args;
        let batches = epoch_batches(&self.lengths(), args.batch_size, args.seed, epoch);
        let groups: Vec<&[Vec<usize>]> = batches.chunks(args.grad_accum).collect();
        let first_group = state.next_batch / args.grad_accum;
        let (mut epoch_loss, mut epoch_n) = (0.0f64, 0usize);
        let mut window = Window::new();
        for (g, group) in groups.iter().enumerate().skip(first_group) {
            let t = Instant::now();
            for (k, batch) in group.iter().enumerate() {
                if track.stop.load(Ordering::Relaxed) {
                    // Weights and moments are as of the last optimizer step: resume at the
                    // start of this accumulation group.
                    state.next_batch = g * args.grad_accum;
                    track.clock.stamp(state, t.elapsed());
                    return Ok(EpochEnd::Stopped);
                }
                let seed = dropout_seed(args.seed, epoch, g * args.grad_accum + k);
                let loss = self.micro_batch(batch, seed, epoch, state.optimizer_step)?;
                epoch_loss += f64::from(loss) * batch.len() as f64;
                epoch_n += batch.len();
                window.add(loss, batch.len());
                track.progress.inc(1);
            }
            let (lr, stats) = self.optimizer_step()?;
            track.clock.trained += t.elapsed();
            state.optimizer_step = self.optimizer.steps_taken();
            state.next_batch = (g + 1) * args.grad_accum;
            state.examples_seen += group.iter().map(Vec::len).sum::<usize>() as u64;
            let (step, last) = (state.optimizer_step, g + 1 == groups.len());
            if step % args.log_every.max(1) == 0 || last {
                let frac_epoch = epoch as f64 + (g + 1) as f64 / groups.len() as f64;
                let grad_norm = stats.grad_norm;
                let at = StepAt {
                    step,
                    epoch,
                    frac_epoch,
                    lr,
                    grad_norm,
                };
                self.report_step(&mut track.log, &track.progress, &window, at)?;
                window = Window::new();
            }
            if args.checkpoint_every > 0 && step % args.checkpoint_every == 0 && !last {
                track.clock.stamp(state, Duration::ZERO);
                self.checkpoint(state)?;
            }
        }
        track.clock.stamp(state, Duration::ZERO);
        let train_loss = if epoch_n > 0 {
            epoch_loss / epoch_n as f64
        } else {
            f64::NAN
        };
        Ok(EpochEnd::Done { train_loss })
    }

    /// Logs and records the evaluation at the end of an epoch, and saves the model when it
    /// has the best validation macro F1 so far.
    fn record_epoch(
        &mut self,
        state: &mut TrainState,
        log: &mut RunLog,
        progress: &ProgressBar,
        eval: Evaluation,
        train_loss: f64,
        eval_seconds: f64,
    ) -> Result<()> {
        // The epoch just finished, counted from 1 (the caller advances `state.epoch` after).
        let epoch = state.epoch + 1;
        let m = &eval.overall;
        progress.suspend(|| {
            tracing::info!(
                "epoch {} on {} validation examples: accuracy {:.4} balanced {:.4} f1 {:.4} macro_f1 {:.4} loss {:.4} ece {:.4} ({:.0}s)",
                epoch,
                m.examples,
                m.accuracy,
                m.balanced_accuracy,
                m.f1_score,
                m.macro_f1,
                m.loss.unwrap_or(f64::NAN),
                m.ece.unwrap_or(f64::NAN),
                eval_seconds
            );
            for (source, s) in &eval.per_source {
                tracing::info!("  {source}: accuracy {:.4} f1 {:.4} ({} examples)", s.accuracy, s.f1_score, s.examples);
            }
        });
        log.write(&Record::Eval {
            step: state.optimizer_step,
            epoch,
            metrics: eval.clone(),
        })?;
        let macro_f1 = eval.overall.macro_f1;
        state.history.push(EpochRecord {
            epoch,
            optimizer_steps: state.optimizer_step,
            train_loss,
            eval,
        });
        // Selection on validation only, by macro F1: label-symmetric, so class weights
        // or a skewed split cannot make a one-sided model look best.
        if state.best_f1.is_none_or(|best| macro_f1 > best) {
            state.best_f1 = Some(macro_f1);
            state.best_epoch = Some(epoch);
            self.with_eval_weights(Self::save_model)?;
            progress.suspend(|| {
                tracing::info!(
                    "epoch {} has the best validation macro F1 so far: saved {}",
                    epoch,
                    self.args.output_dir.display()
                )
            });
        }
        Ok(())
    }

    /// After the last epoch: calibration and the one test evaluation, then metrics.json and
    /// run_summary.json; the resume checkpoint is no longer needed.
    fn finish(
        &self,
        state: &TrainState,
        mut data: DataStats,
        run_log: &Path,
        wall_time_s: f64,
    ) -> Result<Outcome> {
        let args = self.args;
        let best_epoch = state.best_epoch.context("no epoch was evaluated")?;
        let last = self.final_evaluation(&mut data)?;
        let selection = format!(
            "epoch {best_epoch} of {}: the best macro F1 on {} ({} rows)",
            args.epochs, data.validation_from, data.eval_rows
        );
        classifier::model_dir::atomic::write_json(
            &args.results_dir.join(results::METRICS_FILE),
            &MetricsFile {
                eval: last.test.clone(),
                epoch: best_epoch,
                labels: LABELS.iter().map(|s| s.to_string()).collect(),
                split: format!(
                    "test ({} of {} rows), evaluated once, on the kept model",
                    data.test_rows, data.test_rows_available
                ),
                selection: selection.clone(),
                validation: last.validation,
                calibration: last.calibration.clone(),
                model_dir: args.output_dir.clone(),
            },
        )?;

        let summary = RunSummary {
            run_id: state.run_id.clone(),
            status: "completed".into(),
            started_at: state.started_at.clone(),
            finished_at: now(),
            base_model: BaseModel {
                id: self.base.source.id.clone(),
                revision: self.base.source.revision.clone(),
                model_type: self.base.original_model_type.clone(),
                head: match &self.base.head {
                    Head::Loaded => "loaded".into(),
                    Head::Fresh(why) => format!("fresh: {why}"),
                },
                parameters: self.model.params.iter().map(|(_, v)| v.elem_count()).sum(),
            },
            hyperparameters: self.hyper.clone(),
            data,
            epochs: state.history.clone(),
            best_epoch: state.best_epoch,
            selection,
            test: Some(last.test),
            calibration: Some(last.calibration),
            wall_time_s,
            train_time_s: state.train_seconds,
            train_examples_per_s: state.examples_seen as f64 / state.train_seconds.max(1e-9),
            optimizer_steps: state.optimizer_step,
            peak_rss_mb: classifier::runtime::peak_rss_bytes().map(|b| b as f64 / 1048576.0),
            threads: rayon::current_num_threads(),
            matmul_precision: kernels::gemm::matmul_precision(),
            resumed: state.resumed,
            versions: Versions::default(),
            outputs: Outputs {
                model_dir: args.output_dir.clone(),
                metrics: args.results_dir.join(results::METRICS_FILE),
                run_log: run_log.to_path_buf(),
            },
        };
        classifier::model_dir::atomic::write_json(
            &args.results_dir.join(results::RUN_SUMMARY_FILE),
            &summary,
        )?;
        if resume::exists(&self.ckpt_dir) {
            let _ = std::fs::remove_dir_all(&self.ckpt_dir);
        }
        Ok(Outcome::Completed(Box::new(summary)))
    }

    /// Loads the kept model back from the model folder (exactly what is served, long texts
    /// in windows as serving reads them), fits its confidence temperature on the validation
    /// split and stores it in pipeline.json, then reads the test split, for the first time,
    /// and evaluates the calibrated model on it once.
    fn final_evaluation(&self, data: &mut DataStats) -> Result<Final> {
        let args = self.args;
        let clf = Classifier::load_dir(&args.output_dir).with_context(|| {
            format!(
                "reloading the kept model from {}",
                args.output_dir.display()
            )
        })?;
        // The processed texts are cleaned already: tokenized as training saw them.
        let predict = |examples: &[Example]| -> Result<Vec<Prediction>> {
            let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
            let windows = clf
                .tokenizer()
                .encode_windows(&texts, clf.pipeline().max_length, 0)?;
            Ok(clf.predict_windows(&windows)?)
        };
        let val_raw = predict(&self.eval)?;
        let logits: Vec<Vec<f32>> = val_raw.iter().map(|p| p.logits.clone()).collect();
        let labels: Vec<usize> = self.eval.iter().map(|e| e.label).collect();
        let t = calibration::fit_temperature(&logits, &labels);
        let pipeline = Pipeline {
            temperature: t,
            ..clf.pipeline().clone()
        };
        classifier::model_dir::atomic::write_json(&args.output_dir.join(PIPELINE_FILE), &pipeline)?;
        let at = |preds: &[Prediction], t: f32| -> Vec<Prediction> {
            preds
                .iter()
                .map(|p| Prediction::from_logits(p.logits.clone(), t))
                .collect()
        };

        let test_path = args.data_dir.join(TEST_FILE);
        let test_all = read_examples(&test_path)?;
        data.test_rows_available = test_all.len();
        let test = stratified_sample(test_all, args.test_samples, args.seed ^ 2);
        anyhow::ensure!(!test.is_empty(), "{} has no rows", test_path.display());
        data.test_rows = test.len();
        data.test_class_balance = class_balance(&test);
        let test_raw = predict(&test)?;
        let (val_after, test_after) = (at(&val_raw, t), at(&test_raw, t));
        let reliability = |preds: &[Prediction], examples: &[Example]| {
            let refs: Vec<&Prediction> = preds.iter().collect();
            let labels: Vec<usize> = examples.iter().map(|e| e.label).collect();
            evaluate::calibration(&refs, &labels)
        };
        let test_before = reliability(&test_raw, &test);
        let test_calibrated = reliability(&test_after, &test);
        let calibration = CalibrationReport {
            temperature: t,
            fitted_on: format!("{} ({} rows)", data.validation_from, self.eval.len()),
            validation_nll_before: calibration::nll(&logits, &labels, 1.0),
            validation_nll_after: calibration::nll(&logits, &labels, t.into()),
            validation_ece_before: reliability(&val_raw, &self.eval).ece,
            validation_ece_after: reliability(&val_after, &self.eval).ece,
            test_ece_before: test_before.ece,
            test_ece_after: test_calibrated.ece,
            test_reliability_before: test_before,
            test_reliability: test_calibrated,
        };
        let test_eval = score(&test_after, &test);
        let validation = score(&val_after, &self.eval);
        log_final(&test_eval, &calibration);
        Ok(Final {
            test: test_eval,
            validation,
            calibration,
        })
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
