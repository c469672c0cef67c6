//! The CPU tensor operations the transformer models are built from, each differentiable, in
//! two implementations ([`Kernels`]), and the GEMMs under them: this crate holds all of the
//! project's SIMD and `unsafe` code, and knows nothing of models, text or files.
//!
//! - [`gemm`]: every matrix product (f32 on the `gemm` crate or our AVX-512 kernel, bf16 on
//!   AMX tiles or AVX-512 BF16), chosen per CPU by [`features`], detected once.
//! - [`int8`]: dynamically quantised linear layers (VNNI / AVX2 / portable).
//! - [`fused`]: forward and backward passes of linear, LayerNorm, attention, GELU, embedding.
//! - [`math`], [`cpu`]: vectorised `exp`/`erf` and plain-slice access to candle's CPU tensors.
//!
//! candle-nn's fused `layer_norm` and `softmax_last_dim` record no gradient (candle issues
//! #3011, #3569): a model built on them trains only what lies after the last such op, while
//! the loss still falls. The `Reference` kernels here are compositions of candle's primitive
//! ops, so candle's autograd differentiates them; they are the oracle that the [`fused`]
//! kernels (our own forward and backward passes) are tested against.

#[cfg(target_arch = "x86_64")]
pub mod amx;
#[cfg(target_arch = "x86_64")]
pub mod avx512_bf16;
#[cfg(target_arch = "x86_64")]
mod avx512_f32;
pub mod cpu;
mod dropout;
pub mod features;
pub mod fused;
pub mod gemm;
pub mod int8;
pub mod math;

pub use dropout::site_seed;
pub use gemm::{F32Kernel, MatmulPrecision, set_matmul_precision};
pub use int8::Precision;

use candle_core::{D, DType, Result, Tensor};

/// Which implementation of the model's operations to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, strum::Display, strum::EnumString)]
#[strum(
    serialize_all = "lowercase",
    ascii_case_insensitive,
    parse_err_ty = String,
    parse_err_fn = unknown_kernels
)]
pub enum Kernels {
    /// Compositions of candle primitives: slow, obviously correct, differentiable.
    Reference,
    /// Our fused kernels with hand-written backward passes, checked against `Reference`.
    #[default]
    Fused,
}

fn unknown_kernels(s: &str) -> String {
    format!("unknown kernels `{s}`: reference or fused")
}

/// `x @ w^T + b` for `x` of shape `(..., in)`, `w` of shape `(out, in)`.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor, k: Kernels) -> Result<Tensor> {
    linear_kept(x, w, b, None, k)
}

/// [`linear`] for a layer that keeps its packed weights in `kept` while it is not trained
/// ([`gemm::KeptPacking`]); `kept` belongs to this `w` alone.
pub fn linear_kept(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    kept: Option<&gemm::KeptPacking>,
    k: Kernels,
) -> Result<Tensor> {
    match k {
        Kernels::Reference => linear_reference(x, w, b),
        Kernels::Fused => fused::linear(x, w, b, kept),
    }
}

/// Leading dimensions are folded into one so the product is a single GEMM, forward and
/// backward (candle's batched matmul would broadcast `w` and sum its gradient back).
fn linear_reference(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    let (rows, inner) = (x.elem_count() / dims[dims.len() - 1], dims[dims.len() - 1]);
    let y = x
        .reshape((rows, inner))?
        .matmul(&w.t()?)?
        .broadcast_add(b)?;
    let mut out_dims = dims.to_vec();
    *out_dims.last_mut().expect("rank >= 1") = w.dim(0)?;
    y.reshape(out_dims)
}

/// LayerNorm over the last dimension (biased variance, as PyTorch).
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64, k: Kernels) -> Result<Tensor> {
    if k == Kernels::Fused {
        return fused::layer_norm(x, w, b, eps);
    }
    let mean = x.mean_keepdim(D::Minus1)?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centered.broadcast_div(&(var + eps)?.sqrt()?)?;
    normed.broadcast_mul(w)?.broadcast_add(b)
}

/// Softmax over the last dimension of `scores + bias`, `bias` broadcastable to `scores`
/// (the reference path of attention; the fused one does this inside its kernel).
pub fn masked_softmax(scores: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let x = scores.broadcast_add(bias)?;
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// The rows of `table` `(rows, dim)` at `ids`, shaped `(ids.elem_count(), dim)`.
pub fn embedding(table: &Tensor, ids: &Tensor, k: Kernels) -> Result<Tensor> {
    match k {
        Kernels::Reference => table.index_select(&ids.flatten_all()?, 0),
        Kernels::Fused => fused::embedding(table, ids),
    }
}

/// Exact GELU, `x * Phi(x)`, as `transformers`' "gelu" activation.
pub fn gelu(x: &Tensor, k: Kernels) -> Result<Tensor> {
    match k {
        Kernels::Reference => x.gelu_erf(),
        Kernels::Fused => fused::gelu(x),
    }
}

/// Dropout with drop probability `p` and a mask reproducible from `seed` (the identity when
/// `p` is 0). Both implementations draw the same mask.
pub fn dropout(x: &Tensor, p: f32, seed: u64, k: Kernels) -> Result<Tensor> {
    match k {
        Kernels::Reference => dropout::dropout(x, p, seed),
        Kernels::Fused => fused::dropout(x, p, seed),
    }
}

/// Additive attention bias from a `(batch, seq)` 1 = keep / 0 = pad mask: 0 where kept, the
/// most negative f32 where padded (as `transformers`), shaped `(batch, 1, 1, seq)`.
pub fn attention_bias(mask: &Tensor) -> Result<Tensor> {
    let (b, s) = mask.dims2()?;
    let keep = mask.to_dtype(DType::F32)?;
    let bias = ((keep - 1.0)? * -(f32::MIN as f64))?;
    bias.reshape((b, 1, 1, s))
}

/// Cross-entropy of `logits` `(batch, classes)` against `labels` `(batch,)` u32, averaged.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    candle_nn::loss::cross_entropy(logits, labels)
}

/// Cross-entropy with a weight per example: `(1/n) sum_i w_i CE_i`. With class weights
/// `w_i = weight[label_i]` that average to 1 over the training data (balanced:
/// `n / (classes x n_class)`), the loss keeps the plain mean's scale while each class
/// counts as much as the others. `weights` is `(batch,)` f32.
pub fn weighted_cross_entropy(
    logits: &Tensor,
    labels: &Tensor,
    weights: &Tensor,
) -> Result<Tensor> {
    let log_p = candle_nn::ops::log_softmax(logits, candle_core::D::Minus1)?;
    let picked = log_p.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?;
    (picked * weights)?.neg()?.mean_all()
}

/// KL(p||q) + KL(q||p) between the softmax distributions of two `(batch, classes)` logits,
/// averaged over the batch: R-Drop's consistency term (Liang et al. 2021).
pub fn symmetric_kl(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let la = candle_nn::ops::log_softmax(a, candle_core::D::Minus1)?;
    let lb = candle_nn::ops::log_softmax(b, candle_core::D::Minus1)?;
    // sum p log(p/q) + sum q log(q/p) = sum (p - q)(log p - log q)
    let p_minus_q = (la.exp()? - lb.exp()?)?;
    (p_minus_q * (la - lb)?)?
        .sum(candle_core::D::Minus1)?
        .mean_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// A served layer's packing is kept and gives the unkept product's values; a trained
    /// layer's (a `Var`, which changes every step) is never kept.
    #[test]
    fn linear_keeps_the_packing_of_fixed_weights_only() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 40, 64), &dev)?;
        let (w, b) = (
            Tensor::randn(0f32, 1.0, (96, 64), &dev)?,
            Tensor::zeros(96, DType::F32, &dev)?,
        );
        let kept = gemm::KeptPacking::default();
        let plain = linear(&x, &w, &b, Kernels::Fused)?;
        let with_kept = linear_kept(&x, &w, &b, Some(&kept), Kernels::Fused)?;
        let diff = (plain - with_kept)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "kept packing changed the product by {diff}");
        let uses_packing = gemm::F32Kernel::current() == gemm::F32Kernel::Avx512;
        assert_eq!(
            kept.is_packed(),
            uses_packing,
            "packing kept only by the AVX-512 kernel"
        );
        let trained = candle_core::Var::from_tensor(&w)?;
        let kept = gemm::KeptPacking::default();
        linear_kept(&x, trained.as_tensor(), &b, Some(&kept), Kernels::Fused)?;
        assert!(!kept.is_packed(), "a trained weight's packing was kept");
        Ok(())
    }

    #[test]
    fn weighted_cross_entropy_follows_the_formula() -> Result<()> {
        let logits = Tensor::new(&[[2.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]], &Device::Cpu)?;
        let labels = Tensor::new(&[0u32, 1, 1], &Device::Cpu)?;
        let ce = |z: [f64; 2], y: usize| {
            let lse = (z[0].exp() + z[1].exp()).ln();
            lse - z[y]
        };
        let each = [ce([2.0, 0.0], 0), ce([0.0, 1.0], 1), ce([1.0, 1.0], 1)];
        let w = [3.0, 0.5, 0.5];
        let want = (w[0] * each[0] + w[1] * each[1] + w[2] * each[2]) / 3.0;
        let weights = Tensor::new(&[3.0f32, 0.5, 0.5], &Device::Cpu)?;
        let got = weighted_cross_entropy(&logits, &labels, &weights)?.to_scalar::<f32>()?;
        assert!((f64::from(got) - want).abs() < 1e-6, "{got} vs {want}");
        let ones = Tensor::ones(3, candle_core::DType::F32, &Device::Cpu)?;
        let plain = cross_entropy(&logits, &labels)?.to_scalar::<f32>()?;
        let unweighted = weighted_cross_entropy(&logits, &labels, &ones)?.to_scalar::<f32>()?;
        assert!(
            (plain - unweighted).abs() < 1e-6,
            "weights of 1 are the plain mean"
        );
        Ok(())
    }

    #[test]
    fn symmetric_kl_matches_the_definition() -> Result<()> {
        let a = Tensor::new(&[[2.0f32, 0.0], [0.5, 0.5]], &Device::Cpu)?;
        let b = Tensor::new(&[[0.0f32, 1.0], [0.5, 0.5]], &Device::Cpu)?;
        let softmax = |x: [f64; 2]| {
            let z = x[0].exp() + x[1].exp();
            [x[0].exp() / z, x[1].exp() / z]
        };
        let (p, q) = (softmax([2.0, 0.0]), softmax([0.0, 1.0]));
        let kl = |p: [f64; 2], q: [f64; 2]| p[0] * (p[0] / q[0]).ln() + p[1] * (p[1] / q[1]).ln();
        // The second row agrees with itself: KL 0.
        let expected = (kl(p, q) + kl(q, p)) / 2.0;
        let got = f64::from(symmetric_kl(&a, &b)?.to_scalar::<f32>()?);
        assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
        assert_eq!(symmetric_kl(&a, &a)?.to_scalar::<f32>()?, 0.0);
        Ok(())
    }
}
