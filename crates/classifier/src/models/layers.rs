//! The post-LayerNorm transformer pieces every BERT-family architecture is built from:
//! linear layers (f32 or int8), LayerNorm, embeddings, self-attention, the feed-forward
//! block, and dropout in train mode. Each architecture's file assembles them under its own
//! checkpoint names; the computation is the same, only the names and a few settings (LayerNorm
//! epsilon, position offset, token types) differ.

use std::sync::Arc;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::deberta_v2::{PositionProjections, RelativeContext, RelativePositions};
use kernels::gemm::KeptPacking;
use kernels::int8::QuantizedLinear;
use kernels::{Kernels, Precision};

/// The feed-forward activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Exact GELU (`transformers`' "gelu").
    Gelu,
    Relu,
}

impl Activation {
    /// A `hidden_act` of a BERT-style config, or why it has no equivalent here.
    pub fn from_hidden_act(name: &str) -> std::result::Result<Self, String> {
        match name {
            "gelu" => Ok(Self::Gelu),
            "relu" => Ok(Self::Relu),
            other => Err(format!(
                "hidden_act `{other}` is not supported (only gelu, the exact one, and relu)"
            )),
        }
    }
}

/// Train mode turns dropout on; its masks derive from `seed` (one seed per forward pass).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Eval,
    Train { seed: u64 },
}

impl Mode {
    pub(crate) fn dropout(&self, x: &Tensor, p: f64, site: u64, k: Kernels) -> Result<Tensor> {
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
/// DeBERTa's dropout of the relative-position table in each layer, numbered after every
/// other site of a forward pass.
fn site_positions(layer: usize) -> u64 {
    (1 << 32) + layer as u64
}
/// The dropout after the attention's output projection (BERT's `SelfOutput.dropout`).
fn site_attention_output(layer: usize) -> u64 {
    (2 << 32) + layer as u64
}

/// A linear layer's weights in the one precision it runs in.
#[derive(Debug, Clone)]
pub enum Linear {
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
    /// `weight` `(out_dim, in_dim)` and `bias` `(out_dim)` under `vb`.
    pub fn load(vb: VarBuilder, in_dim: usize, out_dim: usize) -> Result<Self> {
        Ok(Self::f32(
            vb.get((out_dim, in_dim), "weight")?,
            vb.get(out_dim, "bias")?,
        ))
    }

    /// `weight` `(out_dim, in_dim)` of a layer without bias (DeBERTa's `embed_proj`): a
    /// constant zero bias, which is neither trained nor saved.
    pub fn load_no_bias(vb: VarBuilder, in_dim: usize, out_dim: usize) -> Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = Tensor::zeros(out_dim, weight.dtype(), weight.device())?;
        Ok(Self::f32(weight, bias))
    }

    fn f32(weight: Tensor, bias: Tensor) -> Self {
        Self::F32 {
            weight,
            bias,
            kept: KeptPacking::default(),
        }
    }

    pub fn forward(&self, x: &Tensor, k: Kernels) -> Result<Tensor> {
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
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn load(vb: VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: vb.get(dim, "weight")?,
            bias: vb.get(dim, "bias")?,
            eps,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor, k: Kernels) -> Result<Tensor> {
        kernels::layer_norm(x, &self.weight, &self.bias, self.eps, k)
    }
}

/// A linear layer from narrower embeddings to the hidden size, and where it runs.
#[derive(Debug, Clone)]
pub enum Projection {
    /// After the embeddings' LayerNorm and dropout (ELECTRA's `embeddings_project`).
    AfterNorm(Linear),
    /// Before the LayerNorm, which then has the hidden size (DeBERTa's `embed_proj`).
    BeforeNorm(Linear),
}

/// Word plus position embeddings (plus token type 0 where the architecture has token types),
/// then LayerNorm and dropout.
#[derive(Debug, Clone)]
pub struct Embeddings {
    pub word_embeddings: Tensor,
    /// Absent where positions enter only through relative attention (DeBERTa-v3).
    pub position_embeddings: Option<Tensor>,
    /// The `(type_vocab_size, dim)` table; inputs are single segments, so only row 0 is used.
    pub token_type_embeddings: Option<Tensor>,
    /// Position id of the first token: 0, or `pad_token_id + 1` for RoBERTa, whose
    /// positions count from after the padding index.
    pub position_offset: usize,
    pub layer_norm: LayerNorm,
    pub dropout: f64,
    /// From a narrower embedding to the hidden size.
    pub project: Option<Projection>,
}

impl Embeddings {
    fn forward(&self, input_ids: &Tensor, mode: Mode, k: Kernels) -> Result<Tensor> {
        let (b, s) = input_ids.dims2()?;
        let dim = self.word_embeddings.dim(1)?;
        let words =
            kernels::embedding(&self.word_embeddings, input_ids, k)?.reshape((b, s, dim))?;
        let mut x = match self.constant(s)? {
            Some(c) => words.broadcast_add(&c)?,
            None => words,
        };
        if let Some(Projection::BeforeNorm(project)) = &self.project {
            x = project.forward(&x, k)?;
        }
        // DeBERTa also zeroes the pads' rows here; like any pad output, attention never reads
        // them.
        let x = self.layer_norm.forward(&x, k)?;
        let x = mode.dropout(&x, self.dropout, SITE_EMBEDDINGS, k)?;
        match &self.project {
            Some(Projection::AfterNorm(project)) => project.forward(&x, k),
            _ => Ok(x),
        }
    }

    /// What every sequence of length `s` adds to its words: positions and token type 0.
    fn constant(&self, s: usize) -> Result<Option<Tensor>> {
        // Right padding: every real token's position is its index plus the offset (RoBERTa's
        // cumulative count over non-padding tokens gives the same), and a pad's position only
        // changes the pad's own output, which attention never reads.
        let positions = self
            .position_embeddings
            .as_ref()
            .map(|p| p.narrow(0, self.position_offset, s))
            .transpose()?;
        let type0 = self
            .token_type_embeddings
            .as_ref()
            .map(|t| t.get(0))
            .transpose()?;
        Ok(match (positions, type0) {
            (Some(p), Some(t)) => Some(p.broadcast_add(&t)?),
            (p, t) => p.or(t),
        })
    }
}

/// Q, K and V as trained (three layers, each with its own gradient) or, when constant,
/// stacked into one `(3 dim, dim)` layer: one product instead of three, and one copy of the
/// weights.
#[derive(Debug, Clone)]
enum Qkv {
    Separate { q: Linear, k: Linear, v: Linear },
    Packed(Linear),
}

/// Multi-head self-attention with its output projection, and DeBERTa's relative-position
/// terms where the architecture has them.
#[derive(Debug, Clone)]
pub struct SelfAttention {
    qkv: Qkv,
    out: Linear,
    n_heads: usize,
    head_dim: usize,
    dropout: f64,
    /// Dropout of the output projection's result: `hidden_dropout_prob` in the BERT layout
    /// (`*SelfOutput.dropout`), none in DistilBERT.
    output_dropout: f64,
    positions: Option<PositionProjections>,
}

impl SelfAttention {
    /// From the query, key, value and output projections.
    pub fn new([q, k, v, out]: [Linear; 4], n_heads: usize, dropout: f64) -> Result<Self> {
        let head_dim = q.out_dim()? / n_heads;
        let qkv = if [&q, &k, &v].iter().any(|l| l.is_trainable()) {
            Qkv::Separate { q, k, v }
        } else {
            let (weight, bias) = Self::pack(&q, &k, &v)?;
            Qkv::Packed(Linear::f32(weight, bias))
        };
        Ok(Self {
            qkv,
            out,
            n_heads,
            head_dim,
            dropout,
            output_dropout: 0.0,
            positions: None,
        })
    }

    /// Drops out the output projection's result in train mode, as the BERT layout does.
    pub fn with_output_dropout(mut self, p: f64) -> Self {
        self.output_dropout = p;
        self
    }

    /// Adds DeBERTa's content-to-position and position-to-content scores.
    pub fn with_positions(mut self, positions: PositionProjections) -> Self {
        self.positions = Some(positions);
        self
    }

    /// Projects the whole relative-position `table` once and keeps it, where the weights are
    /// constant and still f32 (see [`PositionProjections::kept`]).
    fn keep_positions(&mut self, table: &Tensor) -> Result<()> {
        let constant = matches!(self.qkv, Qkv::Packed(Linear::F32 { .. }));
        let Some(pos) = self
            .positions
            .as_ref()
            .filter(|p| constant && p.kept.is_none())
        else {
            return Ok(());
        };
        let kept = self.project_positions(pos, table, Kernels::default())?;
        self.positions.as_mut().expect("checked").kept = Some(kept);
        Ok(())
    }

    /// `[q; k; v]` stacked. Differentiable: the gradient is split back to each layer.
    fn pack(q: &Linear, k: &Linear, v: &Linear) -> Result<(Tensor, Tensor)> {
        let parts = |l: &Linear| match l {
            Linear::F32 { weight, bias, .. } => Ok((weight.clone(), bias.clone())),
            Linear::Int8(_) => candle_core::bail!("Q, K and V are packed before quantisation"),
        };
        let ((qw, qb), (kw, kb), (vw, vb)) = (parts(q)?, parts(k)?, parts(v)?);
        Ok((
            Tensor::cat(&[qw, kw, vw], 0)?,
            Tensor::cat(&[qb, kb, vb], 0)?,
        ))
    }

    fn set_precision(&mut self, p: Precision) -> Result<()> {
        self.out.set_precision(p)?;
        for lin in self.positions.iter_mut().flat_map(|pos| pos.linears_mut()) {
            lin.set_precision(p)?;
        }
        match &mut self.qkv {
            Qkv::Packed(lin) => lin.set_precision(p),
            Qkv::Separate { q, k, v } => {
                for lin in [q, k, v] {
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
            Qkv::Separate { q, k: key, v } => {
                let (w, bias) = Self::pack(q, key, v)?;
                kernels::linear(x, &w, &bias, k)
            }
        }
    }

    fn forward(&self, x: &Tensor, ctx: &LayerContext, mode: Mode, k: Kernels) -> Result<Tensor> {
        let site = site_attention(ctx.layer);
        let dropout = mode
            .dropout_seed(site)
            .map(|seed| (self.dropout as f32, seed));
        let context = match (k, &self.positions, ctx.relative) {
            (Kernels::Fused, None, _) => {
                let qkv = self.project_packed(x, k)?;
                kernels::fused::attention(&qkv, &ctx.mask.keep, self.n_heads, dropout)?
            }
            (Kernels::Fused, Some(pos), Some(rel)) => {
                let qkv = self.project_packed(x, k)?;
                let (scores, scale) = self.position_scores(&qkv, pos, rel, ctx.layer, mode, k)?;
                kernels::fused::attention_with_scores(
                    &qkv,
                    &ctx.mask.keep,
                    self.n_heads,
                    dropout,
                    &scores,
                    scale,
                )?
            }
            _ => self.context_by_ops(x, ctx, mode, k)?,
        };
        let out = self.out.forward(&ctx.rows.take(&context)?, k)?;
        let site = site_attention_output(ctx.layer);
        mode.dropout(&out, self.output_dropout, site, k)
    }

    /// The attention context by plain tensor operations (DeBERTa's position scores included):
    /// the reference the fused kernels are checked against.
    fn context_by_ops(
        &self,
        x: &Tensor,
        ctx: &LayerContext,
        mode: Mode,
        k: Kernels,
    ) -> Result<Tensor> {
        let site = site_attention(ctx.layer);
        let (b, s, d) = x.dims3()?;
        let split_heads = |t: Tensor| -> Result<Tensor> {
            t.reshape((b, s, self.n_heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, key, v) = match &self.qkv {
            Qkv::Separate { q, k: key, v } => {
                (q.forward(x, k)?, key.forward(x, k)?, v.forward(x, k)?)
            }
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
        let mut scores = q.matmul(&key.t()?)?;
        let mut terms = 1;
        if let (Some(pos), Some(rel)) = (&self.positions, &ctx.relative) {
            let (pos_query, pos_key) = self.projected_positions(pos, rel, ctx.layer, mode, k)?;
            scores = (scores + pos.scores(&q, &key, (&pos_query, &pos_key), rel, k)?)?;
            terms = pos.scale_factor();
        }
        let scale = ((self.head_dim * terms) as f64).powf(-0.5);
        let probs = kernels::masked_softmax(&(scores * scale)?, &ctx.mask.bias()?)?;
        let probs = mode.dropout(&probs, self.dropout, site, k)?;
        probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, s, d))
    }
}

impl SelfAttention {
    /// DeBERTa's c2p and p2c scores `(batch, heads, seq, seq)` for the packed projection
    /// `qkv`, and the scale of the scores they join: what the fused attention adds to
    /// `Q K^T`.
    fn position_scores(
        &self,
        qkv: &Tensor,
        pos: &PositionProjections,
        rel: &RelativeContext,
        layer: usize,
        mode: Mode,
        k: Kernels,
    ) -> Result<(Tensor, f32)> {
        let (b, s, d) = qkv.dims3()?;
        let d = d / 3;
        let split_heads = |at: usize| -> Result<Tensor> {
            qkv.narrow(2, at, d)?
                .reshape((b, s, self.n_heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, key) = (split_heads(0)?, split_heads(d)?);
        let (pos_query, pos_key) = self.projected_positions(pos, rel, layer, mode, k)?;
        let scores = pos.scores(&q, &key, (&pos_query, &pos_key), rel, k)?;
        let scale = ((self.head_dim * pos.scale_factor()) as f32).powf(-0.5);
        Ok((scores, scale))
    }

    /// The position table through the projections: kept from loading when served, else
    /// projected for this pass.
    fn projected_positions(
        &self,
        pos: &PositionProjections,
        rel: &RelativeContext,
        layer: usize,
        mode: Mode,
        k: Kernels,
    ) -> Result<(Tensor, Tensor)> {
        match pos.kept_rows(rel)? {
            Some(kept) => Ok(kept),
            None => {
                let table = pos.table(rel, mode, site_positions(layer), k)?;
                self.project_positions(pos, &table, k)
            }
        }
    }

    /// The relative-position table `(1, rows, dim)` through the query and key projections:
    /// the layer's own (`share_att_key`) or its position ones. An unused side is the table.
    fn project_positions(
        &self,
        pos: &PositionProjections,
        table: &Tensor,
        k: Kernels,
    ) -> Result<(Tensor, Tensor)> {
        let own = |lin: &Option<Linear>| match lin {
            Some(lin) => lin.forward(table, k),
            None => Ok(table.clone()),
        };
        if !pos.shape.share_att_key {
            return Ok((own(&pos.query)?, own(&pos.key)?));
        }
        let d = self.head_dim * self.n_heads;
        match &self.qkv {
            Qkv::Separate { q, k: key, .. } => Ok((q.forward(table, k)?, key.forward(table, k)?)),
            Qkv::Packed(_) => {
                let qkv = self.project_packed(table, k)?;
                Ok((qkv.narrow(2, 0, d)?, qkv.narrow(2, d, d)?))
            }
        }
    }
}

impl Linear {
    fn out_dim(&self) -> Result<usize> {
        match self {
            Self::F32 { weight, .. } => weight.dim(0),
            Self::Int8(q) => Ok(q.out_dim()),
        }
    }
}

/// What each layer of a forward pass reads besides its input: its index, the mask,
/// DeBERTa's relative positions, and which rows of its output are wanted.
struct LayerContext<'a> {
    layer: usize,
    mask: &'a AttentionMask,
    relative: &'a Option<RelativeContext>,
    rows: HiddenRows,
}

/// Which tokens' hidden states a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiddenRows {
    /// Every token: `(batch, seq, dim)`.
    All,
    /// The first token only, `(batch, 1, dim)`: all a first-token head reads. The last
    /// layer still attends over every token, but its output projection, feed-forward block
    /// and LayerNorms run on one row, which skips 9/12 of that layer's products (1/8 of
    /// DistilBERT's) in the forward pass and in training's backward pass alike.
    First,
}

impl HiddenRows {
    fn take(self, x: &Tensor) -> Result<Tensor> {
        match self {
            HiddenRows::All => Ok(x.clone()),
            HiddenRows::First => x.narrow(1, 0, 1),
        }
    }
}

/// The `(batch, seq)` 1 = keep / 0 = pad mask, and (for the reference kernels) its additive
/// form, made once per forward pass.
pub(crate) struct AttentionMask {
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

/// The feed-forward block: `lin2(activation(lin1(x)))`, then dropout.
#[derive(Debug, Clone)]
pub struct Ffn {
    lin1: Linear,
    lin2: Linear,
    activation: Activation,
    dropout: f64,
}

impl Ffn {
    pub fn new(lin1: Linear, lin2: Linear, activation: Activation, dropout: f64) -> Self {
        Self {
            lin1,
            lin2,
            activation,
            dropout,
        }
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

/// One post-LayerNorm transformer layer: `ln2(x' + ffn(x'))` with `x' = ln1(x + attn(x))`.
#[derive(Debug, Clone)]
pub struct EncoderLayer {
    pub attention: SelfAttention,
    pub attention_norm: LayerNorm,
    pub ffn: Ffn,
    pub output_norm: LayerNorm,
}

impl EncoderLayer {
    fn forward(&self, x: &Tensor, ctx: &LayerContext, mode: Mode, k: Kernels) -> Result<Tensor> {
        let attn = self.attention.forward(x, ctx, mode, k)?;
        let x = self
            .attention_norm
            .forward(&(attn + ctx.rows.take(x)?)?, k)?;
        let ffn = self.ffn.forward(&x, mode, site_ffn(ctx.layer), k)?;
        self.output_norm.forward(&(ffn + x)?, k)
    }
}

/// Embeddings and the stack of layers: input ids to the last hidden state.
#[derive(Debug, Clone)]
pub struct Encoder {
    pub embeddings: Embeddings,
    pub layers: Vec<EncoderLayer>,
    /// DeBERTa's relative-position table, which every layer reads.
    pub relative: Option<RelativePositions>,
}

impl Encoder {
    /// Last hidden state `(batch, seq, dim)` for `input_ids` and `attention_mask` (both
    /// `(batch, seq)`, u32; mask 1 = token, 0 = padding), or only its first row.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        rows: HiddenRows,
        mode: Mode,
        k: Kernels,
    ) -> Result<Tensor> {
        let mask = AttentionMask {
            keep: attention_mask.clone(),
            bias: Default::default(),
        };
        let relative = self
            .relative
            .as_ref()
            .map(|r| r.context(input_ids.dim(1)?, k))
            .transpose()?;
        let mut x = self.embeddings.forward(input_ids, mode, k)?;
        let last = self.layers.len().saturating_sub(1);
        for (layer, l) in self.layers.iter().enumerate() {
            let ctx = LayerContext {
                layer,
                mask: &mask,
                relative: &relative,
                rows: if layer == last { rows } else { HiddenRows::All },
            };
            x = l.forward(&x, &ctx, mode, k)?;
        }
        Ok(x)
    }

    /// Runs every layer's linear products in `precision`.
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        if let Some(relative) = &self.relative {
            let table = relative.full_table()?;
            for layer in &mut self.layers {
                layer.attention.keep_positions(&table)?;
            }
        }
        for layer in &mut self.layers {
            layer.attention.set_precision(precision)?;
            layer.ffn.set_precision(precision)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;

    fn linear(d: usize) -> Linear {
        let weight = Tensor::randn(0f32, 0.3, (d, d), &Device::Cpu).unwrap();
        Linear::f32(weight, Tensor::zeros(d, DType::F32, &Device::Cpu).unwrap())
    }

    /// transformers' `*SelfOutput.dropout`: the BERT layout drops out the attention's output
    /// in training; DistilBERT (no output dropout) does not.
    #[test]
    fn the_attention_output_is_dropped_out_in_train_mode_only_where_asked() {
        let d = 8;
        let attention = |p: f64| {
            let layers = [linear(d), linear(d), linear(d), linear(d)];
            SelfAttention::new(layers, 2, 0.0)
                .unwrap()
                .with_output_dropout(p)
        };
        let x = Tensor::randn(0f32, 1.0, (1, 4, d), &Device::Cpu).unwrap();
        let mask = AttentionMask {
            keep: Tensor::ones((1, 4), DType::U32, &Device::Cpu).unwrap(),
            bias: Default::default(),
        };
        let ctx = LayerContext {
            layer: 0,
            mask: &mask,
            relative: &None,
            rows: HiddenRows::All,
        };
        let run = |a: &SelfAttention, mode: Mode| -> Vec<f32> {
            let out = a.forward(&x, &ctx, mode, Kernels::default()).unwrap();
            out.flatten_all().unwrap().to_vec1().unwrap()
        };
        let train = Mode::Train { seed: 1 };
        let (bert, distilbert) = (attention(0.5), attention(0.0));
        assert_eq!(run(&distilbert, train), run(&distilbert, Mode::Eval));
        let (dropped, eval) = (run(&bert, train), run(&bert, Mode::Eval));
        let zeroed = dropped
            .iter()
            .zip(&eval)
            .filter(|(t, e)| **t == 0.0 && **e != 0.0);
        assert!(zeroed.count() > 0, "{dropped:?} vs {eval:?}");
    }
}
