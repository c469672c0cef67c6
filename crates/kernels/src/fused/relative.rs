//! DeBERTa's relative-position scores at inference, one head at a time: the content-to-
//! position term `c2p[i, j] = q_i . pk_{r(i, j)}` and the position-to-content term
//! `p2c[i, j] = k_j . pq_{r(i, j)}`, where `r(i, j)` is the row of the position table for
//! query `i` and key `j` (the operations it replaces gather the key-side products at the
//! transposed rows, then transpose the result: the same thing).
//!
//! By tensor operations each term is a batched product against every row of the table,
//! `(batch, heads, seq, rows)`, then a gather of it along an index broadcast to `(batch,
//! heads, seq, seq)`, then an add: three passes over buffers of megabytes, and the product
//! on the `gemm` crate. Here each head's two products run on [`crate::gemm::matmul`] into
//! a buffer that stays in L2, and the gather reads from it straight into the scores.
//! No backward pass: training keeps the tensor operations, whose gradients candle knows.

use candle_core::{Result, Tensor};
use rayon::prelude::*;

use super::SharedMut;
use crate::cpu::with_f32;
use crate::gemm::{Layout2, View, ViewMut, matmul};

/// The per-head operands of the scores: `(batch, heads, seq, head_dim)` each.
pub struct HeadsQk<'a> {
    pub q: &'a Tensor,
    pub key: &'a Tensor,
}

/// The position table through the query and key projections, `(1, rows, heads *
/// head_dim)` each; `None` for a term the model does not add.
pub struct ProjectedTable<'a> {
    pub query: Option<&'a Tensor>,
    pub key: Option<&'a Tensor>,
}

/// `c2p + p2c`, `(batch, heads, seq, seq)`, for `rows` `(seq, seq)` u32: the table row of
/// query `i` and key `j`. Gradients do not flow through it.
pub fn relative_scores(qk: HeadsQk, table: ProjectedTable, rows: &Tensor) -> Result<Tensor> {
    let (b, h, s, dh) = qk.q.dims4()?;
    let rows_idx: Vec<u32> = rows.flatten_all()?.to_vec1()?;
    if rows_idx.len() != s * s {
        candle_core::bail!("relative scores: {s} tokens but rows {:?}", rows.shape());
    }
    let n_rows = match (table.query, table.key) {
        (Some(t), _) | (None, Some(t)) => t.dim(1)?,
        (None, None) => return Tensor::zeros((b, h, s, s), qk.q.dtype(), qk.q.device()),
    };
    if let Some(bad) = rows_idx.iter().find(|&&r| r as usize >= n_rows) {
        candle_core::bail!("relative scores: row {bad} of a table of {n_rows}");
    }
    let mut out = vec![0f32; b * h * s * s];
    let shape = Shape { h, s, dh, n_rows };
    with_f32(qk.q, |q| {
        with_f32(qk.key, |key| {
            with_opt(table.key, |pk| {
                with_opt(table.query, |pq| {
                    let terms = Terms { q, key, pk, pq };
                    fill(&mut out, &terms, &rows_idx, shape)
                })
            })
        })
    })?????;
    Tensor::from_vec(out, (b, h, s, s), qk.q.device())
}

/// Calls `f` with the f32 data of `t`, if there is a `t`.
fn with_opt<R>(t: Option<&Tensor>, f: impl FnOnce(Option<&[f32]>) -> R) -> Result<R> {
    match t {
        Some(t) => with_f32(t, |d| f(Some(d))),
        None => Ok(f(None)),
    }
}

#[derive(Clone, Copy)]
struct Shape {
    h: usize,
    s: usize,
    dh: usize,
    n_rows: usize,
}

struct Terms<'a> {
    q: &'a [f32],
    key: &'a [f32],
    /// The key projection of the table, for c2p.
    pk: Option<&'a [f32]>,
    /// The query projection of the table, for p2c.
    pq: Option<&'a [f32]>,
}

/// Fills `out` head by head, in parallel.
fn fill<'a>(out: &mut [f32], t: &Terms<'a>, rows: &[u32], sh: Shape) -> Result<()> {
    let Shape { h, s, dh, n_rows } = sh;
    let heads = out.len() / (s * s);
    let shared = SharedMut::new(out);
    (0..heads).into_par_iter().for_each(|bh| {
        // SAFETY: each head writes only its own s x s block.
        let out = unsafe { &mut shared.get()[bh * s * s..][..s * s] };
        let head = bh % h;
        let mut products = vec![0f32; s * n_rows];
        // The head's columns of a (n_rows, h * dh) table, as a (dh, n_rows) right operand.
        let table_t = |table| {
            let at = Layout2 {
                offset: head * dh,
                rows: dh,
                cols: n_rows,
                rs: 1,
                cs: h * dh,
            };
            View::new(table, at)
        };
        let mine = |x: &'a [f32]| View::rows(&x[bh * s * dh..][..s * dh], s, dh);
        if let Some(pk) = t.pk {
            let dst = ViewMut::rows(&mut products, s, n_rows);
            matmul(dst, mine(t.q), table_t(pk), false, 1.0, 1);
            for (i, out) in out.chunks_mut(s).enumerate() {
                let (row, idx) = (&products[i * n_rows..], &rows[i * s..][..s]);
                out.iter_mut()
                    .zip(idx)
                    .for_each(|(o, &r)| *o = row[r as usize]);
            }
        }
        if let Some(pq) = t.pq {
            let dst = ViewMut::rows(&mut products, s, n_rows);
            matmul(dst, mine(t.key), table_t(pq), false, 1.0, 1);
            // Key j's products, read for every query i at row r(i, j).
            for (j, row) in products.chunks(n_rows).enumerate() {
                for i in 0..s {
                    out[i * s + j] += row[rows[i * s + j] as usize];
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// Against the sums written out, with a row table that is not symmetric, heads of their
    /// own columns, and each term alone.
    #[test]
    fn scores_are_the_gathered_dot_products() {
        let (b, h, s, dh, n_rows) = (2, 3, 5, 4, 7);
        let value = |i: usize, seed: f32| ((i as f32) * 0.37 + seed).sin();
        let make = |n: usize, seed: f32| (0..n).map(|i| value(i, seed)).collect::<Vec<f32>>();
        let (q, key) = (make(b * h * s * dh, 0.1), make(b * h * s * dh, 0.7));
        let (pq, pk) = (make(n_rows * h * dh, 1.3), make(n_rows * h * dh, 2.9));
        let row = |i: usize, j: usize| ((3 * i + 5 * j + 1) % n_rows) as u32;
        let rows: Vec<u32> = (0..s * s).map(|x| row(x / s, x % s)).collect();
        let dev = &Device::Cpu;
        let t4 = |v: &Vec<f32>| Tensor::from_vec(v.clone(), (b, h, s, dh), dev).unwrap();
        let t3 = |v: &Vec<f32>| Tensor::from_vec(v.clone(), (1, n_rows, h * dh), dev).unwrap();
        let (qt, kt, pqt, pkt) = (t4(&q), t4(&key), t3(&pq), t3(&pk));
        let rows_t = Tensor::from_vec(rows.clone(), (s, s), dev).unwrap();
        let dot = |x: &[f32], xi: usize, table: &[f32], r: usize, head: usize| -> f32 {
            (0..dh)
                .map(|t| x[xi * dh + t] * table[r * h * dh + head * dh + t])
                .sum()
        };
        for (c2p, p2c) in [(true, true), (true, false), (false, true)] {
            let got = relative_scores(
                HeadsQk { q: &qt, key: &kt },
                ProjectedTable {
                    query: p2c.then_some(&pqt),
                    key: c2p.then_some(&pkt),
                },
                &rows_t,
            )
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
            for bh in 0..b * h {
                for (i, j) in (0..s).flat_map(|i| (0..s).map(move |j| (i, j))) {
                    let r = rows[i * s + j] as usize;
                    let mut want = 0.0;
                    if c2p {
                        want += dot(&q, bh * s + i, &pk, r, bh % h);
                    }
                    if p2c {
                        want += dot(&key, bh * s + j, &pq, r, bh % h);
                    }
                    let g = got[bh * s * s + i * s + j];
                    assert!(
                        (g - want).abs() < 1e-5,
                        "{c2p}/{p2c} [{bh},{i},{j}]: {g} vs {want}"
                    );
                }
            }
        }
    }
}
