//! LayerNorm over the last dimension, rows in parallel, with its backward pass. Training
//! keeps each row's mean and reciprocal standard deviation for the backward.

use std::mem::MaybeUninit;
use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{ROW_BLOCK, add_into, slice};
use crate::math;

struct LayerNorm {
    eps: f32,
    /// `(mean, 1 / std)` per row, kept when a backward pass will come.
    stats: Option<Mutex<Vec<(f32, f32)>>>,
}

#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn normalize_row(
    x: &[f32],
    (gamma, beta): (&[f32], &[f32]),
    y: &mut [MaybeUninit<f32>],
    eps: f32,
) -> (f32, f32) {
    // Every value of y is written: its buffer is not zeroed first.
    assert!(y.len() == x.len() && gamma.len() == x.len() && beta.len() == x.len());
    let n = x.len() as f32;
    let mean = math::sum(x) / n;
    let var = math::sum_by(x.len(), |i| (x[i] - mean) * (x[i] - mean)) / n;
    let rstd = 1.0 / (var + eps).sqrt();
    for (((y, x), g), b) in y.iter_mut().zip(x).zip(gamma).zip(beta) {
        y.write((x - mean) * rstd * g + b);
    }
    (mean, rstd)
}

/// One row's input gradient; adds the row's share of dgamma / dbeta into the accumulators.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn backward_row(
    x: &[f32],
    g: &[f32],
    gamma: &[f32],
    (mean, rstd): (f32, f32),
    dx: &mut [MaybeUninit<f32>],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let len = x.len();
    // Every value of dx is written: its buffer is not zeroed first.
    assert_eq!(dx.len(), len);
    let (g, gamma, dgamma, dbeta) = (
        &g[..len],
        &gamma[..len],
        &mut dgamma[..len],
        &mut dbeta[..len],
    );
    for i in 0..len {
        let xhat = (x[i] - mean) * rstd;
        dgamma[i] += g[i] * xhat;
        dbeta[i] += g[i];
    }
    let n = len as f32;
    let mean_gg = math::dot(g, gamma) / n;
    let mean_ggx = math::sum_by(len, |i| g[i] * gamma[i] * (x[i] - mean) * rstd) / n;
    for i in 0..x.len() {
        let xhat = (x[i] - mean) * rstd;
        dx[i].write(rstd * (g[i] * gamma[i] - mean_gg - xhat * mean_ggx));
    }
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, gamma, beta) = (
            slice(xs, xl, "layer_norm")?,
            slice(gs, gl, "layer_norm")?,
            slice(bs, bl, "layer_norm")?,
        );
        let d = gamma.len();
        if d == 0 || beta.len() != d || x.len() % d != 0 || xl.shape().dims().last() != Some(&d) {
            candle_core::bail!("layer_norm: x {:?} does not fit weights of {d}", xl.shape());
        }
        let rows = x.len() / d;
        let mut y = Vec::with_capacity(x.len());
        let mut stats = vec![(0f32, 0f32); rows];
        y.spare_capacity_mut()[..x.len()]
            .par_chunks_mut(ROW_BLOCK * d)
            .zip(x.par_chunks(ROW_BLOCK * d))
            .zip(stats.par_chunks_mut(ROW_BLOCK))
            .for_each(|((y, x), st)| {
                for ((y, x), st) in y.chunks_mut(d).zip(x.chunks(d)).zip(st) {
                    *st = normalize_row(x, (gamma, beta), y, self.eps);
                }
            });
        // SAFETY: the rows cover all of y, and normalize_row writes every value of its row.
        unsafe { y.set_len(x.len()) };
        if let Some(keep) = &self.stats {
            *keep.lock().expect("not poisoned") = stats;
        }
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let stats = self
            .stats
            .as_ref()
            .ok_or_else(|| {
                candle_core::Error::Msg("layer_norm: backward without kept statistics".into())
            })?
            .lock()
            .expect("not poisoned");
        let d = gamma.elem_count();
        let dy = dy.contiguous()?;
        let mut dx = Vec::with_capacity(x.elem_count());
        let (dgamma, dbeta) = crate::cpu::with_f32(x, |x| {
            crate::cpu::with_f32(&dy, |g| {
                crate::cpu::with_f32(gamma, |gamma| {
                    // Fixed blocks, partial sums added in block order: deterministic.
                    // Every row of dx is written: the zip below must not stop early.
                    assert!(g.len() == x.len() && stats.len() * d == x.len());
                    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx.spare_capacity_mut()[..x.len()]
                        .par_chunks_mut(ROW_BLOCK * d)
                        .zip(x.par_chunks(ROW_BLOCK * d))
                        .zip(g.par_chunks(ROW_BLOCK * d))
                        .zip(stats.par_chunks(ROW_BLOCK))
                        .map(|(((dx, x), g), st)| {
                            let (mut dg, mut db) = (vec![0f32; d], vec![0f32; d]);
                            for (((dx, x), g), st) in
                                dx.chunks_mut(d).zip(x.chunks(d)).zip(g.chunks(d)).zip(st)
                            {
                                backward_row(x, g, gamma, *st, dx, &mut dg, &mut db);
                            }
                            (dg, db)
                        })
                        .collect();
                    let (mut dg, mut db) = (vec![0f32; d], vec![0f32; d]);
                    for (pg, pb) in &partials {
                        add_into(&mut dg, pg);
                        add_into(&mut db, pb);
                    }
                    (dg, db)
                })
            })
        })???;
        // SAFETY: backward_row wrote every value of every row of dx (asserted above).
        unsafe { dx.set_len(x.elem_count()) };
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(dgamma, d, dev)?),
            Some(Tensor::from_vec(dbeta, d, dev)?),
        ))
    }
}

/// LayerNorm of `x` over its last dimension with weight `gamma` and bias `beta`.
pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    let track = x.track_op() || gamma.track_op() || beta.track_op();
    let op = LayerNorm {
        eps: eps as f32,
        stats: track.then(|| Mutex::new(Vec::new())),
    };
    x.contiguous()?
        .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)
}
