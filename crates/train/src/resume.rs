//! Resumable training checkpoints: weights, optimizer moments, schedule position, data
//! position and run history, written atomically to `results/checkpoint/`.
//!
//! Randomness needs no saved state: batch order derives from (seed, epoch) and dropout
//! masks from (seed, micro-batch), so a resumed run replays exactly what an uninterrupted
//! one would have done.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use classifier::models::Trainable;
use serde::{Deserialize, Serialize};

use crate::config::Hyperparameters;
use crate::ema::Ema;
use crate::optim::{AdamW, OptimizerState};
use crate::runlog::EpochRecord;

const STATE_FILE: &str = "state.json";
const WEIGHTS_FILE: &str = "model.safetensors";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// Where training stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub run_id: String,
    pub started_at: String,
    pub hyperparameters: Hyperparameters,
    /// Rows of the sampled training and evaluation data, to refuse resuming on other data.
    pub train_rows: usize,
    pub eval_rows: usize,
    /// The epoch in progress (0-based).
    pub epoch: usize,
    /// The first micro-batch of the next optimizer step within `epoch`.
    pub next_batch: usize,
    pub optimizer_step: u64,
    pub best_epoch: Option<usize>,
    pub best_f1: Option<f64>,
    pub history: Vec<EpochRecord>,
    /// Seconds spent training (not evaluating) so far, across restarts.
    pub train_seconds: f64,
    /// Wall-clock seconds of the run so far, across restarts.
    pub wall_seconds: f64,
    pub examples_seen: u64,
    pub resumed: u32,
}

/// Writes a checkpoint of the run into `dir`, replacing any previous one in one step.
pub fn save(
    dir: &Path,
    state: &TrainState,
    model: &Trainable,
    optimizer: &AdamW,
    ema: Option<&Ema>,
) -> Result<()> {
    classifier::model_dir::atomic::replace_dir(dir, |tmp| {
        let weights: HashMap<String, Tensor> = model.named_tensors().into_iter().collect();
        candle_core::safetensors::save(&weights, tmp.join(WEIGHTS_FILE))?;
        let opt = optimizer.state();
        let mut moments = HashMap::new();
        for (name, m, v) in opt.moments {
            let n = m.len();
            moments.insert(format!("m.{name}"), Tensor::from_vec(m, n, &Device::Cpu)?);
            moments.insert(format!("v.{name}"), Tensor::from_vec(v, n, &Device::Cpu)?);
        }
        if let Some(ema) = ema {
            for ((name, _), avg) in model.params.iter().zip(ema.shadow()) {
                let t = Tensor::from_slice(avg, avg.len(), &Device::Cpu)?;
                moments.insert(format!("ema.{name}"), t);
            }
        }
        candle_core::safetensors::save(&moments, tmp.join(OPTIMIZER_FILE))?;
        let json = serde_json::to_vec_pretty(state).expect("serializable");
        std::fs::write(tmp.join(STATE_FILE), json)
            .map_err(|e| classifier::Error::io(tmp.join(STATE_FILE), e))
    })?;
    Ok(())
}

/// Whether `dir` holds a checkpoint.
pub fn exists(dir: &Path) -> bool {
    dir.join(STATE_FILE).is_file()
}

/// Reads the checkpoint in `dir`, checks it belongs to a run with `hyper` on data of the
/// given sizes, and restores the weights into `model`, the moments into `optimizer` and the
/// weight averages into `ema`.
pub fn restore(
    dir: &Path,
    hyper: &Hyperparameters,
    train_rows: usize,
    eval_rows: usize,
    model: &Trainable,
    optimizer: &mut AdamW,
    ema: Option<&mut Ema>,
) -> Result<TrainState> {
    let state = read_state(dir)?;
    check_compatible(&state, dir, hyper, train_rows, eval_rows)?;
    let weights = load_tensors(dir, WEIGHTS_FILE, "weights")?;
    for (name, var) in &model.params {
        let t = weights
            .get(name)
            .with_context(|| format!("checkpoint weights lack `{name}`"))?;
        var.set(t)
            .with_context(|| format!("checkpoint weight `{name}` does not fit the model"))?;
    }
    let moments = load_tensors(dir, OPTIMIZER_FILE, "optimizer state")?;
    let get = |k: &str, name: &str| -> Result<Vec<f32>> {
        Ok(moments
            .get(&format!("{k}.{name}"))
            .with_context(|| format!("optimizer state lacks `{k}.{name}`"))?
            .to_vec1::<f32>()?)
    };
    let mut opt_state = OptimizerState {
        step: state.optimizer_step,
        moments: Vec::new(),
    };
    for (name, _) in &model.params {
        opt_state
            .moments
            .push((name.clone(), get("m", name)?, get("v", name)?));
    }
    optimizer
        .load_state(opt_state)
        .map_err(anyhow::Error::msg)?;
    if let Some(ema) = ema {
        let shadow = model
            .params
            .iter()
            .map(|(name, _)| get("ema", name))
            .collect::<Result<_>>()?;
        ema.load(shadow, state.optimizer_step)
            .map_err(anyhow::Error::msg)?;
    }
    Ok(state)
}

fn read_state(dir: &Path) -> Result<TrainState> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "--resume: no checkpoint at {} (nothing to resume; drop --resume to start a new run)",
            path.display()
        )
    })?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a valid training state", path.display()))
}

/// The checkpoint was made with the same settings on data of the same sizes.
fn check_compatible(
    state: &TrainState,
    dir: &Path,
    hyper: &Hyperparameters,
    train_rows: usize,
    eval_rows: usize,
) -> Result<()> {
    if &state.hyperparameters != hyper {
        bail!(
            "--resume: the checkpoint in {} was made with other settings.\n  checkpoint: {:?}\n  now:        {:?}\n\
             Resume with the same flags, or drop --resume to start over.",
            dir.display(),
            state.hyperparameters,
            hyper
        );
    }
    if (state.train_rows, state.eval_rows) != (train_rows, eval_rows) {
        bail!(
            "--resume: the checkpoint was made on {} training / {} evaluation rows, the data now has {} / {}; \
             re-run preprocess as before or drop --resume",
            state.train_rows,
            state.eval_rows,
            train_rows,
            eval_rows
        );
    }
    Ok(())
}

fn load_tensors(dir: &Path, file: &str, what: &str) -> Result<HashMap<String, Tensor>> {
    let path = dir.join(file);
    candle_core::safetensors::load(&path, &Device::Cpu)
        .with_context(|| format!("{}: cannot read {what}", path.display()))
}
