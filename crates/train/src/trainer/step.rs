//! One training step's parts: a micro-batch's forward and backward pass (with R-Drop and
//! class weights), the optimizer step, and the time estimate made from one pass.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use candle_core::{Device, Tensor};
use classifier::models::Mode;

use super::Run;
use crate::data::epoch_batches;
use crate::optim::StepStats;
use crate::resume::TrainState;

pub(super) fn dropout_seed(seed: u64, epoch: usize, micro_batch: usize) -> u64 {
    kernels::site_seed(
        seed ^ 0xD409_0D70,
        ((epoch as u64) << 32) | micro_batch as u64,
    )
}

impl Run<'_> {
    pub(super) fn forward_backward(
        &self,
        batch: &[usize],
        seed: u64,
    ) -> Result<(f32, candle_core::backprop::GradStore)> {
        classifier::runtime::on_pool(|| self.forward_backward_here(batch, seed))
    }

    pub(super) fn forward_backward_here(
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
    pub(super) fn estimate(&self, state: &TrainState) -> Result<Duration> {
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

    pub(super) fn lengths(&self) -> Vec<usize> {
        self.train_ids.iter().map(Vec::len).collect()
    }

    /// Forward and backward over one micro-batch of `epoch` before optimizer step `step`,
    /// its gradients added to the optimizer's; returns its loss.
    pub(super) fn micro_batch(
        &mut self,
        batch: &[usize],
        seed: u64,
        epoch: usize,
        step: u64,
    ) -> Result<f32> {
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

    /// One optimizer step over the accumulated gradients (and the EMA's update after it);
    /// returns the step's learning rate and statistics.
    pub(super) fn optimizer_step(&mut self) -> Result<(f64, StepStats)> {
        let lr = self.schedule.lr(self.optimizer.steps_taken() + 1);
        let optimizer = &mut self.optimizer;
        let stats = classifier::runtime::on_pool(|| optimizer.step(lr))?;
        if let Some(ema) = self.ema.as_mut() {
            let params = &self.model.params;
            classifier::runtime::on_pool(|| ema.update(params))?;
        }
        Ok((lr, stats))
    }
}
