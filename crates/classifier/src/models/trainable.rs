//! A model whose weights are candle variables, for training, and random weights for tests and
//! benchmarks.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use super::config::ModelConfig;
use super::sequence_classifier::SequenceClassifier;
use crate::error::{Error, Result};

/// A model whose weights are variables, for training.
pub struct Trainable {
    pub model: SequenceClassifier,
    /// `(checkpoint name, variable)` for every trainable parameter, in checkpoint order.
    pub params: Vec<(String, Var)>,
    /// Parameters that do not train (sinusoidal position tables).
    pub frozen: Vec<(String, Tensor)>,
}

impl Trainable {
    /// Variables initialised from `tensors` (every parameter of `config`), in checkpoint
    /// order. Sinusoidal position tables stay constant, as in `transformers`.
    pub fn new(config: &ModelConfig, tensors: &HashMap<String, Tensor>) -> Result<Self> {
        let (mut params, mut frozen) = (Vec::new(), Vec::new());
        let mut vb_tensors = HashMap::new();
        for (name, _) in config.parameter_shapes() {
            let t = tensors
                .get(&name)
                .ok_or_else(|| Error::Input(format!("no value for parameter `{name}`")))?;
            if config.is_frozen(&name) {
                vb_tensors.insert(name.clone(), t.clone());
                frozen.push((name, t.clone()));
            } else {
                let var = Var::from_tensor(t)?;
                vb_tensors.insert(name.clone(), var.as_tensor().clone());
                params.push((name, var));
            }
        }
        let vb = VarBuilder::from_tensors(vb_tensors, DType::F32, &Device::Cpu);
        let model = SequenceClassifier::load(vb, config)?;
        Ok(Self {
            model,
            params,
            frozen,
        })
    }

    /// The model over the variables' current values without gradient tracking: what
    /// evaluation runs, sharing the variables' memory.
    pub fn frozen_model(&self, config: &ModelConfig) -> Result<SequenceClassifier> {
        let tensors: HashMap<String, Tensor> = self
            .named_tensors()
            .into_iter()
            .map(|(n, t)| (n, t.detach()))
            .collect();
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        Ok(SequenceClassifier::load(vb, config)?.with_kernels(self.model.kernels()))
    }

    /// Every parameter's current value, trainable or not: what [`crate::model_dir::save::save`] takes.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .chain(self.frozen.iter().cloned())
            .collect()
    }
}

/// Only for tests and benchmarks: a model with random weights of the given config.
pub fn random_tensors(cfg: &ModelConfig, seed: u64) -> Result<Vec<(String, Tensor)>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, cfg.initializer_range() as f32).expect("valid std");
    cfg.parameter_shapes()
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let data: Vec<f32> =
                if name.contains("LayerNorm.weight") || name.contains("layer_norm.weight") {
                    vec![1.0; n]
                } else if name.ends_with(".bias") {
                    vec![0.0; n]
                } else {
                    (0..n).map(|_| normal.sample(&mut rng)).collect()
                };
            Ok((name, Tensor::from_vec(data, shape, &Device::Cpu)?))
        })
        .collect()
}
