//! ELECTRA for sequence classification: Clark et al. 2020, "ELECTRA: Pre-training Text
//! Encoders as Discriminators Rather Than Generators" (<https://arxiv.org/abs/2003.10555>).
//!
//! Mirrors `ElectraForSequenceClassification` tensor for tensor: a BERT-layout encoder under
//! `electra.` (see [`super::bert::load_encoder`]) whose embeddings may be narrower than the
//! hidden size (`embedding_size`, widened by `electra.embeddings_project`), and
//! `ElectraClassificationHead`: dropout -> `classifier.dense` -> GELU -> dropout ->
//! `classifier.out_proj` on the first token. Discriminator checkpoints carry a
//! `discriminator_predictions` head, which is not part of it and is dropped.

use std::collections::HashMap;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::bert;
use super::head::{ClassificationHead, HeadActivation};
use super::layers::Encoder;
use super::roberta;

/// `config.json` of an ELECTRA checkpoint: `ElectraConfig` is `BertConfig`'s fields plus
/// `embedding_size`.
pub type Config = bert::Config;

/// Name prefix of the encoder's tensors in an `ElectraForSequenceClassification` checkpoint.
pub const ENCODER_PREFIX: &str = "electra";

/// Checks an ELECTRA config; the message names the offending fields.
pub fn validate(cfg: &Config) -> std::result::Result<(), String> {
    cfg.validate(cfg.max_position_embeddings)
}

/// Every parameter of `ElectraForSequenceClassification`, in checkpoint order: its head has
/// RoBERTa's names.
pub fn parameter_shapes(cfg: &Config) -> Vec<(String, Vec<usize>)> {
    let shape = cfg.encoder_shape(0).expect("validated config");
    let mut out = bert::encoder_parameter_shapes(ENCODER_PREFIX, &shape);
    out.extend(roberta::head_parameter_shapes(
        cfg.hidden_size,
        cfg.num_labels(),
    ));
    out
}

/// Builds the encoder and head from a builder whose names follow the checkpoint
/// (`electra.embeddings...`, `classifier.dense.weight`, ...).
pub fn load(vb: VarBuilder, cfg: &Config) -> Result<(Encoder, ClassificationHead)> {
    let shape = cfg.encoder_shape(0).map_err(candle_core::Error::msg)?;
    let encoder = bert::load_encoder(vb.pp(ENCODER_PREFIX), &shape)?;
    Ok((encoder, roberta::load_head(vb, cfg, HeadActivation::Gelu)?))
}

/// A checkpoint saved from `ElectraModel` names its encoder without the `electra.` prefix;
/// brings such names to the task model's.
pub fn normalize_names(tensors: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    roberta::prefix_bare_names(tensors, ENCODER_PREFIX)
}
