//! BERT checkpoints (Devlin et al. 2018, <https://arxiv.org/abs/1810.04805>), converted on load
//! into the DistilBERT layout: bert-base-uncased, MiniLM, TinyBERT and the like.
//!
//! For single-segment inputs a BERT encoder is a DistilBERT encoder: the token-type embedding
//! of segment 0 is a constant added to every position, so it folds into the position table.
//! A `BertForSequenceClassification` head is `classifier(dropout(tanh(pooler.dense(first
//! token))))`: DistilBERT's `classifier(dropout(relu(pre_classifier(first token))))` with
//! tanh for ReLU, so the pooler becomes `pre_classifier` with
//! [`HeadActivation::Tanh`](super::distilbert::HeadActivation). A bare encoder's pooler
//! (pretrained on next-sentence prediction, not on sentiment) is dropped.
//!
//! The BERT layout of an encoder (`embeddings.*`, `encoder.layer.N.attention.self.query`, ...)
//! is also RoBERTa's, XLM-R's and CamemBERT's: [`EncoderShape`], [`encoder_parameter_shapes`]
//! and [`load_encoder`] build it for [`super::roberta`].

use std::collections::{BTreeMap, HashMap};

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::config::{check_dropout, check_labels, check_sizes, num_labels_of};
use super::head::Pooling;

use super::distilbert::{self, ENCODER_PREFIX, LAYER_NORM_EPS};
use super::layers::{
    Activation, Embeddings, Encoder, EncoderLayer, Ffn, LayerNorm, Linear, Projection,
    SelfAttention,
};

fn default_vocab_size() -> usize {
    30522
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
fn default_eps() -> f64 {
    1e-12
}
fn default_type_vocab() -> usize {
    2
}
fn default_init() -> f64 {
    0.02
}

/// `config.json` of a BERT-layout checkpoint: `BertConfig`'s fields, which `RobertaConfig`,
/// `XLMRobertaConfig`, `CamembertConfig` and `ElectraConfig` repeat (ELECTRA adds
/// `embedding_size`). Defaults are BERT's; released configs list every size. Keys this tool
/// does not use are kept in `extra` and written back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    /// ELECTRA's embedding width, when narrower than the hidden size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_size: Option<usize>,
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
    /// Absent means the family's default (0 for BERT and ELECTRA, 1 for RoBERTa).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position_embedding_type: Option<String>,
    /// Dropout in the head; `hidden_dropout_prob` when null.
    #[serde(default)]
    pub classifier_dropout: Option<f64>,
    #[serde(default)]
    pub id2label: BTreeMap<String, String>,
    #[serde(default)]
    pub label2id: BTreeMap<String, usize>,
    /// Not a transformers field (as DistilBERT's): written only when not the first token.
    #[serde(default, skip_serializing_if = "Pooling::is_cls")]
    pub pooling: Pooling,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Config {
    pub fn num_labels(&self) -> usize {
        num_labels_of(&self.id2label)
    }

    /// Dropout in the head: `classifier_dropout`, else `hidden_dropout_prob`.
    pub fn head_dropout(&self) -> f64 {
        self.classifier_dropout.unwrap_or(self.hidden_dropout_prob)
    }

    /// The encoder's sizes and settings with positions from `position_offset`, or why this
    /// config has none this tool runs.
    pub fn encoder_shape(&self, position_offset: usize) -> Result<EncoderShape, String> {
        Ok(EncoderShape {
            vocab_size: self.vocab_size,
            embedding_size: self.embedding_size.unwrap_or(self.hidden_size),
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
            position_offset,
        })
    }

    /// Checks the dimensions fit together with `max_tokens` positions usable; the message
    /// names the offending fields.
    pub fn validate(&self, max_tokens: usize) -> Result<(), String> {
        check_sizes(
            &[
                ("vocab_size", self.vocab_size),
                (
                    "embedding_size",
                    self.embedding_size.unwrap_or(self.hidden_size),
                ),
                ("hidden_size", self.hidden_size),
                ("num_hidden_layers", self.num_hidden_layers),
                ("num_attention_heads", self.num_attention_heads),
                ("intermediate_size", self.intermediate_size),
                ("type_vocab_size", self.type_vocab_size),
                (
                    "max_position_embeddings (after any padding offset)",
                    max_tokens,
                ),
            ],
            self.hidden_size,
            self.num_attention_heads,
        )?;
        Activation::from_hidden_act(&self.hidden_act)?;
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
}

/// The DistilBERT config with the same encoder, or why there is none.
pub fn convert_config(bert: &Config) -> Result<distilbert::Config, String> {
    let activation = Activation::from_hidden_act(&bert.hidden_act)?;
    if bert.embedding_size.is_some_and(|e| e != bert.hidden_size) {
        return Err("embedding_size differs from hidden_size: no DistilBERT equivalent".into());
    }
    if (bert.layer_norm_eps - LAYER_NORM_EPS).abs() > 1e-15 {
        return Err(format!(
            "layer_norm_eps is {}, but DistilBERT fixes it at 1e-12: the encoder would not convert exactly",
            bert.layer_norm_eps
        ));
    }
    if let Some(kind) = &bert.position_embedding_type
        && kind != "absolute"
    {
        return Err(format!(
            "position_embedding_type `{kind}` is not supported (only absolute)"
        ));
    }
    let mut cfg = distilbert::Config {
        architectures: vec!["DistilBertForSequenceClassification".into()],
        vocab_size: bert.vocab_size,
        max_position_embeddings: bert.max_position_embeddings,
        n_layers: bert.num_hidden_layers,
        n_heads: bert.num_attention_heads,
        dim: bert.hidden_size,
        hidden_dim: bert.intermediate_size,
        dropout: bert.hidden_dropout_prob,
        attention_dropout: bert.attention_probs_dropout_prob,
        activation,
        initializer_range: bert.initializer_range,
        seq_classif_dropout: bert.head_dropout(),
        pad_token_id: bert.pad_token_id.unwrap_or(0),
        ..Default::default()
    };
    if !bert.id2label.is_empty() {
        cfg.id2label = bert.id2label.clone();
        cfg.label2id = bert.label2id.clone();
    }
    cfg.extra.clear();
    Ok(cfg)
}

/// A `BertForSequenceClassification` head's names and the DistilBERT ones they take.
const HEAD_RENAMES: [(&str, &str); 4] = [
    ("pooler.dense.weight", "pre_classifier.weight"),
    ("pooler.dense.bias", "pre_classifier.bias"),
    ("classifier.weight", "classifier.weight"),
    ("classifier.bias", "classifier.bias"),
];

/// Renames a BERT checkpoint's tensors into DistilBERT's, folding token type 0 into the
/// position embeddings, and a classifier's pooler head into `pre_classifier` (only when the
/// checkpoint has a `classifier`: a bare encoder's pooler is no sentiment head). Returns the
/// tensors and the names that were dropped.
pub fn convert_tensors(
    tensors: HashMap<String, Tensor>,
    cfg: &distilbert::Config,
) -> Result<(HashMap<String, Tensor>, Vec<String>), String> {
    let strip = |name: &str| name.strip_prefix("bert.").unwrap_or(name).to_string();
    let mut src: HashMap<String, Tensor> =
        tensors.into_iter().map(|(k, v)| (strip(&k), v)).collect();
    let e = ENCODER_PREFIX;
    let mut out = HashMap::new();

    let position = src
        .remove("embeddings.position_embeddings.weight")
        .ok_or("missing tensor embeddings.position_embeddings.weight")?;
    let position = match src.remove("embeddings.token_type_embeddings.weight") {
        Some(types) => {
            let type0 = types.get(0).map_err(|e| e.to_string())?;
            position
                .broadcast_add(&type0)
                .map_err(|err| format!("embeddings.token_type_embeddings.weight: {err}"))?
        }
        None => position,
    };
    out.insert(
        format!("{e}.embeddings.position_embeddings.weight"),
        position,
    );
    for leaf in [
        "word_embeddings.weight",
        "LayerNorm.weight",
        "LayerNorm.bias",
    ] {
        if let Some(t) = src.remove(&format!("embeddings.{leaf}")) {
            out.insert(format!("{e}.embeddings.{leaf}"), t);
        }
    }
    const LAYER_RENAMES: [(&str, &str); 8] = [
        ("attention.self.query", "attention.q_lin"),
        ("attention.self.key", "attention.k_lin"),
        ("attention.self.value", "attention.v_lin"),
        ("attention.output.dense", "attention.out_lin"),
        ("attention.output.LayerNorm", "sa_layer_norm"),
        ("intermediate.dense", "ffn.lin1"),
        ("output.dense", "ffn.lin2"),
        ("output.LayerNorm", "output_layer_norm"),
    ];
    for i in 0..cfg.n_layers {
        for (from, to) in LAYER_RENAMES {
            for leaf in ["weight", "bias"] {
                if let Some(t) = src.remove(&format!("encoder.layer.{i}.{from}.{leaf}")) {
                    out.insert(format!("{e}.transformer.layer.{i}.{to}.{leaf}"), t);
                }
            }
        }
    }
    if src.contains_key("classifier.weight") {
        for (from, to) in HEAD_RENAMES {
            if let Some(t) = src.remove(from) {
                out.insert(to.to_string(), t);
            }
        }
    }
    let mut dropped: Vec<String> = src.into_keys().collect();
    dropped.sort();
    Ok((out, dropped))
}

/// The sizes and settings of a BERT-layout encoder.
#[derive(Debug, Clone)]
pub struct EncoderShape {
    pub vocab_size: usize,
    /// The embedding tables' width: the hidden size, but for ELECTRA's small models, whose
    /// narrower embeddings `embeddings_project` widens.
    pub embedding_size: usize,
    pub hidden_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate_size: usize,
    pub max_positions: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub activation: Activation,
    pub hidden_dropout: f64,
    pub attention_dropout: f64,
    /// The position id of the first token (RoBERTa: `pad_token_id + 1`).
    pub position_offset: usize,
}

/// A BERT-layout encoder's parameters under `prefix` (`bert`, `roberta`): name and shape, in
/// checkpoint order.
pub fn encoder_parameter_shapes(prefix: &str, s: &EncoderShape) -> Vec<(String, Vec<usize>)> {
    let (d, h, w) = (s.hidden_size, s.intermediate_size, s.embedding_size);
    let e = format!("{prefix}.embeddings");
    let mut out = vec![
        (format!("{e}.word_embeddings.weight"), vec![s.vocab_size, w]),
        (
            format!("{e}.position_embeddings.weight"),
            vec![s.max_positions, w],
        ),
        (
            format!("{e}.token_type_embeddings.weight"),
            vec![s.type_vocab_size, w],
        ),
        (format!("{e}.LayerNorm.weight"), vec![w]),
        (format!("{e}.LayerNorm.bias"), vec![w]),
    ];
    if w != d {
        out.push((format!("{prefix}.embeddings_project.weight"), vec![d, w]));
        out.push((format!("{prefix}.embeddings_project.bias"), vec![d]));
    }
    let linears = [
        ("attention.self.query", d, d),
        ("attention.self.key", d, d),
        ("attention.self.value", d, d),
        ("attention.output.dense", d, d),
        ("attention.output.LayerNorm", d, 0),
        ("intermediate.dense", h, d),
        ("output.dense", d, h),
        ("output.LayerNorm", d, 0),
    ];
    for i in 0..s.layers {
        for (name, rows, cols) in linears {
            let p = format!("{prefix}.encoder.layer.{i}.{name}");
            let weight = if cols == 0 {
                vec![rows]
            } else {
                vec![rows, cols]
            };
            out.push((format!("{p}.weight"), weight));
            out.push((format!("{p}.bias"), vec![rows]));
        }
    }
    out
}

/// Builds a BERT-layout encoder from `vb` at its prefix (`vb.pp("roberta")`).
pub fn load_encoder(vb: VarBuilder, s: &EncoderShape) -> candle_core::Result<Encoder> {
    let (d, w) = (s.hidden_size, s.embedding_size);
    let emb = vb.pp("embeddings");
    let project = (w != d)
        .then(|| Linear::load(vb.pp("embeddings_project"), w, d))
        .transpose()?
        .map(Projection::AfterNorm);
    let embeddings = Embeddings {
        word_embeddings: emb.get((s.vocab_size, w), "word_embeddings.weight")?,
        position_embeddings: Some(emb.get((s.max_positions, w), "position_embeddings.weight")?),
        token_type_embeddings: Some(
            emb.get((s.type_vocab_size, w), "token_type_embeddings.weight")?,
        ),
        position_offset: s.position_offset,
        layer_norm: LayerNorm::load(emb.pp("LayerNorm"), w, s.layer_norm_eps)?,
        dropout: s.hidden_dropout,
        project,
    };
    let vb_l = vb.pp("encoder").pp("layer");
    let layers = (0..s.layers)
        .map(|i| load_layer(vb_l.pp(i), s))
        .collect::<candle_core::Result<_>>()?;
    Ok(Encoder {
        embeddings,
        layers,
        relative: None,
    })
}

fn load_layer(vb: VarBuilder, s: &EncoderShape) -> candle_core::Result<EncoderLayer> {
    let (d, h, eps) = (s.hidden_size, s.intermediate_size, s.layer_norm_eps);
    let (attn, attn_out) = (
        vb.pp("attention").pp("self"),
        vb.pp("attention").pp("output"),
    );
    let projections = [
        Linear::load(attn.pp("query"), d, d)?,
        Linear::load(attn.pp("key"), d, d)?,
        Linear::load(attn.pp("value"), d, d)?,
        Linear::load(attn_out.pp("dense"), d, d)?,
    ];
    Ok(EncoderLayer {
        attention: SelfAttention::new(projections, s.heads, s.attention_dropout)?
            .with_output_dropout(s.hidden_dropout),
        attention_norm: LayerNorm::load(attn_out.pp("LayerNorm"), d, eps)?,
        ffn: Ffn::new(
            Linear::load(vb.pp("intermediate").pp("dense"), d, h)?,
            Linear::load(vb.pp("output").pp("dense"), h, d)?,
            s.activation,
            s.hidden_dropout,
        ),
        output_norm: LayerNorm::load(vb.pp("output").pp("LayerNorm"), d, eps)?,
    })
}
