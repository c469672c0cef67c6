//! RoBERTa for sequence classification: Liu et al. 2019, "RoBERTa: A Robustly Optimized BERT
//! Pretraining Approach" (<https://arxiv.org/abs/1907.11692>); the same layout serves
//! XLM-RoBERTa (Conneau et al. 2019, <https://arxiv.org/abs/1911.02116>) and CamemBERT, whose
//! transformers classes are copies of RoBERTa's.
//!
//! Mirrors `RobertaForSequenceClassification` tensor for tensor: a BERT-layout encoder under
//! `roberta.` (see [`super::bert::load_encoder`]) whose positions count from
//! `pad_token_id + 1`, LayerNorm epsilon from the config (1e-5 in the released checkpoints),
//! and `RobertaClassificationHead`: dropout -> `classifier.dense` -> tanh -> dropout ->
//! `classifier.out_proj` on the first token (`<s>`). A base checkpoint's pooler and LM head
//! are not part of it and are dropped.

use std::collections::{BTreeMap, HashMap};

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::bert::{self, EncoderShape};
use super::config::{check_dropout, check_labels, check_sizes};
use super::head::{ClassificationHead, HeadActivation, Pooling};
use super::layers::{Activation, Encoder, Linear};

/// Name prefix of the encoder's tensors in a `RobertaForSequenceClassification` checkpoint.
pub const ENCODER_PREFIX: &str = "roberta";

fn default_vocab_size() -> usize {
    50265
}
fn default_hidden() -> usize {
    768
}
fn default_layers() -> usize {
    12
}
fn default_heads() -> usize {
    12
}
fn default_intermediate() -> usize {
    3072
}
fn default_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f64 {
    0.1
}
fn default_max_positions() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_init() -> f64 {
    0.02
}
fn default_eps() -> f64 {
    1e-12
}
fn default_pad() -> u32 {
    1
}

/// `config.json` of a RoBERTa, XLM-RoBERTa or CamemBERT checkpoint; field names and defaults
/// as `RobertaConfig`. Keys this model does not use are kept in `extra` and written back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "default_hidden")]
    pub hidden_size: usize,
    #[serde(default = "default_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "default_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "default_intermediate")]
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_init")]
    pub initializer_range: f64,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_pad")]
    pub pad_token_id: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position_embedding_type: Option<String>,
    /// Dropout in the head; `hidden_dropout_prob` when null.
    #[serde(default)]
    pub classifier_dropout: Option<f64>,
    #[serde(default)]
    pub id2label: BTreeMap<String, String>,
    #[serde(default)]
    pub label2id: BTreeMap<String, usize>,
    /// Not a `RobertaConfig` field (as DistilBERT's): written only when not the first token.
    #[serde(default, skip_serializing_if = "Pooling::is_cls")]
    pub pooling: Pooling,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Config {
    pub fn num_labels(&self) -> usize {
        match self.id2label.len() {
            0 => 2,
            n => n,
        }
    }

    /// Position ids start after the padding index, so the table holds that many fewer tokens.
    pub fn max_tokens(&self) -> usize {
        self.max_position_embeddings
            .saturating_sub(self.pad_token_id as usize + 1)
    }

    /// The encoder's sizes and settings, or why this config has none this tool runs.
    pub fn encoder_shape(&self) -> std::result::Result<EncoderShape, String> {
        Ok(EncoderShape {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            layers: self.num_hidden_layers,
            heads: self.num_attention_heads,
            intermediate_size: self.intermediate_size,
            max_positions: self.max_position_embeddings,
            type_vocab_size: self.type_vocab_size,
            layer_norm_eps: self.layer_norm_eps,
            activation: Activation::from_hidden_act(&self.hidden_act)?,
            hidden_dropout: self.hidden_dropout_prob,
            attention_dropout: self.attention_probs_dropout_prob,
            position_offset: self.pad_token_id as usize + 1,
        })
    }

    fn head_dropout(&self) -> f64 {
        self.classifier_dropout.unwrap_or(self.hidden_dropout_prob)
    }

    /// Checks the dimensions fit together; the message names the offending fields.
    pub fn validate(&self) -> std::result::Result<(), String> {
        check_sizes(
            &[
                ("vocab_size", self.vocab_size),
                ("hidden_size", self.hidden_size),
                ("num_hidden_layers", self.num_hidden_layers),
                ("num_attention_heads", self.num_attention_heads),
                ("intermediate_size", self.intermediate_size),
                ("type_vocab_size", self.type_vocab_size),
                (
                    "max_tokens (max_position_embeddings - pad_token_id - 1)",
                    self.max_tokens(),
                ),
            ],
            self.hidden_size,
            self.num_attention_heads,
        )?;
        self.encoder_shape()?;
        if let Some(kind) = &self.position_embedding_type
            && kind != "absolute"
        {
            return Err(format!(
                "position_embedding_type `{kind}` is not supported (only absolute)"
            ));
        }
        check_dropout("hidden_dropout_prob", self.hidden_dropout_prob)?;
        check_dropout(
            "attention_probs_dropout_prob",
            self.attention_probs_dropout_prob,
        )?;
        check_dropout("classifier_dropout", self.head_dropout())?;
        check_labels(&self.id2label)
    }

    /// Every parameter of `RobertaForSequenceClassification`, in checkpoint order.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let shape = self.encoder_shape().expect("validated config");
        let mut out = bert::encoder_parameter_shapes(ENCODER_PREFIX, &shape);
        out.extend(head_parameter_shapes(self.hidden_size, self.num_labels()));
        out
    }
}

/// `RobertaClassificationHead`'s parameters (absent from a base encoder checkpoint).
pub fn head_parameter_shapes(dim: usize, num_labels: usize) -> Vec<(String, Vec<usize>)> {
    vec![
        ("classifier.dense.weight".into(), vec![dim, dim]),
        ("classifier.dense.bias".into(), vec![dim]),
        ("classifier.out_proj.weight".into(), vec![num_labels, dim]),
        ("classifier.out_proj.bias".into(), vec![num_labels]),
    ]
}

/// Builds the encoder and head from a builder whose names follow the checkpoint
/// (`roberta.embeddings...`, `classifier.dense.weight`, ...).
pub fn load(vb: VarBuilder, cfg: &Config) -> Result<(Encoder, ClassificationHead)> {
    let shape = cfg.encoder_shape().map_err(candle_core::Error::msg)?;
    let encoder = bert::load_encoder(vb.pp(ENCODER_PREFIX), &shape)?;
    let (d, c) = (vb.pp("classifier"), cfg.hidden_size);
    let head = ClassificationHead {
        pooling: cfg.pooling,
        dense: Linear::load(d.pp("dense"), c, c)?,
        activation: HeadActivation::Tanh,
        out: Linear::load(d.pp("out_proj"), c, cfg.num_labels())?,
        dropout: cfg.head_dropout(),
        dropout_before_dense: true,
    };
    Ok((encoder, head))
}

/// A checkpoint saved from `RobertaModel` names its encoder without the `roberta.` prefix;
/// brings such names to the task model's.
pub fn normalize_names(tensors: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    let prefixed = format!("{ENCODER_PREFIX}.");
    tensors
        .into_iter()
        .map(|(name, t)| {
            if name.starts_with("embeddings.") || name.starts_with("encoder.") {
                (format!("{prefixed}{name}"), t)
            } else {
                (name, t)
            }
        })
        .collect()
}
