//! The post-LayerNorm transformer pieces every BERT-family architecture is built from:
//! linear layers (f32 or int8), LayerNorm, embeddings, self-attention, the feed-forward
//! block, and dropout in train mode. Each architecture's file assembles them under its own
//! checkpoint names; the computation is the same, only the names and a few settings (LayerNorm
//! epsilon, position offset, token types) differ.

use std::sync::Arc;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

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

    fn forward(&self, x: &Tensor, k: Kernels) -> Result<Tensor> {
        kernels::layer_norm(x, &self.weight, &self.bias, self.eps, k)
    }
}

/// Word plus position embeddings (plus token type 0 where the architecture has token types),
/// then LayerNorm and dropout.
#[derive(Debug, Clone)]
pub struct Embeddings {
    pub word_embeddings: Tensor,
    pub position_embeddings: Tensor,
    /// The `(type_vocab_size, dim)` table; inputs are single segments, so only row 0 is used.
    pub token_type_embeddings: Option<Tensor>,
    /// Position id of the first token: 0, or `pad_token_id + 1` for RoBERTa, whose
    /// positions count from after the padding index.
    pub position_offset: usize,
    pub layer_norm: LayerNorm,
    pub dropout: f64,
    /// ELECTRA's `embeddings_project`: from a narrower embedding to the hidden size.
    pub project: Option<Linear>,
}

impl Embeddings {
    fn forward(&self, input_ids: &Tensor, mode: Mode, k: Kernels) -> Result<Tensor> {
        let (b, s) = input_ids.dims2()?;
        let dim = self.word_embeddings.dim(1)?;
        let words =
            kernels::embedding(&self.word_embeddings, input_ids, k)?.reshape((b, s, dim))?;
        // Right padding: every real token's position is its index plus the offset (RoBERTa's
        // cumulative count over non-padding tokens gives the same), and a pad's position only
        // changes the pad's own output, which attention never reads.
        let mut positions = self
            .position_embeddings
            .narrow(0, self.position_offset, s)?;
        if let Some(types) = &self.token_type_embeddings {
            positions = positions.broadcast_add(&types.get(0)?)?;
        }
        let x = words.broadcast_add(&positions)?;
        let x = self.layer_norm.forward(&x, k)?;
        let x = mode.dropout(&x, self.dropout, SITE_EMBEDDINGS, k)?;
        match &self.project {
            Some(project) => project.forward(&x, k),
            None => Ok(x),
        }
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

/// Multi-head self-attention with its output projection.
#[derive(Debug, Clone)]
pub struct SelfAttention {
    qkv: Qkv,
    out: Linear,
    n_heads: usize,
    head_dim: usize,
    dropout: f64,
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
        })
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

    fn forward(
        &self,
        x: &Tensor,
        mask: &AttentionMask,
        mode: Mode,
        site: u64,
        k: Kernels,
    ) -> Result<Tensor> {
        let context = match k {
            Kernels::Fused => {
                let qkv = self.project_packed(x, k)?;
                let dropout = mode
                    .dropout_seed(site)
                    .map(|seed| (self.dropout as f32, seed));
                kernels::fused::attention(&qkv, &mask.keep, self.n_heads, dropout)?
            }
            Kernels::Reference => self.reference_context(x, mask, mode, site)?,
        };
        self.out.forward(&context, k)
    }

    /// The attention context by plain tensor operations, for checking the fused kernel.
    fn reference_context(
        &self,
        x: &Tensor,
        mask: &AttentionMask,
        mode: Mode,
        site: u64,
    ) -> Result<Tensor> {
        let k = Kernels::Reference;
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
        let scale = (self.head_dim as f64).powf(-0.5);
        let scores = (q.matmul(&key.t()?)? * scale)?;
        let probs = kernels::masked_softmax(&scores, &mask.bias()?)?;
        let probs = mode.dropout(&probs, self.dropout, site, k)?;
        probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, s, d))
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
        let x = self.attention_norm.forward(&(attn + x)?, k)?;
        let ffn = self.ffn.forward(&x, mode, site_ffn(i), k)?;
        self.output_norm.forward(&(ffn + x)?, k)
    }
}

/// Embeddings and the stack of layers: input ids to the last hidden state.
#[derive(Debug, Clone)]
pub struct Encoder {
    pub embeddings: Embeddings,
    pub layers: Vec<EncoderLayer>,
}

impl Encoder {
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

    /// Runs every layer's linear products in `precision`.
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        for layer in &mut self.layers {
            layer.attention.set_precision(precision)?;
            layer.ffn.set_precision(precision)?;
        }
        Ok(())
    }
}
