//! Elementwise ops in parallel chunks: exact GELU and seeded dropout, each with its backward.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{par_new, slice};
use crate::dropout::Mask;
use crate::math;

/// Elements per parallel work item.
const CHUNK: usize = 1 << 14;

#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn gelu_chunk(x: &[f32], y: &mut [MaybeUninit<f32>]) {
    assert_eq!(x.len(), y.len());
    for (y, x) in y.iter_mut().zip(x) {
        y.write(math::gelu(*x));
    }
}

#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn gelu_grad_chunk(x: &[f32], g: &[f32], dx: &mut [MaybeUninit<f32>]) {
    assert!(x.len() == dx.len() && g.len() == dx.len());
    for ((dx, x), g) in dx.iter_mut().zip(x).zip(g) {
        dx.write(g * math::gelu_grad(*x));
    }
}

struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "fused-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, "gelu")?;
        // SAFETY: gelu_chunk writes every value of its chunk (it asserts the lengths match).
        let y = unsafe {
            par_new(x.len(), CHUNK, |c, y| {
                gelu_chunk(&x[c * CHUNK..][..y.len()], y)
            })
        };
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dy = dy.contiguous()?;
        let dx = crate::cpu::with_f32(x, |x| {
            crate::cpu::with_f32(&dy, |g| {
                let part = |c: usize, n: usize| c * CHUNK..c * CHUNK + n;
                // SAFETY: gelu_grad_chunk writes every value of its chunk (lengths asserted).
                unsafe {
                    par_new(x.len(), CHUNK, |c, dx| {
                        gelu_grad_chunk(&x[part(c, dx.len())], &g[part(c, dx.len())], dx)
                    })
                }
            })
        })??;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

/// Exact (erf) GELU.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Gelu)
}

struct Dropout(Mask);

impl Dropout {
    fn apply(&self, x: &[f32]) -> Vec<f32> {
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .enumerate()
            .for_each(|(c, (y, x))| {
                self.0.fill(c * CHUNK, y);
                for (y, x) in y.iter_mut().zip(x) {
                    *y *= x;
                }
            });
        y
    }
}

impl CustomOp1 for Dropout {
    fn name(&self) -> &'static str {
        "fused-dropout"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok((
            CpuStorage::F32(self.apply(slice(s, l, "dropout")?)),
            l.shape().clone(),
        ))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dy = dy.contiguous()?;
        let dx = crate::cpu::with_f32(&dy, |g| self.apply(g))?;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

/// Dropout with the mask [`crate::dropout`] defines, regenerated in the backward pass.
pub fn dropout(x: &Tensor, p: f32, seed: u64) -> Result<Tensor> {
    if p <= 0.0 {
        return Ok(x.clone());
    }
    x.contiguous()?.apply_op1(Dropout(Mask::new(p, seed)))
}
