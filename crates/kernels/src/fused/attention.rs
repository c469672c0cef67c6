//! Multi-head self-attention in one op: for each (sequence, head), scores `Q K^T * scale`,
//! the padding bias, softmax, dropout and `P V`, written straight into the `(batch, seq,
//! dim)` context the output projection reads. No transposes, no per-step tensors.
//!
//! The input is the packed `(batch, seq, 3 * dim)` projection `[Q | K | V]`, and optionally
//! scores to add to `Q K^T` before the scale, one `(seq, seq)` block per (sequence, head):
//! DeBERTa's content-to-position and position-to-content terms, whose gradient is the
//! scores' own. In training the
//! softmax probabilities are kept for the backward pass (dropout masks are regenerated from
//! their seed instead of stored).

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{SharedMut, slice};
use crate::dropout::Mask;
use crate::gemm::{Layout2, View, ViewMut, matmul};
use crate::math;

struct Attention {
    heads: usize,
    scale: f32,
    /// Additive bias per (sequence, key position): 0 to attend, f32::MIN for padding.
    bias: Arc<Vec<f32>>,
    dropout: Option<Mask>,
    /// Softmax probabilities `(batch, heads, seq, seq)`, kept when a backward pass will come.
    probs: Option<Mutex<Vec<f32>>>,
}

struct Dims {
    b: usize,
    s: usize,
    d: usize,
    dh: usize,
}

impl Attention {
    fn dims(&self, shape: &Shape) -> Result<Dims> {
        let (b, s, d3) = shape.dims3()?;
        if d3 % 3 != 0 || (d3 / 3) % self.heads != 0 {
            candle_core::bail!("attention: last dim {d3} is not 3 x heads x head_dim");
        }
        let d = d3 / 3;
        Ok(Dims {
            b,
            s,
            d,
            dh: d / self.heads,
        })
    }

    /// Index of the first dropout-mask element of (sequence, head): masks are numbered as
    /// the reference kernel's `(batch, heads, seq, seq)` probabilities.
    fn mask_base(&self, bi: usize, h: usize, s: usize) -> usize {
        (bi * self.heads + h) * s * s
    }

    /// The attention weights `p` of (sequence, head) after dropout: `p` itself without
    /// dropout, else a masked copy in `scratch`. Forward and backward must agree exactly.
    fn weights<'a>(
        &self,
        p: &'a [f32],
        scratch: &'a mut [f32],
        bi: usize,
        h: usize,
        s: usize,
    ) -> &'a [f32] {
        match &self.dropout {
            Some(mask) => {
                scratch.copy_from_slice(p);
                apply_mask(scratch, mask, self.mask_base(bi, h, s));
                scratch
            }
            None => p,
        }
    }
}

#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn softmax_rows(scores: &mut [f32], bias: &[f32]) {
    let s = bias.len();
    for row in scores.chunks_mut(s) {
        for (x, b) in row.iter_mut().zip(bias) {
            *x += b;
        }
        let max = math::max(row);
        for x in row.iter_mut() {
            *x = math::exp(*x - max);
        }
        let inv = 1.0 / math::sum(row);
        for x in row.iter_mut() {
            *x *= inv;
        }
    }
}

/// `dS = P * (dP - rowsum(dP * P)) * scale`, in place of `dp`.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn softmax_backward_rows(dp: &mut [f32], p: &[f32], s: usize, scale: f32) {
    for (g, p) in dp.chunks_mut(s).zip(p.chunks(s)) {
        let dot = math::dot(g, p);
        for (g, p) in g.iter_mut().zip(p) {
            *g = p * (*g - dot) * scale;
        }
    }
}

fn apply_mask(buf: &mut [f32], mask: &Mask, base: usize) {
    mask.apply(base, buf);
}

impl Attention {
    /// The op for `qkv` and its `(batch, seq)` keep `mask`; `track` keeps the softmax
    /// probabilities for a backward pass.
    fn new(
        qkv: &Tensor,
        mask: &Tensor,
        heads: usize,
        dropout: Option<(f32, u64)>,
        scale: f32,
        track: bool,
    ) -> Result<Self> {
        let (b, s, _) = qkv.dims3()?;
        let keep = mask
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        if keep.len() != b * s {
            candle_core::bail!("attention: mask {:?} does not fit ({b}, {s})", mask.dims());
        }
        let bias = keep
            .iter()
            .map(|&k| if k > 0.5 { 0.0 } else { f32::MIN })
            .collect();
        Ok(Self {
            heads,
            scale,
            bias: Arc::new(bias),
            dropout: dropout
                .filter(|(p, _)| *p > 0.0)
                .map(|(p, seed)| Mask::new(p, seed)),
            probs: track.then(|| Mutex::new(Vec::new())),
        })
    }

    /// The context `(batch, seq, dim)`; `scores`, if given, holds a `(seq, seq)` block per
    /// (sequence, head) added to `Q K^T` before the scale.
    fn forward(&self, qkv: &[f32], shape: &Shape, scores: Option<&[f32]>) -> Result<CpuStorage> {
        let Dims { b, s, d, dh } = self.dims(shape)?;
        if self.bias.len() != b * s {
            candle_core::bail!(
                "attention: mask has {} entries for {b}x{s} tokens",
                self.bias.len()
            );
        }
        // Not zeroed: the tasks' blocks cover it (heads x head_dim = dim, checked by dims).
        let mut out = Vec::<f32>::with_capacity(b * s * d);
        let out_ptr = SharedMut::spare(&mut out, b * s * d);
        let mut probs_guard = self.probs.as_ref().map(|p| p.lock().expect("not poisoned"));
        if let Some(p) = probs_guard.as_mut() {
            p.resize(b * self.heads * s * s, 0.0);
        }
        let probs_ptr = probs_guard.as_mut().map(|p| SharedMut::new(p));
        (0..b * self.heads).into_par_iter().for_each_init(
            || (vec![0f32; s * s], vec![0f32; s * s]),
            |(scratch, dropped), task| {
                let (bi, h) = (task / self.heads, task % self.heads);
                let block = |off: usize| {
                    View::new(
                        qkv,
                        Layout2::strided_rows(bi * s * 3 * d + off + h * dh, s, dh, 3 * d),
                    )
                };
                let (q, k, v) = (block(0), block(d), block(2 * d));
                let p: &mut [f32] = match &probs_ptr {
                    // SAFETY: task (bi, h) alone writes probabilities block `task`.
                    Some(ptr) => {
                        let all = unsafe { ptr.get() };
                        &mut all[task * s * s..(task + 1) * s * s]
                    }
                    None => scratch,
                };
                let added = scores.map(|sc| &sc[task * s * s..(task + 1) * s * s]);
                if let Some(added) = added {
                    for (x, a) in p.iter_mut().zip(added) {
                        *x = a * self.scale;
                    }
                }
                let qk = ViewMut::rows(p, s, s);
                matmul(qk, q, k.t(), added.is_some(), self.scale, 1);
                softmax_rows(p, &self.bias[bi * s..(bi + 1) * s]);
                let weights = self.weights(p, dropped, bi, h, s);
                let dst = Layout2::strided_rows(bi * s * d + h * dh, s, dh, d);
                // SAFETY: task (bi, h) alone writes the h-th head block of sequence bi.
                let dst = unsafe { ViewMut::of_shared(&out_ptr, dst) };
                matmul(dst, View::rows(weights, s, s), v, false, 1.0, 1);
            },
        );
        // SAFETY: the (sequence, head) blocks, each written in full by its product, cover
        // all b x s x d values.
        unsafe { out.set_len(b * s * d) };
        Ok(CpuStorage::F32(out))
    }

    /// The gradients of `qkv` and, when `with_scores`, of the added scores (which are those
    /// of `Q K^T`: the scores enter beside it).
    fn backward(
        &self,
        qkv: &Tensor,
        d_out: &Tensor,
        with_scores: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let probs = self
            .probs
            .as_ref()
            .ok_or_else(|| {
                candle_core::Error::Msg("attention: backward without kept probabilities".into())
            })?
            .lock()
            .expect("not poisoned");
        let Dims { b, s, d, dh } = self.dims(qkv.shape())?;
        let d_out = d_out.contiguous()?;
        // Not zeroed: the tasks' Q, K and V blocks cover it.
        let mut dqkv = Vec::<f32>::with_capacity(b * s * 3 * d);
        let dqkv_ptr = SharedMut::spare(&mut dqkv, b * s * 3 * d);
        let mut dscores = vec![0f32; if with_scores { probs.len() } else { 0 }];
        let dscores_ptr = SharedMut::new(&mut dscores);
        crate::cpu::with_f32(qkv, |qkv| {
            crate::cpu::with_f32(&d_out, |g| {
                (0..b * self.heads).into_par_iter().for_each_init(
                    || (vec![0f32; s * s], vec![0f32; s * s]),
                    |(dropped, dp), task| {
                        let (bi, h) = (task / self.heads, task % self.heads);
                        let block = |off: usize| {
                            Layout2::strided_rows(bi * s * 3 * d + off + h * dh, s, dh, 3 * d)
                        };
                        let q = View::new(qkv, block(0));
                        let k = View::new(qkv, block(d));
                        let v = View::new(qkv, block(2 * d));
                        let go = View::new(g, Layout2::strided_rows(bi * s * d + h * dh, s, dh, d));
                        let p = &probs[task * s * s..(task + 1) * s * s];
                        let weights = self.weights(p, dropped, bi, h, s);
                        // SAFETY (all three): task (bi, h) alone writes the h-th Q, K and V
                        // column blocks of sequence bi in dqkv.
                        let dst = |at| unsafe { ViewMut::of_shared(&dqkv_ptr, at) };
                        // dV = W^T dO
                        let w = View::rows(weights, s, s);
                        matmul(dst(block(2 * d)), w.t(), go, false, 1.0, 1);
                        // dW = dO V^T, then back through dropout and softmax into dS.
                        matmul(ViewMut::rows(dp, s, s), go, v.t(), false, 1.0, 1);
                        if let Some(mask) = &self.dropout {
                            apply_mask(dp, mask, self.mask_base(bi, h, s));
                        }
                        softmax_backward_rows(dp, p, s, self.scale);
                        if with_scores {
                            // SAFETY: task (bi, h) alone writes block `task`.
                            let all = unsafe { dscores_ptr.get() };
                            all[task * s * s..(task + 1) * s * s].copy_from_slice(dp);
                        }
                        // dQ = dS K, dK = dS^T Q
                        let ds = View::rows(dp, s, s);
                        matmul(dst(block(0)), ds, k, false, 1.0, 1);
                        matmul(dst(block(d)), ds.t(), q, false, 1.0, 1);
                    },
                )
            })
        })??;
        // SAFETY: the (sequence, head) tasks' Q, K and V blocks, each written in full by its
        // product, cover all b x s x 3d values.
        unsafe { dqkv.set_len(b * s * 3 * d) };
        let dev = qkv.device();
        let dscores = with_scores
            .then(|| Tensor::from_vec(dscores, (b, self.heads, s, s), dev))
            .transpose()?;
        Ok((Tensor::from_vec(dqkv, (b, s, 3 * d), dev)?, dscores))
    }
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let qkv = slice(storage, layout, "attention")?;
        let out = self.forward(qkv, layout.shape(), None)?;
        let (b, s, d3) = layout.shape().dims3()?;
        Ok((out, Shape::from((b, s, d3 / 3))))
    }

    fn bwd(&self, qkv: &Tensor, _out: &Tensor, d_out: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(self.backward(qkv, d_out, false)?.0))
    }
}

/// [`Attention`] with scores added to `Q K^T`: a second input, with its own gradient.
struct ScoredAttention(Attention);

impl CustomOp2 for ScoredAttention {
    fn name(&self) -> &'static str {
        "fused-attention-scored"
    }

    fn cpu_fwd(
        &self,
        qkv: &CpuStorage,
        qkv_layout: &Layout,
        scores: &CpuStorage,
        scores_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let qkv_data = slice(qkv, qkv_layout, "attention")?;
        let scores = slice(scores, scores_layout, "attention scores")?;
        let out = self.0.forward(qkv_data, qkv_layout.shape(), Some(scores))?;
        let (b, s, d3) = qkv_layout.shape().dims3()?;
        Ok((out, Shape::from((b, s, d3 / 3))))
    }

    fn bwd(
        &self,
        qkv: &Tensor,
        scores: &Tensor,
        _out: &Tensor,
        d_out: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dqkv, dscores) = self.0.backward(qkv, d_out, scores.track_op())?;
        Ok((Some(dqkv), dscores))
    }
}

/// Self-attention over the packed projection `qkv` `(batch, seq, 3 * dim)` with the
/// `(batch, seq)` 1 = keep / 0 = pad `mask`; dropout on the probabilities when `dropout` is
/// `Some((p, seed))`. Returns the context `(batch, seq, dim)`.
pub fn attention(
    qkv: &Tensor,
    mask: &Tensor,
    heads: usize,
    dropout: Option<(f32, u64)>,
) -> Result<Tensor> {
    let head_dim = qkv.dim(2)? / 3 / heads;
    let scale = (head_dim as f32).powf(-0.5);
    let op = Attention::new(qkv, mask, heads, dropout, scale, qkv.track_op())?;
    qkv.contiguous()?.apply_op1(op)
}

/// [`attention`] with `scores` `(batch, heads, seq, seq)` added to `Q K^T`, and the sum
/// times `scale` (DeBERTa's `1 / sqrt(head_dim * terms)`) before the mask and softmax.
pub fn attention_with_scores(
    qkv: &Tensor,
    mask: &Tensor,
    heads: usize,
    dropout: Option<(f32, u64)>,
    scores: &Tensor,
    scale: f32,
) -> Result<Tensor> {
    let (b, s, _) = qkv.dims3()?;
    if scores.dims() != [b, heads, s, s] {
        candle_core::bail!(
            "attention: scores {:?} are not ({b}, {heads}, {s}, {s})",
            scores.dims()
        );
    }
    let track = qkv.track_op() || scores.track_op();
    let op = Attention::new(qkv, mask, heads, dropout, scale, track)?;
    qkv.contiguous()?
        .apply_op2(&scores.contiguous()?, ScoredAttention(op))
}
