//! Seeded, counter-based dropout.
//!
//! candle's `ops::dropout` draws its mask from an unseeded thread RNG, so two runs (or a run
//! and its resume) would never see the same masks. Here element `i` of dropout site `s`
//! under seed `k` is kept iff `hash(k, s, i) >= p * 2^32`: masks are reproducible from three
//! integers, cost no storage (backward regenerates them), and can be filled in parallel.

use candle_core::{Result, Tensor};
use rayon::prelude::*;

/// SplitMix64 finaliser: a fast, well-mixed 64-bit hash (Steele et al. 2014).
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of one dropout site (embeddings, a layer's attention, ...) within one forward pass.
#[inline]
pub fn site_seed(seed: u64, site: u64) -> u64 {
    mix64(seed ^ mix64(site.wrapping_mul(0xD1B5_4A32_D192_ED03)))
}

/// Keep-mask parameters for drop probability `p`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mask {
    seed: u64,
    threshold: u32,
    scale: f32,
}

impl Mask {
    pub(crate) fn new(p: f32, seed: u64) -> Self {
        Self {
            seed,
            threshold: (f64::from(p) * 4_294_967_296.0).min(u32::MAX as f64) as u32,
            scale: 1.0 / (1.0 - p),
        }
    }

    /// The factor element `i` is multiplied by: 0 (dropped) or 1/(1-p) (kept).
    #[inline]
    pub(crate) fn factor(&self, i: usize) -> f32 {
        let bits = (mix64(self.seed ^ (i as u64)) >> 32) as u32;
        if bits >= self.threshold {
            self.scale
        } else {
            0.0
        }
    }

    /// Writes the factors of elements `offset..offset + out.len()`.
    pub(crate) fn fill(&self, offset: usize, out: &mut [f32]) {
        out.fill(1.0);
        apply(self, offset, out);
    }

    /// Multiplies `buf` by the factors of elements `offset..offset + buf.len()`.
    pub(crate) fn apply(&self, offset: usize, buf: &mut [f32]) {
        apply(self, offset, buf);
    }
}

// Compiled for AVX-512 DQ too, whose 64-bit multiplies let the hash run 8 lanes at a time
// (as plain x86-64 code it ran one lane: a b8-s128 training step took 637 ms, now 620 on
// Zen 5). The masks are the same integers either way.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx512dq",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn apply(mask: &Mask, offset: usize, buf: &mut [f32]) {
    for (j, x) in buf.iter_mut().enumerate() {
        *x *= mask.factor(offset + j);
    }
}

const CHUNK: usize = 1 << 14;

/// Dropout with a reproducible mask; the identity when `p == 0`. Differentiable: it is a
/// plain multiplication by a constant mask tensor.
pub fn dropout(xs: &Tensor, p: f32, seed: u64) -> Result<Tensor> {
    if p <= 0.0 {
        return Ok(xs.clone());
    }
    if p >= 1.0 {
        return xs.zeros_like();
    }
    let mask = Mask::new(p, seed);
    let mut factors = vec![0f32; xs.elem_count()];
    factors
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| mask.fill(c * CHUNK, chunk));
    let factors = Tensor::from_vec(factors, xs.shape(), xs.device())?.to_dtype(xs.dtype())?;
    xs.mul(&factors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn same_seed_same_mask_and_rate_close_to_p() -> Result<()> {
        let x = Tensor::ones(100_000, candle_core::DType::F32, &Device::Cpu)?;
        let a = dropout(&x, 0.1, 7)?.to_vec1::<f32>()?;
        let b = dropout(&x, 0.1, 7)?.to_vec1::<f32>()?;
        let c = dropout(&x, 0.1, 8)?.to_vec1::<f32>()?;
        assert_eq!(a, b);
        assert_ne!(a, c);
        let dropped = a.iter().filter(|v| **v == 0.0).count() as f64 / a.len() as f64;
        assert!((dropped - 0.1).abs() < 0.01, "drop rate {dropped}");
        let kept = a.iter().find(|v| **v != 0.0).copied().unwrap();
        assert!((kept - 1.0 / 0.9).abs() < 1e-6);
        Ok(())
    }
}
