//! The epoch loop: accumulation groups of micro-batches, optimizer steps, step logs, periodic
//! checkpoints, and the evaluation that ends each epoch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

use super::step::dropout_seed;
use super::{Outcome, Run, human};
use crate::data::epoch_batches;
use crate::resume::TrainState;
use crate::runlog::{DataStats, Record, RunLog};

/// The examples and summed loss since the last logged step.
pub(super) struct Window {
    pub(super) loss: f64,
    pub(super) examples: usize,
    pub(super) start: Instant,
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
pub(super) struct StepAt {
    pub(super) step: u64,
    pub(super) epoch: usize,
    pub(super) frac_epoch: f64,
    pub(super) lr: f64,
    pub(super) grad_norm: f64,
}

/// A run's seconds of training and of wall clock, carried across resumes.
pub(super) struct Clock {
    pub(super) wall: Instant,
    pub(super) train_before: f64,
    pub(super) wall_before: f64,
    /// Training time of this process so far (optimizer steps done).
    pub(super) trained: Duration,
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
pub(super) struct Tracker<'s> {
    pub(super) log: RunLog,
    pub(super) progress: ProgressBar,
    pub(super) clock: Clock,
    pub(super) stop: &'s AtomicBool,
}

/// How an epoch's micro-batches ended.
pub(super) enum EpochEnd {
    /// Every group ran; the mean training loss over the epoch's examples.
    Done { train_loss: f64 },
    /// `stop` was set: `state` says where to resume.
    Stopped,
}

impl Run<'_> {
    pub(super) fn train_loop(
        mut self,
        stop: &AtomicBool,
        wall: Instant,
        data: DataStats,
    ) -> Result<Outcome> {
        let mut state = self.start_state()?;
        self.model_dir = self.args.models_dir().join(&state.run_id);
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
    pub(super) fn announce(&self, state: &TrainState) -> Result<ProgressBar> {
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
    pub(super) fn train_epoch(
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

    /// Logs a step: the progress bar's message, a log line and the run log's record, with
    /// the loss and speed of the window since the last one.
    pub(super) fn report_step(
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
}
