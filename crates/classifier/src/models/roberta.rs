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

use std::collections::HashMap;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::bert;
use super::head::{ClassificationHead, HeadActivation};
use super::layers::{Encoder, Linear};

/// `config.json` of a RoBERTa, XLM-RoBERTa or CamemBERT checkpoint: `RobertaConfig` repeats
/// `BertConfig`'s fields.
pub type Config = bert::Config;

/// Name prefix of the encoder's tensors in a `RobertaForSequenceClassification` checkpoint.
pub const ENCODER_PREFIX: &str = "roberta";

/// `RobertaConfig`'s padding index when a config names none.
const DEFAULT_PAD: u32 = 1;

/// Position ids start after the padding index.
fn position_offset(cfg: &Config) -> usize {
    cfg.pad_token_id.unwrap_or(DEFAULT_PAD) as usize + 1
}

/// The longest input the position table covers, special tokens included.
pub fn max_tokens(cfg: &Config) -> usize {
    cfg.max_position_embeddings
        .saturating_sub(position_offset(cfg))
}

/// Checks a RoBERTa-layout config; the message names the offending fields.
pub fn validate(cfg: &Config) -> std::result::Result<(), String> {
    cfg.validate(max_tokens(cfg))
}

/// Every parameter of `RobertaForSequenceClassification`, in checkpoint order.
pub fn parameter_shapes(cfg: &Config) -> Vec<(String, Vec<usize>)> {
    let shape = cfg
        .encoder_shape(position_offset(cfg))
        .expect("validated config");
    let mut out = bert::encoder_parameter_shapes(ENCODER_PREFIX, &shape);
    out.extend(head_parameter_shapes(cfg.hidden_size, cfg.num_labels()));
    out
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
    let shape = cfg
        .encoder_shape(position_offset(cfg))
        .map_err(candle_core::Error::msg)?;
    let encoder = bert::load_encoder(vb.pp(ENCODER_PREFIX), &shape)?;
    Ok((encoder, load_head(vb, cfg, HeadActivation::Tanh)?))
}

/// A `RobertaClassificationHead` (`classifier.dense`, `classifier.out_proj`, the same dropout
/// before and after the dense layer) with `activation` between; ELECTRA's head is this with GELU.
pub fn load_head(
    vb: VarBuilder,
    cfg: &Config,
    activation: HeadActivation,
) -> Result<ClassificationHead> {
    let (d, c) = (vb.pp("classifier"), cfg.hidden_size);
    Ok(ClassificationHead {
        pooling: cfg.pooling,
        dense: Linear::load(d.pp("dense"), c, c)?,
        activation,
        out: Linear::load(d.pp("out_proj"), c, cfg.num_labels())?,
        dropout: cfg.head_dropout(),
        input_dropout: cfg.head_dropout(),
    })
}

/// A checkpoint saved from `RobertaModel` names its encoder without the `roberta.` prefix;
/// brings such names to the task model's.
pub fn normalize_names(tensors: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    prefix_bare_names(tensors, ENCODER_PREFIX)
}

/// Puts `prefix.` before the BERT-layout encoder names a base model's checkpoint has bare
/// (`embeddings.`, `embeddings_project.`, `encoder.`).
pub fn prefix_bare_names(
    tensors: HashMap<String, Tensor>,
    prefix: &str,
) -> HashMap<String, Tensor> {
    tensors
        .into_iter()
        .map(|(name, t)| {
            let bare = ["embeddings.", "embeddings_project.", "encoder."]
                .iter()
                .any(|p| name.starts_with(p));
            if bare {
                (format!("{prefix}.{name}"), t)
            } else {
                (name, t)
            }
        })
        .collect()
}
