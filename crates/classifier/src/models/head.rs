//! Classification heads: the pooled hidden state to logits. Every BERT-family head is
//! `out(dropout(activation(dense(pooled))))`, some with dropout before `dense` too:
//! DistilBERT's `pre_classifier` -> ReLU -> `classifier`, BERT's pooler (tanh) ->
//! `classifier`, RoBERTa's `classifier.dense` -> tanh -> `classifier.out_proj`, ELECTRA's
//! the same with GELU, DeBERTa's `pooler.dense` -> GELU -> `classifier`.

use candle_core::{DType, IndexOp, Result, Tensor};
use serde::{Deserialize, Serialize};

use super::layers::{HiddenRows, Linear, Mode};
use kernels::Kernels;

/// What the classification head reads from the encoder's last hidden state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, strum::Display)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Pooling {
    /// The first (`[CLS]` / `<s>`) token, as every `*ForSequenceClassification`.
    #[default]
    Cls,
    /// The mean over the tokens the attention mask keeps.
    Mean,
}

impl Pooling {
    pub(crate) fn is_cls(&self) -> bool {
        *self == Pooling::Cls
    }
}

/// What the head applies between its two linear layers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadActivation {
    /// `DistilBertForSequenceClassification`'s ReLU.
    #[default]
    Relu,
    /// BERT's pooler and RoBERTa's classification head.
    Tanh,
    /// ELECTRA's classification head (exact GELU).
    Gelu,
}

impl HeadActivation {
    pub(crate) fn is_relu(&self) -> bool {
        *self == HeadActivation::Relu
    }
}

/// Dropout sites of the head, apart from the encoder's (numbered up from 0).
const SITE_HEAD: u64 = u64::MAX;
const SITE_HEAD_INPUT: u64 = u64::MAX - 1;

/// A two-layer classification head on the pooled tokens.
#[derive(Debug, Clone)]
pub struct ClassificationHead {
    pub pooling: Pooling,
    pub dense: Linear,
    pub activation: HeadActivation,
    pub out: Linear,
    /// Dropout before `out`.
    pub dropout: f64,
    /// Dropout of the pooled input, before `dense` (0 for none: DistilBERT, BERT).
    pub input_dropout: f64,
}

impl ClassificationHead {
    /// The rows of the last hidden state [`Self::forward`] reads.
    pub fn reads(&self) -> HiddenRows {
        match self.pooling {
            Pooling::Cls => HiddenRows::First,
            Pooling::Mean => HiddenRows::All,
        }
    }

    /// Logits `(batch, num_labels)`, f32.
    pub fn forward(
        &self,
        hidden: &Tensor,
        attention_mask: &Tensor,
        mode: Mode,
        k: Kernels,
    ) -> Result<Tensor> {
        let mut x = match self.pooling {
            Pooling::Cls => hidden.i((.., 0))?.contiguous()?,
            Pooling::Mean => mean_over_mask(hidden, attention_mask)?,
        };
        if self.input_dropout > 0.0 {
            x = mode.dropout(&x, self.input_dropout, SITE_HEAD_INPUT, k)?;
        }
        let x = self.dense.forward(&x, k)?;
        let x = match self.activation {
            HeadActivation::Relu => x.relu()?,
            HeadActivation::Tanh => x.tanh()?,
            HeadActivation::Gelu => kernels::gelu(&x, k)?,
        };
        let x = mode.dropout(&x, self.dropout, SITE_HEAD, k)?;
        self.out.forward(&x, k)?.to_dtype(DType::F32)
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
