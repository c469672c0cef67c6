//! DistilBERT for sequence classification: Sanh et al. 2019, "DistilBERT, a distilled version
//! of BERT" (<https://arxiv.org/abs/1910.01108>).
//!
//! Mirrors `transformers`' `DistilBertForSequenceClassification` tensor for tensor, so a
//! Hugging Face checkpoint loads unchanged and what we save loads back into `transformers`:
//! exact (erf) GELU, attention mask 1 = keep, LayerNorm eps 1e-12, dropout (`dropout`,
//! `attention_dropout`, `seq_classif_dropout`) only in train mode, and a head of
//! `pre_classifier` -> ReLU -> dropout -> `classifier` on the first token.
//!
//! One extension: `"pooling": "mean"` in `config.json` feeds the head the mean of the
//! non-padding tokens instead of the first token, the pooling sentence-transformers encoders
//! (all-MiniLM-L6-v2 and kin) were trained with. Such a folder still loads in `transformers`,
//! which ignores the key, but predicts differently there; first-token configs are unchanged.
//! Another, `"classifier_activation": "tanh"`, runs a fine-tuned BERT classifier's own
//! pooler head (see [`super::bert`]); it exists only in memory, for serving.

use std::collections::BTreeMap;

use candle_core::Result;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::config::{
    check_dropout, check_labels, check_sizes, label_maps, labels_of, num_labels_of,
};
use super::head::ClassificationHead;
pub use super::head::{HeadActivation, Pooling};
pub use super::layers::Activation;
use super::layers::{Embeddings, Encoder, EncoderLayer, Ffn, LayerNorm, Linear, SelfAttention};

/// transformers hard-codes this epsilon for every DistilBERT LayerNorm.
pub const LAYER_NORM_EPS: f64 = 1e-12;

/// Name prefix of the encoder's tensors in a `DistilBertForSequenceClassification` checkpoint.
pub const ENCODER_PREFIX: &str = "distilbert";

fn default_vocab_size() -> usize {
    30522
}
fn default_max_positions() -> usize {
    512
}
fn default_n_layers() -> usize {
    6
}
fn default_n_heads() -> usize {
    12
}
fn default_dim() -> usize {
    768
}
fn default_hidden_dim() -> usize {
    3072
}
fn default_dropout() -> f64 {
    0.1
}
fn default_seq_classif_dropout() -> f64 {
    0.2
}
fn default_initializer_range() -> f64 {
    0.02
}
fn default_activation() -> Activation {
    Activation::Gelu
}

/// `config.json` of a DistilBERT checkpoint; field names and defaults as `DistilBertConfig`.
/// Keys this model does not use are kept in `extra` and written back on save.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub sinusoidal_pos_embds: bool,
    #[serde(default = "default_n_layers")]
    pub n_layers: usize,
    #[serde(default = "default_n_heads")]
    pub n_heads: usize,
    #[serde(default = "default_dim")]
    pub dim: usize,
    #[serde(default = "default_hidden_dim")]
    pub hidden_dim: usize,
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    #[serde(default = "default_dropout")]
    pub attention_dropout: f64,
    #[serde(default = "default_activation")]
    pub activation: Activation,
    #[serde(default = "default_initializer_range")]
    pub initializer_range: f64,
    #[serde(default = "default_dropout")]
    pub qa_dropout: f64,
    #[serde(default = "default_seq_classif_dropout")]
    pub seq_classif_dropout: f64,
    #[serde(default)]
    pub pad_token_id: u32,
    /// Class index (as a string key, as `transformers` writes it) to label name.
    #[serde(default)]
    pub id2label: BTreeMap<String, String>,
    #[serde(default)]
    pub label2id: BTreeMap<String, usize>,
    /// Not a `DistilBertConfig` field: written only when not the first token, so configs of
    /// first-token models stay exactly what `transformers` writes.
    #[serde(default, skip_serializing_if = "Pooling::is_cls")]
    pub pooling: Pooling,
    /// Not a `DistilBertConfig` field either: `tanh` only for a BERT classifier's own head,
    /// which is served but never saved in this layout (transformers would apply ReLU).
    #[serde(default, skip_serializing_if = "HeadActivation::is_relu")]
    pub classifier_activation: HeadActivation,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for Config {
    /// The `distilbert-base-uncased` architecture with two labels.
    fn default() -> Self {
        // The same defaults as a config.json without the keys.
        let mut cfg = Config {
            architectures: Vec::new(),
            vocab_size: default_vocab_size(),
            max_position_embeddings: default_max_positions(),
            sinusoidal_pos_embds: false,
            n_layers: default_n_layers(),
            n_heads: default_n_heads(),
            dim: default_dim(),
            hidden_dim: default_hidden_dim(),
            dropout: default_dropout(),
            attention_dropout: default_dropout(),
            activation: default_activation(),
            initializer_range: default_initializer_range(),
            qa_dropout: default_dropout(),
            seq_classif_dropout: default_seq_classif_dropout(),
            pad_token_id: 0,
            id2label: BTreeMap::new(),
            label2id: BTreeMap::new(),
            pooling: Pooling::default(),
            classifier_activation: HeadActivation::default(),
            extra: serde_json::Map::new(),
        };
        cfg.set_labels(&["LABEL_0".to_string(), "LABEL_1".to_string()]);
        cfg
    }
}

impl Config {
    /// Label names in class-index order.
    pub fn labels(&self) -> std::result::Result<Vec<String>, String> {
        labels_of(&self.id2label)
    }

    pub fn num_labels(&self) -> usize {
        num_labels_of(&self.id2label)
    }

    pub fn set_labels(&mut self, labels: &[String]) {
        (self.id2label, self.label2id) = label_maps(labels);
    }

    /// Checks the dimensions fit together; the message names the offending fields.
    pub fn validate(&self) -> std::result::Result<(), String> {
        check_sizes(
            &[
                ("vocab_size", self.vocab_size),
                ("max_position_embeddings", self.max_position_embeddings),
                ("n_layers", self.n_layers),
                ("n_heads", self.n_heads),
                ("dim", self.dim),
                ("hidden_dim", self.hidden_dim),
            ],
            self.dim,
            self.n_heads,
        )?;
        check_dropout("dropout", self.dropout)?;
        check_dropout("attention_dropout", self.attention_dropout)?;
        check_dropout("seq_classif_dropout", self.seq_classif_dropout)?;
        check_labels(&self.id2label)
    }

    /// Every parameter of `DistilBertForSequenceClassification`: checkpoint name and shape,
    /// in checkpoint order.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (d, h) = (self.dim, self.hidden_dim);
        let e = ENCODER_PREFIX;
        let mut out = vec![
            (
                format!("{e}.embeddings.word_embeddings.weight"),
                vec![self.vocab_size, d],
            ),
            (
                format!("{e}.embeddings.position_embeddings.weight"),
                vec![self.max_position_embeddings, d],
            ),
            (format!("{e}.embeddings.LayerNorm.weight"), vec![d]),
            (format!("{e}.embeddings.LayerNorm.bias"), vec![d]),
        ];
        for i in 0..self.n_layers {
            let p = format!("{e}.transformer.layer.{i}");
            for lin in ["q_lin", "k_lin", "v_lin", "out_lin"] {
                out.push((format!("{p}.attention.{lin}.weight"), vec![d, d]));
                out.push((format!("{p}.attention.{lin}.bias"), vec![d]));
            }
            out.push((format!("{p}.sa_layer_norm.weight"), vec![d]));
            out.push((format!("{p}.sa_layer_norm.bias"), vec![d]));
            out.push((format!("{p}.ffn.lin1.weight"), vec![h, d]));
            out.push((format!("{p}.ffn.lin1.bias"), vec![h]));
            out.push((format!("{p}.ffn.lin2.weight"), vec![d, h]));
            out.push((format!("{p}.ffn.lin2.bias"), vec![d]));
            out.push((format!("{p}.output_layer_norm.weight"), vec![d]));
            out.push((format!("{p}.output_layer_norm.bias"), vec![d]));
        }
        out.extend(head_parameter_shapes(d, self.num_labels()));
        out
    }
}

/// The classification head's parameters (absent from a base encoder checkpoint).
pub fn head_parameter_shapes(dim: usize, num_labels: usize) -> Vec<(String, Vec<usize>)> {
    vec![
        ("pre_classifier.weight".into(), vec![dim, dim]),
        ("pre_classifier.bias".into(), vec![dim]),
        ("classifier.weight".into(), vec![num_labels, dim]),
        ("classifier.bias".into(), vec![num_labels]),
    ]
}

/// Builds the encoder and head from a builder whose names follow the checkpoint
/// (`distilbert.embeddings...`, `distilbert.transformer.layer.0.attention.q_lin...`,
/// `pre_classifier.weight`, ...).
pub fn load(vb: VarBuilder, cfg: &Config) -> Result<(Encoder, ClassificationHead)> {
    let e = vb.pp(ENCODER_PREFIX);
    let emb = e.pp("embeddings");
    let embeddings = Embeddings {
        word_embeddings: emb.get((cfg.vocab_size, cfg.dim), "word_embeddings.weight")?,
        position_embeddings: Some(emb.get(
            (cfg.max_position_embeddings, cfg.dim),
            "position_embeddings.weight",
        )?),
        token_type_embeddings: None,
        position_offset: 0,
        layer_norm: LayerNorm::load(emb.pp("LayerNorm"), cfg.dim, LAYER_NORM_EPS)?,
        dropout: cfg.dropout,
        project: None,
    };
    let vb_l = e.pp("transformer").pp("layer");
    let layers = (0..cfg.n_layers)
        .map(|i| load_layer(vb_l.pp(i), cfg))
        .collect::<Result<_>>()?;
    let head = ClassificationHead {
        pooling: cfg.pooling,
        dense: Linear::load(vb.pp("pre_classifier"), cfg.dim, cfg.dim)?,
        activation: cfg.classifier_activation,
        out: Linear::load(vb.pp("classifier"), cfg.dim, cfg.num_labels())?,
        dropout: cfg.seq_classif_dropout,
        input_dropout: 0.0,
    };
    let encoder = Encoder {
        embeddings,
        layers,
        relative: None,
    };
    Ok((encoder, head))
}

fn load_layer(vb: VarBuilder, cfg: &Config) -> Result<EncoderLayer> {
    let (d, h) = (cfg.dim, cfg.hidden_dim);
    let a = vb.pp("attention");
    let projections = [
        Linear::load(a.pp("q_lin"), d, d)?,
        Linear::load(a.pp("k_lin"), d, d)?,
        Linear::load(a.pp("v_lin"), d, d)?,
        Linear::load(a.pp("out_lin"), d, d)?,
    ];
    Ok(EncoderLayer {
        attention: SelfAttention::new(projections, cfg.n_heads, cfg.attention_dropout)?,
        attention_norm: LayerNorm::load(vb.pp("sa_layer_norm"), d, LAYER_NORM_EPS)?,
        ffn: Ffn::new(
            Linear::load(vb.pp("ffn").pp("lin1"), d, h)?,
            Linear::load(vb.pp("ffn").pp("lin2"), h, d)?,
            cfg.activation,
            cfg.dropout,
        ),
        output_norm: LayerNorm::load(vb.pp("output_layer_norm"), d, LAYER_NORM_EPS)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_an_empty_config_json_with_two_labels() {
        let mut parsed: Config = serde_json::from_str("{}").unwrap();
        parsed.set_labels(&["LABEL_0".to_string(), "LABEL_1".to_string()]);
        assert_eq!(Config::default(), parsed);
    }
}
