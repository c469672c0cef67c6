//! Batched inference: load a model once, then classify any number of texts.
//!
//! Texts are cleaned and tokenized as the model was trained (its [`Pipeline`]), sorted by
//! length and cut into batches bounded by a count and a token budget, so padding stays small
//! and memory stays bounded however many texts come in; results return in input order.
//! A text longer than the model's max length is read in overlapping windows ([`LongText`])
//! whose logits are averaged; probabilities are the softmax of the logits over the
//! pipeline's fitted temperature.

use std::path::Path;

use candle_core::{Device, Tensor};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::model_dir::hub::ModelSource;
use crate::model_dir::{LoadOptions, ModelFiles};
use crate::models::{Mode, ModelConfig, SequenceClassifier};
use crate::text::pipeline::Pipeline;
use crate::text::tokenizer::{Encoded, Read, TextTokenizer};
use kernels::Precision;

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

/// How a text longer than the model's max length is read.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Serialize,
    serde::Deserialize,
    strum::EnumString,
    strum::Display,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case", ascii_case_insensitive)]
pub enum LongText {
    /// Keep `max_length` tokens as the pipeline's truncation says: one forward pass.
    Truncate,
    /// Overlapping windows of `max_length` tokens, their logits averaged: a text of `n`
    /// word pieces costs about `n / stride` passes. A text that fits is one window, exactly
    /// as with `Truncate`.
    #[default]
    Windows,
}

/// [`LongText`] with its window stride.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LongTextPolicy {
    pub mode: LongText,
    /// Word pieces between window starts; 0 = half a window.
    pub stride: usize,
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

    /// The prediction of `logits`: `softmax(logits / temperature)` and its argmax.
    pub fn from_logits(logits: Vec<f32>, temperature: f32) -> Self {
        let t = f64::from(temperature);
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f64> = logits
            .iter()
            .map(|&l| (f64::from(l - max) / t).exp())
            .collect();
        let sum: f64 = exp.iter().sum();
        let probabilities: Vec<f32> = exp.iter().map(|e| (e / sum) as f32).collect();
        let class = logits
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
    }

    /// One prediction for a text read in windows: the mean of the windows' logits. A single
    /// window is returned as it is.
    pub fn mean_of(windows: Vec<Prediction>, temperature: f32) -> Self {
        if windows.len() == 1 {
            return windows.into_iter().next().expect("one window");
        }
        let n = windows.len().max(1) as f32;
        let classes = windows.first().map_or(0, |w| w.logits.len());
        let mean = (0..classes)
            .map(|c| windows.iter().map(|w| w.logits[c]).sum::<f32>() / n)
            .collect();
        Self::from_logits(mean, temperature)
    }
}

/// A loaded model with its tokenizer and text pipeline.
pub struct Classifier {
    model: SequenceClassifier,
    tokenizer: TextTokenizer,
    pipeline: Pipeline,
    config: ModelConfig,
    labels: Vec<String>,
    source: ModelSource,
    limits: BatchLimits,
    long_text: LongTextPolicy,
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
    /// Loads a fine-tuned model folder (or Hub id) for inference; a checkpoint without its
    /// own classification head is an error (see [`LoadOptions::serving`]).
    pub fn load(model: &str) -> Result<Self> {
        Self::from_model_files(ModelFiles::load(model, &LoadOptions::serving())?)
    }

    /// Loads a local fine-tuned model folder, as [`Classifier::load`].
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let source = ModelSource {
            id: dir.display().to_string(),
            revision: None,
            path: dir.to_path_buf(),
        };
        Self::load_source(source)
    }

    /// Loads an already resolved model folder (local, or fetched from the Hub), as
    /// [`Classifier::load`].
    pub fn load_source(source: ModelSource) -> Result<Self> {
        Self::from_model_files(ModelFiles::from_source(source, &LoadOptions::serving())?)
    }

    pub fn from_model_files(files: ModelFiles) -> Result<Self> {
        let model = files.model()?;
        let pipeline = files.pipeline.unwrap_or_default();
        Self::from_parts(model, files.tokenizer, pipeline, files.config, files.source)
    }

    /// Wraps an already built model (e.g. the one being trained, for evaluation).
    pub fn from_parts(
        model: SequenceClassifier,
        tokenizer: TextTokenizer,
        mut pipeline: Pipeline,
        config: ModelConfig,
        source: ModelSource,
    ) -> Result<Self> {
        pipeline.max_length = pipeline.max_length.min(config.max_tokens());
        let labels = config.labels().map_err(Error::Input)?;
        Ok(Self {
            model,
            tokenizer,
            pipeline,
            labels,
            config,
            source,
            limits: BatchLimits::default(),
            long_text: LongTextPolicy::default(),
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

    /// Reads texts longer than the max length as `policy` says from now on.
    pub fn with_long_text(mut self, policy: LongTextPolicy) -> Self {
        self.long_text = policy;
        self
    }

    pub fn long_text(&self) -> LongTextPolicy {
        self.long_text
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

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn source(&self) -> &ModelSource {
        &self.source
    }

    pub fn limits(&self) -> BatchLimits {
        self.limits
    }

    pub fn model(&self) -> &SequenceClassifier {
        &self.model
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    fn clean(&self, texts: &[&str]) -> Vec<String> {
        texts
            .iter()
            .map(|t| self.pipeline.cleaning.clean(t))
            .collect()
    }

    /// Cleans and tokenizes texts as the model was trained; ids include `[CLS]`/`[SEP]`.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let cleaned = self.clean(texts);
        let refs: Vec<&str> = cleaned.iter().map(String::as_str).collect();
        self.tokenizer
            .encode_batch(&refs, self.pipeline.max_length, self.pipeline.truncation)
    }

    /// Like [`Classifier::encode`], also giving each text's length before truncation
    /// (word pieces plus `[CLS]`/`[SEP]`): more than the max length means it was cut.
    pub fn encode_with_lengths(&self, texts: &[&str]) -> Result<Vec<(Vec<u32>, usize)>> {
        let cleaned = self.clean(texts);
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

    /// Cleans and tokenizes texts into the windows the long-text policy reads (one per text
    /// that fits, or in `Truncate` mode): what [`Classifier::predict_windows`] takes.
    pub fn encode_windows(&self, texts: &[&str]) -> Result<Vec<Vec<Vec<u32>>>> {
        self.encode_windows_with(texts, self.long_text)
    }

    /// [`Classifier::encode_windows`] under another policy (e.g. one request's).
    pub fn encode_windows_with(
        &self,
        texts: &[&str],
        policy: LongTextPolicy,
    ) -> Result<Vec<Vec<Vec<u32>>>> {
        if policy.mode == LongText::Truncate {
            return Ok(self
                .encode(texts)?
                .into_iter()
                .map(|ids| vec![ids])
                .collect());
        }
        let cleaned = self.clean(texts);
        let refs: Vec<&str> = cleaned.iter().map(String::as_str).collect();
        self.tokenizer
            .encode_windows(&refs, self.pipeline.max_length, policy.stride)
    }

    /// Cleans and tokenizes texts as `policy` reads them, with each text's word-piece and
    /// unknown-token counts (what serving reports to monitoring).
    pub fn encode_read(&self, texts: &[&str], policy: LongTextPolicy) -> Result<Vec<Encoded>> {
        let cleaned = self.clean(texts);
        let refs: Vec<&str> = cleaned.iter().map(String::as_str).collect();
        let read = match policy.mode {
            LongText::Truncate => Read::Truncate(self.pipeline.truncation),
            LongText::Windows => Read::Windows {
                stride: policy.stride,
            },
        };
        self.tokenizer
            .encode_read(&refs, self.pipeline.max_length, read)
    }

    /// Classifies `texts`; one prediction per text, in input order.
    pub fn predict(&self, texts: &[&str]) -> Result<Vec<Prediction>> {
        let windows = self.encode_windows(texts)?;
        self.predict_windows(&windows)
    }

    /// Classifies texts given as windows: all windows batched together, each text's
    /// windows then averaged ([`Prediction::mean_of`]).
    pub fn predict_windows(&self, windows: &[Vec<Vec<u32>>]) -> Result<Vec<Prediction>> {
        let flat: Vec<Vec<u32>> = windows.iter().flatten().cloned().collect();
        let mut preds = self.predict_ids(&flat)?.into_iter();
        Ok(windows
            .iter()
            .map(|w| self.aggregate(preds.by_ref().take(w.len()).collect()))
            .collect())
    }

    /// One text's prediction from its windows' predictions.
    pub fn aggregate(&self, windows: Vec<Prediction>) -> Prediction {
        Prediction::mean_of(windows, self.pipeline.temperature)
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
        probabilities(&logits, self.pipeline.temperature)
    }
}

/// `softmax(row / temperature)` of each row of `(batch, classes)` logits, with the argmax.
pub fn probabilities(logits: &Tensor, temperature: f32) -> Result<Vec<Prediction>> {
    Ok(logits
        .to_vec2::<f32>()?
        .into_iter()
        .map(|logits| Prediction::from_logits(logits, temperature))
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
