//! Batched inference: load a model once, then classify any number of texts.
//!
//! Texts are cleaned and tokenized as the model was trained (its [`Pipeline`]), sorted by
//! length and cut into batches bounded by a count and a token budget, so padding stays small
//! and memory stays bounded however many texts come in; results return in input order.

use std::path::Path;

use candle_core::{Device, Tensor};
use serde::Serialize;

use crate::checkpoint::{Checkpoint, LoadOptions};
use crate::error::{Error, Result};
use crate::hub::ModelSource;
use crate::models::distilbert::{Config, DistilBertForSequenceClassification, Mode};
use crate::ops::Precision;
use crate::pipeline::Pipeline;
use crate::tokenizer::TextTokenizer;

/// Bounds on one forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// At most this many texts per forward pass.
    pub max_batch_size: usize,
    /// At most this many tokens (texts x longest text, padding included) per forward pass.
    pub max_batch_tokens: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_batch_size: 32,
            max_batch_tokens: 16_384,
        }
    }
}

/// One text's classification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// Index of the most probable class.
    pub class: usize,
    /// Softmax probability of every class, in class-index order.
    pub probabilities: Vec<f32>,
    /// The model's raw scores (logits), in class-index order.
    pub logits: Vec<f32>,
}

impl Prediction {
    /// The probability of the predicted class.
    pub fn confidence(&self) -> f32 {
        self.probabilities[self.class]
    }
}

/// A loaded model with its tokenizer and text pipeline.
pub struct Classifier {
    model: DistilBertForSequenceClassification,
    tokenizer: TextTokenizer,
    pipeline: Pipeline,
    config: Config,
    labels: Vec<String>,
    source: ModelSource,
    limits: BatchLimits,
    device: Device,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("source", &self.source)
            .field("labels", &self.labels)
            .field("pipeline", &self.pipeline)
            .finish_non_exhaustive()
    }
}

impl Classifier {
    /// Loads a model folder (or Hub id) for inference.
    pub fn load(model: &str) -> Result<Self> {
        Self::from_checkpoint(Checkpoint::load(model, &LoadOptions::default())?)
    }

    /// Loads a local model folder.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let source = ModelSource {
            id: dir.display().to_string(),
            revision: None,
            path: dir.to_path_buf(),
        };
        Self::from_checkpoint(Checkpoint::from_source(source, &LoadOptions::default())?)
    }

    pub fn from_checkpoint(ckpt: Checkpoint) -> Result<Self> {
        let model = ckpt.model()?;
        let pipeline = ckpt.pipeline.clone().unwrap_or_default();
        Self::from_parts(model, ckpt.tokenizer, pipeline, ckpt.config, ckpt.source)
    }

    /// Wraps an already built model (e.g. the one being trained, for evaluation).
    pub fn from_parts(
        model: DistilBertForSequenceClassification,
        tokenizer: TextTokenizer,
        mut pipeline: Pipeline,
        config: Config,
        source: ModelSource,
    ) -> Result<Self> {
        pipeline.max_length = pipeline.max_length.min(config.max_position_embeddings);
        let labels = config.labels().map_err(Error::Input)?;
        Ok(Self {
            model,
            tokenizer,
            pipeline,
            labels,
            config,
            source,
            limits: BatchLimits::default(),
            device: Device::Cpu,
        })
    }

    pub fn with_limits(mut self, limits: BatchLimits) -> Result<Self> {
        if limits.max_batch_size == 0 || limits.max_batch_tokens < self.pipeline.max_length {
            return Err(Error::Input(format!(
                "batch limits must allow one full-length text: max_batch_size >= 1 and \
                 max_batch_tokens >= max_length ({}), got {limits:?}",
                self.pipeline.max_length
            )));
        }
        self.limits = limits;
        Ok(self)
    }

    /// Runs the encoder in `precision` from now on (see [`Precision`]).
    pub fn with_precision(mut self, precision: Precision) -> Result<Self> {
        self.model = self.model.with_precision(precision)?;
        Ok(self)
    }

    pub fn precision(&self) -> Precision {
        self.model.precision()
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn source(&self) -> &ModelSource {
        &self.source
    }

    pub fn limits(&self) -> BatchLimits {
        self.limits
    }

    pub fn model(&self) -> &DistilBertForSequenceClassification {
        &self.model
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Cleans and tokenizes texts as the model was trained; ids include `[CLS]`/`[SEP]`.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let cleaned: Vec<String> = texts
            .iter()
            .map(|t| self.pipeline.cleaning.clean(t))
            .collect();
        let refs: Vec<&str> = cleaned.iter().map(String::as_str).collect();
        self.tokenizer
            .encode_batch(&refs, self.pipeline.max_length, self.pipeline.truncation)
    }

    /// Like [`Classifier::encode`], also giving each text's length before truncation
    /// (word pieces plus `[CLS]`/`[SEP]`): more than the max length means it was cut.
    pub fn encode_with_lengths(&self, texts: &[&str]) -> Result<Vec<(Vec<u32>, usize)>> {
        let cleaned: Vec<String> = texts
            .iter()
            .map(|t| self.pipeline.cleaning.clean(t))
            .collect();
        let refs: Vec<&str> = cleaned.iter().map(String::as_str).collect();
        self.tokenizer.encode_batch_with_lengths(
            &refs,
            self.pipeline.max_length,
            self.pipeline.truncation,
        )
    }

    /// The number of word pieces `text` has after cleaning, before truncation.
    pub fn token_count(&self, text: &str) -> Result<usize> {
        self.tokenizer
            .count_tokens(&self.pipeline.cleaning.clean(text))
    }

    /// Classifies `texts`; one prediction per text, in input order.
    pub fn predict(&self, texts: &[&str]) -> Result<Vec<Prediction>> {
        let ids = self.encode(texts)?;
        self.predict_ids(&ids)
    }

    /// Classifies already-encoded texts, batching them by length under the limits.
    pub fn predict_ids(&self, ids: &[Vec<u32>]) -> Result<Vec<Prediction>> {
        let mut out: Vec<Option<Prediction>> = vec![None; ids.len()];
        for batch in plan_batches(ids, self.limits) {
            let seqs: Vec<&[u32]> = batch.iter().map(|&i| ids[i].as_slice()).collect();
            for (i, p) in batch.iter().zip(self.forward(&seqs)?) {
                out[*i] = Some(p);
            }
        }
        Ok(out
            .into_iter()
            .map(|p| p.expect("every index is planned"))
            .collect())
    }

    /// One forward pass over `seqs` (padded to the longest), without reordering.
    pub fn forward(&self, seqs: &[&[u32]]) -> Result<Vec<Prediction>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let batch = self.tokenizer.pad(seqs, &self.device)?;
        let logits = self
            .model
            .forward(&batch.input_ids, &batch.attention_mask, Mode::Eval)?;
        probabilities(&logits)
    }
}

/// Softmax of each row of `(batch, classes)` logits, with the argmax.
pub fn probabilities(logits: &Tensor) -> Result<Vec<Prediction>> {
    Ok(logits
        .to_vec2::<f32>()?
        .into_iter()
        .map(|logits| {
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exp: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
            let sum: f64 = exp.iter().sum();
            let probabilities: Vec<f32> = exp.iter().map(|e| (e / sum) as f32).collect();
            let class = probabilities
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
                .unwrap_or(0);
            Prediction {
                class,
                probabilities,
                logits,
            }
        })
        .collect())
}

/// Groups indices of `ids` into batches of similar length: sorted longest first (so a batch
/// that would not fit shows up at once), each batch within `limits`.
pub fn plan_batches(ids: &[Vec<u32>], limits: BatchLimits) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
    let mut batches = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut longest = 0;
    for i in order {
        let len = ids[i].len().max(1);
        let new_longest = longest.max(len);
        let fits = current.len() < limits.max_batch_size
            && new_longest * (current.len() + 1) <= limits.max_batch_tokens;
        if !fits && !current.is_empty() {
            batches.push(std::mem::take(&mut current));
            longest = 0;
        }
        longest = longest.max(len);
        current.push(i);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_limits_and_cover_every_index_once() {
        let ids: Vec<Vec<u32>> = (0..100).map(|i| vec![0; 1 + (i * 37) % 50]).collect();
        let limits = BatchLimits {
            max_batch_size: 8,
            max_batch_tokens: 120,
        };
        let batches = plan_batches(&ids, limits);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        for b in &batches {
            let longest = b.iter().map(|&i| ids[i].len()).max().unwrap();
            assert!(b.len() <= 8);
            assert!(b.len() * longest <= 120 || b.len() == 1);
        }
    }
}
