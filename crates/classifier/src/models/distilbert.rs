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
use std::sync::Arc;

use candle_core::{DType, IndexOp, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use kernels::gemm::KeptPacking;
use kernels::int8::QuantizedLinear;
use kernels::{Kernels, Precision};

/// transformers hard-codes this epsilon for every DistilBERT LayerNorm.
pub const LAYER_NORM_EPS: f64 = 1e-12;

/// Name prefix of the encoder's tensors in a `DistilBertForSequenceClassification` checkpoint.
pub const ENCODER_PREFIX: &str = "distilbert";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Exact GELU (`transformers`' "gelu").
    Gelu,
    Relu,
}

/// What the classification head reads from the encoder's last hidden state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, strum::Display)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Pooling {
    /// The first (`[CLS]`) token, as `DistilBertForSequenceClassification`.
    #[default]
    Cls,
    /// The mean over the tokens the attention mask keeps.
    Mean,
}

impl Pooling {
    fn is_cls(&self) -> bool {
        *self == Pooling::Cls
    }
}

/// What the head applies between `pre_classifier` and `classifier`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadActivation {
    /// `DistilBertForSequenceClassification`'s ReLU.
    #[default]
    Relu,
    /// `BertForSequenceClassification`'s pooler (`tanh(dense(first token))`), kept when a
    /// fine-tuned BERT classifier is served.
    Tanh,
}

impl HeadActivation {
    fn is_relu(&self) -> bool {
        *self == HeadActivation::Relu
    }
}

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
fn default_model_type() -> String {
    "distilbert".into()
}

/// `config.json` of a DistilBERT checkpoint; field names and defaults as `DistilBertConfig`.
/// Keys this model does not use are kept in `extra` and written back on save.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default = "default_model_type")]
    pub model_type: String,
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
            model_type: default_model_type(),
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
    /// Label names in class-index order. `transformers` defaults to `LABEL_0`, `LABEL_1` when
    /// a config names none.
    pub fn labels(&self) -> std::result::Result<Vec<String>, String> {
        if self.id2label.is_empty() {
            return Ok(vec!["LABEL_0".into(), "LABEL_1".into()]);
        }
        let mut labels = vec![None; self.id2label.len()];
        for (id, label) in &self.id2label {
            let i: usize = id
                .parse()
                .map_err(|_| format!("id2label key `{id}` is not a class index"))?;
            let slot = labels.get_mut(i).ok_or_else(|| {
                format!(
                    "id2label has {} entries but names class {i}: indices must be 0..{}",
                    self.id2label.len(),
                    self.id2label.len()
                )
            })?;
            *slot = Some(label.clone());
        }
        Ok(labels.into_iter().map(|l| l.expect("filled")).collect())
    }

    pub fn num_labels(&self) -> usize {
        if self.id2label.is_empty() {
            2
        } else {
            self.id2label.len()
        }
    }

    pub fn set_labels(&mut self, labels: &[String]) {
        self.id2label = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), l.clone()))
            .collect();
        self.label2id = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), i))
            .collect();
    }

    pub fn head_dim(&self) -> usize {
        self.dim / self.n_heads
    }

    /// Checks the dimensions fit together; the message names the offending fields.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.model_type != "distilbert" {
            return Err(format!(
                "model_type is `{}`, expected `distilbert`",
                self.model_type
            ));
        }
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("dim", self.dim),
            ("hidden_dim", self.hidden_dim),
        ] {
            if v == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        if !self.dim.is_multiple_of(self.n_heads) {
            return Err(format!(
                "dim {} is not divisible by n_heads {}",
                self.dim, self.n_heads
            ));
        }
        for (name, p) in [
            ("dropout", self.dropout),
            ("attention_dropout", self.attention_dropout),
            ("seq_classif_dropout", self.seq_classif_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("{name} must be in [0, 1), got {p}"));
            }
        }
        let labels = self.labels()?;
        if labels.len() < 2 {
            return Err("a classifier needs at least two labels in id2label".into());
        }
        Ok(())
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

/// Train mode turns dropout on; its masks derive from `seed` (one seed per forward pass).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Eval,
    Train { seed: u64 },
}

impl Mode {
    fn dropout(&self, x: &Tensor, p: f64, site: u64, k: Kernels) -> Result<Tensor> {
        match self.dropout_seed(site) {
            None => Ok(x.clone()),
            Some(seed) => kernels::dropout(x, p as f32, seed, k),
        }
    }

    /// The mask seed of a dropout site in train mode.
    fn dropout_seed(&self, site: u64) -> Option<u64> {
        match *self {
            Mode::Eval => None,
            Mode::Train { seed } => Some(kernels::site_seed(seed, site)),
        }
    }
}

/// Dropout sites, numbered so every mask in a forward pass has its own stream.
const SITE_EMBEDDINGS: u64 = 0;
fn site_attention(layer: usize) -> u64 {
    1 + 2 * layer as u64
}
fn site_ffn(layer: usize) -> u64 {
    2 + 2 * layer as u64
}
const SITE_HEAD: u64 = u64::MAX;

/// A linear layer's weights in the one precision it runs in.
#[derive(Debug, Clone)]
enum Linear {
    F32 {
        weight: Tensor,
        bias: Tensor,
        /// The packed weights the AVX-512 product keeps while they are not trained.
        kept: KeptPacking,
    },
    /// Quantised for serving; the f32 weights are dropped, so only one copy is held.
    Int8(Arc<QuantizedLinear>),
}

impl Linear {
    fn load(vb: VarBuilder, in_dim: usize, out_dim: usize) -> Result<Self> {
        Ok(Self::f32(
            vb.get((out_dim, in_dim), "weight")?,
            vb.get(out_dim, "bias")?,
        ))
    }

    fn f32(weight: Tensor, bias: Tensor) -> Self {
        Self::F32 {
            weight,
            bias,
            kept: KeptPacking::default(),
        }
    }

    fn forward(&self, x: &Tensor, k: Kernels) -> Result<Tensor> {
        match self {
            Self::F32 { weight, bias, kept } => {
                kernels::linear_kept(x, weight, bias, Some(kept), k)
            }
            Self::Int8(q) => q.forward(x),
        }
    }

    fn is_trainable(&self) -> bool {
        matches!(self, Self::F32 { weight, bias, .. } if weight.track_op() || bias.track_op())
    }

    fn int8(&self) -> Option<&QuantizedLinear> {
        match self {
            Self::Int8(q) => Some(q),
            Self::F32 { .. } => None,
        }
    }

    fn set_precision(&mut self, p: Precision) -> Result<()> {
        match (&*self, p) {
            (Self::F32 { .. }, Precision::F32) | (Self::Int8(_), Precision::Int8) => Ok(()),
            (Self::Int8(_), Precision::F32) => candle_core::bail!(
                "this model was quantised to int8 and no longer holds its f32 weights: load it \
                 again to run in f32"
            ),
            (Self::F32 { .. }, Precision::Int8) if self.is_trainable() => {
                candle_core::bail!(
                    "int8 precision is for inference: these weights are being trained"
                )
            }
            (Self::F32 { weight, bias, .. }, Precision::Int8) => {
                *self = Self::Int8(QuantizedLinear::from_tensors(weight, bias)?);
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone)]
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
}

impl LayerNorm {
    fn load(vb: VarBuilder, dim: usize) -> Result<Self> {
        Ok(Self {
            weight: vb.get(dim, "weight")?,
            bias: vb.get(dim, "bias")?,
        })
    }

    fn forward(&self, x: &Tensor, k: Kernels) -> Result<Tensor> {
        kernels::layer_norm(x, &self.weight, &self.bias, LAYER_NORM_EPS, k)
    }
}

#[derive(Debug, Clone)]
struct Embeddings {
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    layer_norm: LayerNorm,
    dropout: f64,
}

impl Embeddings {
    fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        Ok(Self {
            word_embeddings: vb.get((cfg.vocab_size, cfg.dim), "word_embeddings.weight")?,
            position_embeddings: vb.get(
                (cfg.max_position_embeddings, cfg.dim),
                "position_embeddings.weight",
            )?,
            layer_norm: LayerNorm::load(vb.pp("LayerNorm"), cfg.dim)?,
            dropout: cfg.dropout,
        })
    }

    fn forward(&self, input_ids: &Tensor, mode: Mode, k: Kernels) -> Result<Tensor> {
        let (b, s) = input_ids.dims2()?;
        let dim = self.word_embeddings.dim(1)?;
        let words =
            kernels::embedding(&self.word_embeddings, input_ids, k)?.reshape((b, s, dim))?;
        let positions = self.position_embeddings.narrow(0, 0, s)?;
        let x = words.broadcast_add(&positions)?;
        let x = self.layer_norm.forward(&x, k)?;
        mode.dropout(&x, self.dropout, SITE_EMBEDDINGS, k)
    }
}

/// Q, K and V as trained (three layers, each with its own gradient) or, when constant,
/// stacked into one `(3 dim, dim)` layer: one product instead of three, and one copy of the
/// weights.
#[derive(Debug, Clone)]
enum Qkv {
    Separate {
        q_lin: Linear,
        k_lin: Linear,
        v_lin: Linear,
    },
    Packed(Linear),
}

#[derive(Debug, Clone)]
struct MultiHeadSelfAttention {
    qkv: Qkv,
    out_lin: Linear,
    n_heads: usize,
    head_dim: usize,
    dropout: f64,
}

impl MultiHeadSelfAttention {
    fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let d = cfg.dim;
        let (q_lin, k_lin, v_lin) = (
            Linear::load(vb.pp("q_lin"), d, d)?,
            Linear::load(vb.pp("k_lin"), d, d)?,
            Linear::load(vb.pp("v_lin"), d, d)?,
        );
        let qkv = if [&q_lin, &k_lin, &v_lin].iter().any(|l| l.is_trainable()) {
            Qkv::Separate {
                q_lin,
                k_lin,
                v_lin,
            }
        } else {
            let (weight, bias) = Self::pack(&q_lin, &k_lin, &v_lin)?;
            Qkv::Packed(Linear::f32(weight, bias))
        };
        Ok(Self {
            qkv,
            out_lin: Linear::load(vb.pp("out_lin"), d, d)?,
            n_heads: cfg.n_heads,
            head_dim: cfg.head_dim(),
            dropout: cfg.attention_dropout,
        })
    }

    /// `[q; k; v]` stacked. Differentiable: the gradient is split back to each layer.
    fn pack(q: &Linear, k: &Linear, v: &Linear) -> Result<(Tensor, Tensor)> {
        match (q, k, v) {
            (
                Linear::F32 {
                    weight: qw,
                    bias: qb,
                    ..
                },
                Linear::F32 {
                    weight: kw,
                    bias: kb,
                    ..
                },
                Linear::F32 {
                    weight: vw,
                    bias: vb,
                    ..
                },
            ) => Ok((
                Tensor::cat(&[qw, kw, vw], 0)?,
                Tensor::cat(&[qb, kb, vb], 0)?,
            )),
            _ => candle_core::bail!("Q, K and V are packed before quantisation"),
        }
    }

    fn set_precision(&mut self, p: Precision) -> Result<()> {
        self.out_lin.set_precision(p)?;
        match &mut self.qkv {
            Qkv::Packed(lin) => lin.set_precision(p),
            Qkv::Separate {
                q_lin,
                k_lin,
                v_lin,
            } => {
                for lin in [q_lin, k_lin, v_lin] {
                    lin.set_precision(p)?;
                }
                Ok(())
            }
        }
    }

    /// The `(batch, seq, 3 dim)` Q/K/V projection of `x`.
    fn project_packed(&self, x: &Tensor, k: Kernels) -> Result<Tensor> {
        match &self.qkv {
            Qkv::Packed(lin) => lin.forward(x, k),
            Qkv::Separate {
                q_lin,
                k_lin,
                v_lin,
            } => {
                let (w, bias) = Self::pack(q_lin, k_lin, v_lin)?;
                kernels::linear(x, &w, &bias, k)
            }
        }
    }

    fn forward(
        &self,
        x: &Tensor,
        mask: &AttentionMask,
        mode: Mode,
        site: u64,
        k: Kernels,
    ) -> Result<Tensor> {
        let (b, s, d) = x.dims3()?;
        let context = match k {
            Kernels::Fused => {
                let qkv = self.project_packed(x, k)?;
                let dropout = mode
                    .dropout_seed(site)
                    .map(|seed| (self.dropout as f32, seed));
                kernels::fused::attention(&qkv, &mask.keep, self.n_heads, dropout)?
            }
            Kernels::Reference => {
                let split_heads = |t: Tensor| -> Result<Tensor> {
                    t.reshape((b, s, self.n_heads, self.head_dim))?
                        .transpose(1, 2)?
                        .contiguous()
                };
                let (q, key, v) = match &self.qkv {
                    Qkv::Separate {
                        q_lin,
                        k_lin,
                        v_lin,
                    } => (
                        q_lin.forward(x, k)?,
                        k_lin.forward(x, k)?,
                        v_lin.forward(x, k)?,
                    ),
                    Qkv::Packed(_) => {
                        let qkv = self.project_packed(x, k)?;
                        (
                            qkv.narrow(2, 0, d)?,
                            qkv.narrow(2, d, d)?,
                            qkv.narrow(2, 2 * d, d)?,
                        )
                    }
                };
                let (q, key, v) = (split_heads(q)?, split_heads(key)?, split_heads(v)?);
                let scale = (self.head_dim as f64).powf(-0.5);
                let scores = (q.matmul(&key.t()?)? * scale)?;
                let probs = kernels::masked_softmax(&scores, &mask.bias()?)?;
                let probs = mode.dropout(&probs, self.dropout, site, k)?;
                probs
                    .matmul(&v)?
                    .transpose(1, 2)?
                    .contiguous()?
                    .reshape((b, s, d))?
            }
        };
        self.out_lin.forward(&context, k)
    }
}

/// The `(batch, seq)` 1 = keep / 0 = pad mask, and (for the reference kernels) its additive
/// form, made once per forward pass.
struct AttentionMask {
    keep: Tensor,
    bias: std::cell::OnceCell<Tensor>,
}

impl AttentionMask {
    fn bias(&self) -> Result<Tensor> {
        if let Some(b) = self.bias.get() {
            return Ok(b.clone());
        }
        let b = kernels::attention_bias(&self.keep)?;
        Ok(self.bias.get_or_init(|| b).clone())
    }
}

#[derive(Debug, Clone)]
struct Ffn {
    lin1: Linear,
    lin2: Linear,
    activation: Activation,
    dropout: f64,
}

impl Ffn {
    fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        Ok(Self {
            lin1: Linear::load(vb.pp("lin1"), cfg.dim, cfg.hidden_dim)?,
            lin2: Linear::load(vb.pp("lin2"), cfg.hidden_dim, cfg.dim)?,
            activation: cfg.activation,
            dropout: cfg.dropout,
        })
    }

    fn set_precision(&mut self, p: Precision) -> Result<()> {
        self.lin1.set_precision(p)?;
        self.lin2.set_precision(p)
    }

    fn forward(&self, x: &Tensor, mode: Mode, site: u64, k: Kernels) -> Result<Tensor> {
        let h = match (self.lin1.int8(), self.activation) {
            (Some(q), Activation::Gelu) => q.forward_gelu(x)?,
            _ => {
                let h = self.lin1.forward(x, k)?;
                match self.activation {
                    Activation::Gelu => kernels::gelu(&h, k)?,
                    Activation::Relu => h.relu()?,
                }
            }
        };
        let out = self.lin2.forward(&h, k)?;
        mode.dropout(&out, self.dropout, site, k)
    }
}

#[derive(Debug, Clone)]
struct TransformerBlock {
    attention: MultiHeadSelfAttention,
    sa_layer_norm: LayerNorm,
    ffn: Ffn,
    output_layer_norm: LayerNorm,
}

impl TransformerBlock {
    fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        Ok(Self {
            attention: MultiHeadSelfAttention::load(vb.pp("attention"), cfg)?,
            sa_layer_norm: LayerNorm::load(vb.pp("sa_layer_norm"), cfg.dim)?,
            ffn: Ffn::load(vb.pp("ffn"), cfg)?,
            output_layer_norm: LayerNorm::load(vb.pp("output_layer_norm"), cfg.dim)?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        mask: &AttentionMask,
        mode: Mode,
        i: usize,
        k: Kernels,
    ) -> Result<Tensor> {
        let attn = self
            .attention
            .forward(x, mask, mode, site_attention(i), k)?;
        let x = self.sa_layer_norm.forward(&(attn + x)?, k)?;
        let ffn = self.ffn.forward(&x, mode, site_ffn(i), k)?;
        self.output_layer_norm.forward(&(ffn + x)?, k)
    }
}

/// The encoder: embeddings and `n_layers` transformer blocks.
#[derive(Debug, Clone)]
pub struct DistilBertModel {
    embeddings: Embeddings,
    layers: Vec<TransformerBlock>,
}

impl DistilBertModel {
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let embeddings = Embeddings::load(vb.pp("embeddings"), cfg)?;
        let vb_l = vb.pp("transformer").pp("layer");
        let layers = (0..cfg.n_layers)
            .map(|i| TransformerBlock::load(vb_l.pp(i), cfg))
            .collect::<Result<_>>()?;
        Ok(Self { embeddings, layers })
    }

    /// Last hidden state `(batch, seq, dim)` for `input_ids` and `attention_mask` (both
    /// `(batch, seq)`, u32; mask 1 = token, 0 = padding).
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        mode: Mode,
        k: Kernels,
    ) -> Result<Tensor> {
        let mask = AttentionMask {
            keep: attention_mask.clone(),
            bias: Default::default(),
        };
        let mut x = self.embeddings.forward(input_ids, mode, k)?;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x, &mask, mode, i, k)?;
        }
        Ok(x)
    }
}

/// Mean of `hidden` `(batch, seq, dim)` over the positions `mask` `(batch, seq)` keeps.
fn mean_over_mask(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let keep = mask.to_dtype(hidden.dtype())?;
    // A row of padding only (never produced by the tokenizer) would divide by zero.
    let count = keep.sum_keepdim(1)?.clamp(1.0, f64::INFINITY)?;
    hidden
        .broadcast_mul(&keep.unsqueeze(2)?)?
        .sum(1)?
        .broadcast_div(&count)
}

/// Inference runs the sequences of a batch in chunks of about this many tokens (at least one
/// sequence each). Sequences are independent at inference, and smaller chunks keep the
/// activations (the FFN's are 4 x 768 floats a token) in cache and under glibc's 32 MiB
/// mmap threshold, above which every pass page-faults them in afresh: at 32 x 128 tokens,
/// chunks of 1024 were 7% faster in int8 and 10-20% in f32.
const EVAL_CHUNK_TOKENS: usize = 1024;

/// `DistilBertForSequenceClassification`: the encoder plus a two-layer head on the pooled tokens.
#[derive(Debug, Clone)]
pub struct DistilBertForSequenceClassification {
    distilbert: DistilBertModel,
    pre_classifier: Linear,
    classifier: Linear,
    seq_classif_dropout: f64,
    pooling: Pooling,
    head_activation: HeadActivation,
    kernels: Kernels,
    precision: Precision,
}

impl DistilBertForSequenceClassification {
    /// Loads from a builder whose names follow the checkpoint (`distilbert.embeddings...`,
    /// `pre_classifier.weight`, ...).
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let num_labels = cfg.num_labels();
        Ok(Self {
            distilbert: DistilBertModel::load(vb.pp(ENCODER_PREFIX), cfg)?,
            pre_classifier: Linear::load(vb.pp("pre_classifier"), cfg.dim, cfg.dim)?,
            classifier: Linear::load(vb.pp("classifier"), cfg.dim, num_labels)?,
            seq_classif_dropout: cfg.seq_classif_dropout,
            pooling: cfg.pooling,
            head_activation: cfg.classifier_activation,
            kernels: Kernels::default(),
            precision: Precision::default(),
        })
    }

    /// Runs the encoder's linear layers in `precision` (the head stays f32: it is small, and
    /// its error would go straight into the logits). Int8 needs constant weights (inference).
    pub fn with_precision(mut self, precision: Precision) -> Result<Self> {
        for layer in &mut self.distilbert.layers {
            layer.attention.set_precision(precision)?;
            layer.ffn.set_precision(precision)?;
        }
        self.precision = precision;
        Ok(self)
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn with_kernels(mut self, kernels: Kernels) -> Self {
        self.kernels = kernels;
        self
    }

    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// The encoder's last hidden state, `(batch, seq, dim)`.
    pub fn encode(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        mode: Mode,
    ) -> Result<Tensor> {
        self.distilbert
            .forward(input_ids, attention_mask, mode, self.kernels)
    }

    /// Logits `(batch, num_labels)`, f32.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        mode: Mode,
    ) -> Result<Tensor> {
        crate::runtime::on_pool(|| {
            let (batch, seq) = input_ids.dims2()?;
            let per_chunk = (EVAL_CHUNK_TOKENS / seq.max(1)).max(1);
            if mode != Mode::Eval || batch <= per_chunk {
                return self.forward_here(input_ids, attention_mask, mode);
            }
            let logits = (0..batch)
                .step_by(per_chunk)
                .map(|start| {
                    let n = per_chunk.min(batch - start);
                    self.forward_here(
                        &input_ids.narrow(0, start, n)?,
                        &attention_mask.narrow(0, start, n)?,
                        mode,
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            Tensor::cat(&logits, 0)
        })
    }

    fn forward_here(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        mode: Mode,
    ) -> Result<Tensor> {
        let k = self.kernels;
        let hidden = self.encode(input_ids, attention_mask, mode)?;
        let pooled = match self.pooling {
            Pooling::Cls => hidden.i((.., 0))?.contiguous()?,
            Pooling::Mean => mean_over_mask(&hidden, attention_mask)?,
        };
        let pooled = self.pre_classifier.forward(&pooled, k)?;
        let pooled = match self.head_activation {
            HeadActivation::Relu => pooled.relu()?,
            HeadActivation::Tanh => pooled.tanh()?,
        };
        let pooled = mode.dropout(&pooled, self.seq_classif_dropout, SITE_HEAD, k)?;
        self.classifier.forward(&pooled, k)?.to_dtype(DType::F32)
    }
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
