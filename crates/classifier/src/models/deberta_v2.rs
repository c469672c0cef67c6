//! DeBERTa-v2 and DeBERTa-v3 for sequence classification: He et al. 2021, "DeBERTa:
//! Decoding-enhanced BERT with Disentangled Attention" (<https://arxiv.org/abs/2006.03654>),
//! and "DeBERTaV3: Improving DeBERTa using ELECTRA-Style Pre-Training with Gradient-Disentangled
//! Embedding Sharing" (<https://arxiv.org/abs/2111.09543>), whose checkpoints are
//! `model_type: deberta-v2`.
//!
//! Mirrors `DebertaV2ForSequenceClassification` tensor for tensor: a post-LayerNorm encoder
//! under `deberta.` whose attention adds to the content-to-content scores a content-to-position
//! (`c2p`) and a position-to-content (`p2c`) term, read from one table of relative-position
//! embeddings (`deberta.encoder.rel_embeddings`, LayerNorm-ed with `deberta.encoder.LayerNorm`)
//! projected by the layer's own query and key projections (`share_att_key`, as v3) or by
//! `pos_query_proj`/`pos_key_proj`; relative distances past half of `position_buckets` fall
//! into log-spaced buckets. Embeddings have no absolute positions in v3
//! (`position_biased_input: false`), and are projected (`embed_proj`, no bias) before their
//! LayerNorm when narrower than the hidden size. The head is `ContextPooler` (dropout ->
//! `pooler.dense` -> GELU on the first token) -> dropout -> `classifier`.
//!
//! The c2p and p2c scores are computed head by head by a fused kernel
//! ([`kernels::fused::relative_scores`]) and handed to the fused attention kernel, which adds
//! them to `Q K^T` and does the rest (mask, softmax, dropout, context, and their backward);
//! the reference kernels compute them by tensor operations, which the tests hold the fused
//! path to. The convolution of the 900M+ v2 checkpoints (`conv_kernel_size`) is not
//! supported.

use std::collections::{BTreeMap, HashMap};

use candle_core::{D, Device, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Deserializer, Serialize};

use super::config::{check_dropout, check_labels, check_sizes, num_labels_of};
use super::head::{ClassificationHead, HeadActivation, Pooling};
use super::layers::{
    Activation, Embeddings, Encoder, EncoderLayer, Ffn, LayerNorm, Linear, Mode, Projection,
    SelfAttention,
};
use kernels::Kernels;

/// Name prefix of the encoder's tensors in a `DebertaV2ForSequenceClassification` checkpoint.
pub const ENCODER_PREFIX: &str = "deberta";

fn default_vocab_size() -> usize {
    128100
}
fn default_hidden() -> usize {
    1536
}
fn default_layers() -> usize {
    24
}
fn default_heads() -> usize {
    24
}
fn default_intermediate() -> usize {
    6144
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
fn default_init() -> f64 {
    0.02
}
fn default_eps() -> f64 {
    1e-7
}
fn default_max_relative() -> i64 {
    -1
}
fn default_pad() -> Option<u32> {
    Some(0)
}
fn default_true() -> bool {
    true
}

/// `pos_att_type` as configs write it: `"p2c|c2p"` or `["p2c", "c2p"]`.
fn pos_att_type<'de, De: Deserializer<'de>>(d: De) -> std::result::Result<Vec<String>, De::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Joined(String),
        List(Vec<String>),
        None(()),
    }
    Ok(match Form::deserialize(d)? {
        Form::Joined(s) => s.split('|').map(|t| t.trim().to_lowercase()).collect(),
        Form::List(v) => v,
        Form::None(()) => Vec::new(),
    })
}

/// `config.json` of a DeBERTa-v2/v3 checkpoint: `DebertaV2Config`'s fields and defaults
/// (those of deberta-v2-xlarge; released configs list every size). Keys this tool does not
/// use are kept in `extra` and written back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_size: Option<usize>,
    #[serde(default = "default_hidden")]
    pub hidden_size: usize,
    #[serde(default = "default_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "default_heads")]
    pub num_attention_heads: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_head_size: Option<usize>,
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
    #[serde(default)]
    pub type_vocab_size: usize,
    #[serde(default = "default_init")]
    pub initializer_range: f64,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub relative_attention: bool,
    /// Below 1 means `max_position_embeddings`.
    #[serde(default = "default_max_relative")]
    pub max_relative_positions: i64,
    /// Below 1 means no buckets: every distance up to `max_relative_positions` has its row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position_buckets: Option<i64>,
    #[serde(default = "default_pad")]
    pub pad_token_id: Option<u32>,
    #[serde(default = "default_true")]
    pub position_biased_input: bool,
    #[serde(default, deserialize_with = "pos_att_type")]
    pub pos_att_type: Vec<String>,
    /// Position projections share the query and key projections' weights (v3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_att_key: Option<bool>,
    /// `"layer_norm"` LayerNorms the relative-position table; `"none"` (the default) not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm_rel_ebd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conv_kernel_size: Option<usize>,
    #[serde(default)]
    pub pooler_dropout: f64,
    #[serde(default = "default_act")]
    pub pooler_hidden_act: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooler_hidden_size: Option<usize>,
    /// Dropout before `classifier`; `hidden_dropout_prob` when null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cls_dropout: Option<f64>,
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

/// How attention reads relative positions, derived from the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelativeShape {
    /// Half the rows of the relative-position table: distances map to `span + bucket(i - j)`.
    pub span: usize,
    /// Log buckets: `(position_buckets, max_relative_positions)`; `None` counts every distance.
    pub buckets: Option<(i64, i64)>,
    pub c2p: bool,
    pub p2c: bool,
    pub share_att_key: bool,
    pub layer_norm: bool,
}

impl Config {
    pub fn num_labels(&self) -> usize {
        num_labels_of(&self.id2label)
    }

    fn embedding_width(&self) -> usize {
        self.embedding_size.unwrap_or(self.hidden_size)
    }

    fn head_dropout(&self) -> f64 {
        self.cls_dropout.unwrap_or(self.hidden_dropout_prob)
    }

    /// The relative attention's settings, `None` without relative attention.
    pub fn relative(&self) -> Option<RelativeShape> {
        if !self.relative_attention {
            return None;
        }
        let max_relative = match self.max_relative_positions {
            m if m < 1 => self.max_position_embeddings as i64,
            m => m,
        };
        let buckets = self.position_buckets.filter(|b| *b > 0);
        let has = |t: &str| self.pos_att_type.iter().any(|p| p == t);
        Some(RelativeShape {
            span: buckets.unwrap_or(max_relative) as usize,
            buckets: buckets.map(|b| (b, max_relative)),
            c2p: has("c2p"),
            p2c: has("p2c"),
            share_att_key: self.share_att_key.unwrap_or(false),
            layer_norm: self
                .norm_rel_ebd
                .as_deref()
                .is_some_and(|n| n.split('|').any(|p| p.trim() == "layer_norm")),
        })
    }

    /// Checks the config describes a model this tool runs; the message names the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        check_sizes(
            &[
                ("vocab_size", self.vocab_size),
                ("embedding_size", self.embedding_width()),
                ("hidden_size", self.hidden_size),
                ("num_hidden_layers", self.num_hidden_layers),
                ("num_attention_heads", self.num_attention_heads),
                ("intermediate_size", self.intermediate_size),
                ("max_position_embeddings", self.max_position_embeddings),
            ],
            self.hidden_size,
            self.num_attention_heads,
        )?;
        Activation::from_hidden_act(&self.hidden_act)?;
        head_activation(&self.pooler_hidden_act)?;
        let unsupported = |what: String| Err(format!("{what} is not supported"));
        if self.conv_kernel_size.is_some_and(|k| k > 0) {
            return unsupported(
                "conv_kernel_size (the convolution layer of deberta-v2-xlarge/xxlarge)".into(),
            );
        }
        let head_size = self.hidden_size / self.num_attention_heads;
        if let Some(size) = self.attention_head_size.filter(|s| *s != head_size) {
            return unsupported(format!(
                "attention_head_size {size} (other than hidden_size / num_attention_heads)"
            ));
        }
        if let Some(size) = self.pooler_hidden_size.filter(|s| *s != self.hidden_size) {
            return unsupported(format!(
                "pooler_hidden_size {size} (other than hidden_size)"
            ));
        }
        if let Some(other) = self
            .pos_att_type
            .iter()
            .find(|t| !["c2p", "p2c"].contains(&t.as_str()))
        {
            return unsupported(format!("pos_att_type `{other}` (only c2p and p2c)"));
        }
        for (name, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
            ("pooler_dropout", self.pooler_dropout),
            ("cls_dropout", self.head_dropout()),
        ] {
            check_dropout(name, p)?;
        }
        check_labels(&self.id2label)
    }

    /// Every parameter of `DebertaV2ForSequenceClassification`, in checkpoint order.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (d, w, h) = (
            self.hidden_size,
            self.embedding_width(),
            self.intermediate_size,
        );
        let e = format!("{ENCODER_PREFIX}.embeddings");
        let mut out = vec![(
            format!("{e}.word_embeddings.weight"),
            vec![self.vocab_size, w],
        )];
        if self.position_biased_input {
            let rows = self.max_position_embeddings;
            out.push((format!("{e}.position_embeddings.weight"), vec![rows, w]));
        }
        if self.type_vocab_size > 0 {
            let rows = self.type_vocab_size;
            out.push((format!("{e}.token_type_embeddings.weight"), vec![rows, w]));
        }
        if w != d {
            out.push((format!("{e}.embed_proj.weight"), vec![d, w]));
        }
        out.push((format!("{e}.LayerNorm.weight"), vec![d]));
        out.push((format!("{e}.LayerNorm.bias"), vec![d]));
        let relative = self.relative();
        let own_positions = relative.filter(|r| !r.share_att_key);
        let mut linears = vec![
            ("attention.self.query_proj", d, d),
            ("attention.self.key_proj", d, d),
            ("attention.self.value_proj", d, d),
        ];
        if own_positions.is_some_and(|r| r.c2p) {
            linears.push(("attention.self.pos_key_proj", d, d));
        }
        if own_positions.is_some_and(|r| r.p2c) {
            linears.push(("attention.self.pos_query_proj", d, d));
        }
        linears.extend([
            ("attention.output.dense", d, d),
            ("attention.output.LayerNorm", d, 0),
            ("intermediate.dense", h, d),
            ("output.dense", d, h),
            ("output.LayerNorm", d, 0),
        ]);
        for i in 0..self.num_hidden_layers {
            for (name, rows, cols) in &linears {
                let p = format!("{ENCODER_PREFIX}.encoder.layer.{i}.{name}");
                let weight = if *cols == 0 {
                    vec![*rows]
                } else {
                    vec![*rows, *cols]
                };
                out.push((format!("{p}.weight"), weight));
                out.push((format!("{p}.bias"), vec![*rows]));
            }
        }
        if let Some(r) = relative {
            let table = format!("{ENCODER_PREFIX}.encoder.rel_embeddings.weight");
            out.push((table, vec![2 * r.span, d]));
            if r.layer_norm {
                out.push((
                    format!("{ENCODER_PREFIX}.encoder.LayerNorm.weight"),
                    vec![d],
                ));
                out.push((format!("{ENCODER_PREFIX}.encoder.LayerNorm.bias"), vec![d]));
            }
        }
        out.extend(head_parameter_shapes(d, self.num_labels()));
        out
    }
}

/// `ContextPooler` and `classifier`'s parameters (absent from a base encoder checkpoint).
pub fn head_parameter_shapes(dim: usize, num_labels: usize) -> Vec<(String, Vec<usize>)> {
    vec![
        ("pooler.dense.weight".into(), vec![dim, dim]),
        ("pooler.dense.bias".into(), vec![dim]),
        ("classifier.weight".into(), vec![num_labels, dim]),
        ("classifier.bias".into(), vec![num_labels]),
    ]
}

/// The pooler's activation: transformers' `ACT2FN` names this tool runs.
fn head_activation(name: &str) -> std::result::Result<HeadActivation, String> {
    match name {
        "gelu" => Ok(HeadActivation::Gelu),
        "tanh" => Ok(HeadActivation::Tanh),
        "relu" => Ok(HeadActivation::Relu),
        other => Err(format!(
            "pooler_hidden_act `{other}` is not supported (only gelu, tanh and relu)"
        )),
    }
}

/// Builds the encoder and head from a builder whose names follow the checkpoint
/// (`deberta.embeddings...`, `deberta.encoder.rel_embeddings.weight`, `pooler.dense.weight`,
/// `classifier.weight`, ...).
pub fn load(vb: VarBuilder, cfg: &Config) -> Result<(Encoder, ClassificationHead)> {
    cfg.validate().map_err(candle_core::Error::msg)?;
    let e = vb.pp(ENCODER_PREFIX);
    let layers = (0..cfg.num_hidden_layers)
        .map(|i| load_layer(e.pp("encoder").pp("layer").pp(i), cfg))
        .collect::<Result<_>>()?;
    let relative = cfg
        .relative()
        .map(|shape| RelativePositions::load(e.pp("encoder"), cfg, shape))
        .transpose()?;
    let encoder = Encoder {
        embeddings: load_embeddings(e.pp("embeddings"), cfg)?,
        layers,
        relative,
    };
    let d = cfg.hidden_size;
    let head = ClassificationHead {
        pooling: cfg.pooling,
        dense: Linear::load(vb.pp("pooler").pp("dense"), d, d)?,
        activation: head_activation(&cfg.pooler_hidden_act).map_err(candle_core::Error::msg)?,
        out: Linear::load(vb.pp("classifier"), d, cfg.num_labels())?,
        dropout: cfg.head_dropout(),
        input_dropout: cfg.pooler_dropout,
    };
    Ok((encoder, head))
}

fn load_embeddings(vb: VarBuilder, cfg: &Config) -> Result<Embeddings> {
    let (d, w) = (cfg.hidden_size, cfg.embedding_width());
    let position_embeddings = cfg
        .position_biased_input
        .then(|| {
            vb.get(
                (cfg.max_position_embeddings, w),
                "position_embeddings.weight",
            )
        })
        .transpose()?;
    let token_type_embeddings = (cfg.type_vocab_size > 0)
        .then(|| vb.get((cfg.type_vocab_size, w), "token_type_embeddings.weight"))
        .transpose()?;
    let project = (w != d)
        .then(|| Linear::load_no_bias(vb.pp("embed_proj"), w, d))
        .transpose()?
        .map(Projection::BeforeNorm);
    Ok(Embeddings {
        word_embeddings: vb.get((cfg.vocab_size, w), "word_embeddings.weight")?,
        position_embeddings,
        token_type_embeddings,
        position_offset: 0,
        layer_norm: LayerNorm::load(vb.pp("LayerNorm"), d, cfg.layer_norm_eps)?,
        dropout: cfg.hidden_dropout_prob,
        project,
    })
}

fn load_layer(vb: VarBuilder, cfg: &Config) -> Result<EncoderLayer> {
    let (d, h, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
    let (attn, attn_out) = (
        vb.pp("attention").pp("self"),
        vb.pp("attention").pp("output"),
    );
    let projections = [
        Linear::load(attn.pp("query_proj"), d, d)?,
        Linear::load(attn.pp("key_proj"), d, d)?,
        Linear::load(attn.pp("value_proj"), d, d)?,
        Linear::load(attn_out.pp("dense"), d, d)?,
    ];
    let mut attention = SelfAttention::new(
        projections,
        cfg.num_attention_heads,
        cfg.attention_probs_dropout_prob,
    )?
    .with_output_dropout(cfg.hidden_dropout_prob);
    if let Some(shape) = cfg.relative() {
        let own = |on: bool, name: &str| {
            (on && !shape.share_att_key)
                .then(|| Linear::load(attn.pp(name), d, d))
                .transpose()
        };
        attention = attention.with_positions(PositionProjections {
            shape,
            key: own(shape.c2p, "pos_key_proj")?,
            query: own(shape.p2c, "pos_query_proj")?,
            dropout: cfg.hidden_dropout_prob,
            kept: None,
        });
    }
    Ok(EncoderLayer {
        attention,
        attention_norm: LayerNorm::load(attn_out.pp("LayerNorm"), d, eps)?,
        ffn: Ffn::new(
            Linear::load(vb.pp("intermediate").pp("dense"), d, h)?,
            Linear::load(vb.pp("output").pp("dense"), h, d)?,
            Activation::from_hidden_act(&cfg.hidden_act).map_err(candle_core::Error::msg)?,
            cfg.hidden_dropout_prob,
        ),
        output_norm: LayerNorm::load(vb.pp("output").pp("LayerNorm"), d, eps)?,
    })
}

/// A checkpoint saved from `DebertaV2Model` names its encoder without the `deberta.` prefix;
/// brings such names to the task model's.
pub fn normalize_names(tensors: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    super::roberta::prefix_bare_names(tensors, ENCODER_PREFIX)
}

/// `make_log_bucket_position` of transformers for one distance `rel = i - j`: distances
/// within half the buckets stay, longer ones take log-spaced buckets up to
/// `max_position`. In f32, as transformers computes it, so the bucket edges agree.
pub fn bucket(rel: i64, buckets: i64, max_position: i64) -> i64 {
    let mid = buckets / 2;
    let abs = if rel < mid && rel > -mid {
        mid - 1
    } else {
        rel.abs()
    };
    if abs <= mid {
        return rel;
    }
    let (mid_f, abs_f) = (mid as f32, abs as f32);
    let log_base = (((max_position - 1) as f64 / mid as f64) as f32).ln();
    let log_pos = ((abs_f / mid_f).ln() / log_base * (mid - 1) as f32).ceil() + mid_f;
    rel.signum() * log_pos as i64
}

/// The encoder's relative-position table, shared by every layer.
#[derive(Debug, Clone)]
pub struct RelativePositions {
    table: Tensor,
    layer_norm: Option<LayerNorm>,
    shape: RelativeShape,
}

/// What every layer of one forward pass reads: the table rows the sequence length uses
/// (LayerNorm-ed) and, per query `i` and key `j`, the row of distance `i - j`.
pub struct RelativeContext {
    table: Tensor,
    /// Where the used rows start in the whole table, and how many there are.
    first: usize,
    len: usize,
    /// `(seq, seq)` u32: row of the narrowed table for query i, key j.
    rows: Tensor,
}

impl RelativePositions {
    fn load(vb: VarBuilder, cfg: &Config, shape: RelativeShape) -> Result<Self> {
        let d = cfg.hidden_size;
        let layer_norm = shape
            .layer_norm
            .then(|| LayerNorm::load(vb.pp("LayerNorm"), d, cfg.layer_norm_eps))
            .transpose()?;
        Ok(Self {
            table: vb.get((2 * shape.span, d), "rel_embeddings.weight")?,
            layer_norm,
            shape,
        })
    }

    /// The table row of each distance for `seq` tokens, only the rows used: a short
    /// sequence projects a few dozen rows instead of all `2 span` (the same scores).
    pub(crate) fn context(&self, seq: usize, k: Kernels) -> Result<RelativeContext> {
        if seq == 0 {
            // No distances to index below; the tokenizer always adds [CLS], so only a
            // caller building its own empty batch gets here.
            candle_core::bail!("relative positions of an empty sequence");
        }
        let span = self.shape.span as i64;
        // The table row of each distance i - j, from -(seq - 1) up, worked out once: the
        // log buckets take a logarithm, and there are seq^2 pairs but 2 seq - 1 distances.
        let by_distance: Vec<i64> = (1 - seq as i64..seq as i64)
            .map(|rel| match self.shape.buckets {
                Some((b, max)) => bucket(rel, b, max),
                None => rel,
            })
            .map(|rel| (rel + span).clamp(0, 2 * span - 1))
            .collect();
        let (first, last) = (by_distance[0], by_distance[by_distance.len() - 1]);
        let row = |i: usize, j: usize| by_distance[i + seq - 1 - j];
        let rows: Vec<u32> = (0..seq)
            .flat_map(|i| (0..seq).map(move |j| (i, j)))
            .map(|(i, j)| (row(i, j) - first) as u32)
            .collect();
        let (first, len) = (first as usize, (last - first + 1) as usize);
        Ok(RelativeContext {
            table: self.normalized(&self.table.narrow(0, first, len)?, k)?,
            first,
            len,
            rows: Tensor::from_vec(rows, (seq, seq), &Device::Cpu)?,
        })
    }

    /// The whole table LayerNorm-ed, `(1, 2 span, dim)`.
    pub(crate) fn full_table(&self) -> Result<Tensor> {
        self.normalized(&self.table, Kernels::default())
    }

    fn normalized(&self, rows: &Tensor, k: Kernels) -> Result<Tensor> {
        let rows = rows.unsqueeze(0)?;
        match &self.layer_norm {
            Some(ln) => ln.forward(&rows, k),
            None => Ok(rows),
        }
    }
}

/// A layer's view of relative positions: which terms it adds, and its own position
/// projections when it does not share the query and key projections.
#[derive(Debug, Clone)]
pub struct PositionProjections {
    pub shape: RelativeShape,
    pub key: Option<Linear>,
    pub query: Option<Linear>,
    pub dropout: f64,
    /// For serving: the whole table through the query and key projections, `(1, 2 span,
    /// dim)` each, computed once in f32 while the weights are constant. Every forward pass
    /// would otherwise project up to `2 seq` rows again (as many as its own tokens), and
    /// in int8 with quantised weights (9% of the logits' spread off on the tiny test model,
    /// 4% with these kept in f32).
    pub kept: Option<(Tensor, Tensor)>,
}

impl PositionProjections {
    /// How many terms the scores sum, which scales them: `sqrt(head_dim * factor)`.
    pub(crate) fn scale_factor(&self) -> usize {
        1 + usize::from(self.shape.c2p) + usize::from(self.shape.p2c)
    }

    pub(crate) fn linears_mut(&mut self) -> impl Iterator<Item = &mut Linear> {
        self.key.iter_mut().chain(self.query.iter_mut())
    }

    /// The table after this layer's dropout (`pos_dropout`).
    pub(crate) fn table(
        &self,
        ctx: &RelativeContext,
        mode: Mode,
        site: u64,
        k: Kernels,
    ) -> Result<Tensor> {
        mode.dropout(&ctx.table, self.dropout, site, k)
    }

    /// The kept projections of the rows `ctx` uses, when kept.
    pub(crate) fn kept_rows(&self, ctx: &RelativeContext) -> Result<Option<(Tensor, Tensor)>> {
        self.kept
            .as_ref()
            .map(|(q, k)| {
                Ok((
                    q.narrow(1, ctx.first, ctx.len)?,
                    k.narrow(1, ctx.first, ctx.len)?,
                ))
            })
            .transpose()
    }

    /// `c2p + p2c` `(batch, heads, seq, seq)` for per-head `q` and `key` `(batch, heads, seq,
    /// head_dim)` and the table projected by the query (`pos_query`) and key (`pos_key`)
    /// projections, `(1, rows, dim)`: head by head on the fused kernels
    /// ([`kernels::fused::relative_scores`]), by tensor operations on the reference ones.
    pub(crate) fn scores(
        &self,
        q: &Tensor,
        key: &Tensor,
        (pos_query, pos_key): (&Tensor, &Tensor),
        ctx: &RelativeContext,
        k: Kernels,
    ) -> Result<Tensor> {
        if k == Kernels::Fused {
            let qk = kernels::fused::HeadsQk { q, key };
            let table = kernels::fused::ProjectedTable {
                query: self.shape.p2c.then_some(pos_query),
                key: self.shape.c2p.then_some(pos_key),
            };
            return kernels::fused::relative_scores(qk, table, &ctx.rows);
        }
        let (b, h, s, dh) = q.dims4()?;
        let heads = |t: &Tensor| -> Result<Tensor> {
            let rows = t.dim(1)?;
            t.reshape((rows, h, dh))?
                .transpose(0, 1)?
                .unsqueeze(0)?
                .contiguous()
        };
        let index = |rows: &Tensor| {
            rows.unsqueeze(0)?
                .unsqueeze(0)?
                .broadcast_as((b, h, s, s))?
                .contiguous()
        };
        let (by_query, by_key) = (index(&ctx.rows)?, index(&ctx.rows.t()?)?);
        let mut terms = Vec::with_capacity(2);
        if self.shape.c2p {
            // Query i against the key projection of distance i - j.
            let all = q.broadcast_matmul(&heads(pos_key)?.t()?)?;
            terms.push(all.gather(&by_query, D::Minus1)?);
        }
        if self.shape.p2c {
            // Key j against the query projection of distance i - j, read along the keys'
            // rows and turned to (query, key).
            let all = key.broadcast_matmul(&heads(pos_query)?.t()?)?;
            terms.push(all.gather(&by_key, D::Minus1)?.transpose(2, 3)?);
        }
        match terms.as_slice() {
            [one] => one.contiguous(),
            [c2p, p2c] => c2p + p2c,
            _ => Tensor::zeros((b, h, s, s), q.dtype(), q.device()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// transformers' `make_log_bucket_position(torch.arange(-600, 601), 256, 512)` (the
    /// released v3 setting) at the edges of the log range, and the whole range of the test
    /// fixture's 8 buckets over 16 positions.
    #[test]
    fn log_buckets_match_transformers() {
        let cases = [
            (0, 0),
            (127, 127),
            (128, 128),
            (129, 129),
            (-129, -129),
            (130, 130),
            (200, 169),
            (255, 192),
            (300, 207),
            (511, 255),
            (512, 256),
            (600, 270),
            (-600, -270),
        ];
        let small: [i64; 41] = [
            0, 1, 2, 3, 4, 5, 5, 6, 6, 6, 7, 7, 7, 7, 7, 7, 8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9,
            9, 9, 9, 9, 9, 9, 9, 9, 10, 10, 10, 10,
        ];
        for (rel, expected) in small.iter().enumerate() {
            assert_eq!(bucket(rel as i64, 8, 16), *expected, "distance {rel}");
            assert_eq!(bucket(-(rel as i64), 8, 16), -expected, "distance -{rel}");
        }
        for (rel, expected) in cases {
            assert_eq!(bucket(rel, 256, 512), expected, "distance {rel}");
        }
    }
}
