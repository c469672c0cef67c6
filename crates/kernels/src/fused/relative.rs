//! DeBERTa's relative-position scores, one head at a time: the content-to-position term
//! `c2p[i, j] = q_i . pk_{r(i, j)}` and the position-to-content term
//! `p2c[i, j] = k_j . pq_{r(i, j)}`, where `r(i, j)` is the row of the position table for
//! query `i` and key `j` (the operations this replaces gather the key-side products at the
//! transposed rows, then transpose the result: the same thing).
//!
//! By tensor operations each term is a batched product against every row of the table,
//! `(batch, heads, seq, rows)`, then a gather of it along an index broadcast to `(batch,
//! heads, seq, seq)`: passes over buffers of megabytes, and the product on the `gemm`
//! crate. Here each head's product runs on [`crate::gemm::matmul`] into a buffer that stays
//! in L2, and the gather reads from it straight into the scores. The backward pass scatters
//! the scores' gradient back into such a buffer and multiplies it out the same way; the
//! table's gradient sums over the batch in a fixed order, so runs repeat bit for bit.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::slice;
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
/// query `i` and key `j`.
pub fn relative_scores(qk: HeadsQk, table: ProjectedTable, rows: &Tensor) -> Result<Tensor> {
    let (b, h, s, _) = qk.q.dims4()?;
    let rows = Arc::new(rows.flatten_all()?.to_vec1::<u32>()?);
    if rows.len() != s * s {
        candle_core::bail!("relative scores: {s} tokens but {} rows", rows.len());
    }
    let term = |x: &Tensor, table: &Tensor, side| {
        let op = Term {
            rows: rows.clone(),
            side,
        };
        x.contiguous()?.apply_op2(&table.contiguous()?, op)
    };
    match (table.key, table.query) {
        (Some(pk), Some(pq)) => term(qk.q, pk, Side::Query)? + term(qk.key, pq, Side::Key)?,
        (Some(pk), None) => term(qk.q, pk, Side::Query),
        (None, Some(pq)) => term(qk.key, pq, Side::Key),
        (None, None) => Tensor::zeros((b, h, s, s), qk.q.dtype(), qk.q.device()),
    }
}

/// Which token's products a term reads: the query's (c2p) or the key's (p2c).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Query,
    Key,
}

/// One term: `x` `(batch, heads, seq, head_dim)` against the `table` `(1, rows, heads *
/// head_dim)`, gathered at `rows`.
struct Term {
    rows: Arc<Vec<u32>>,
    side: Side,
}

/// The sizes of one term.
#[derive(Debug, Clone, Copy)]
struct Dims {
    heads: usize,
    s: usize,
    dh: usize,
    table_rows: usize,
}

impl Term {
    fn dims(&self, x: &Layout, table: &Layout) -> Result<Dims> {
        let (_, heads, s, dh) = x.shape().dims4()?;
        let (one, table_rows, width) = table.shape().dims3()?;
        if one != 1 || width != heads * dh || self.rows.len() != s * s {
            candle_core::bail!(
                "relative scores: x {:?}, table {:?}, {} rows do not fit",
                x.shape(),
                table.shape(),
                self.rows.len()
            );
        }
        if let Some(bad) = self.rows.iter().find(|&&r| r as usize >= table_rows) {
            candle_core::bail!("relative scores: row {bad} of a table of {table_rows}");
        }
        Ok(Dims {
            heads,
            s,
            dh,
            table_rows,
        })
    }

    /// Where `(i, j)` of the scores reads the products: `(row of products, table row)`.
    fn at(&self, i: usize, j: usize, s: usize) -> (usize, usize) {
        let r = self.rows[i * s + j] as usize;
        match self.side {
            Side::Query => (i, r),
            Side::Key => (j, r),
        }
    }
}

/// Head `head`'s columns of a `(rows, heads * dh)` table, `rows x dh`.
fn head_of(table: &[f32], head: usize, d: Dims) -> View<'_> {
    let at = Layout2 {
        offset: head * d.dh,
        rows: d.table_rows,
        cols: d.dh,
        rs: d.heads * d.dh,
        cs: 1,
    };
    View::new(table, at)
}

impl CustomOp2 for Term {
    fn name(&self) -> &'static str {
        "relative-scores"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ts: &CpuStorage,
        tl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = self.dims(xl, tl)?;
        let (x, table) = (slice(xs, xl, "relative")?, slice(ts, tl, "relative")?);
        let (s, n) = (d.s, d.table_rows);
        let mut out = vec![0f32; x.len() / d.dh * s];
        out.par_chunks_mut(s * s).enumerate().for_each(|(bh, out)| {
            let mut products = vec![0f32; s * n];
            let x = View::rows(&x[bh * s * d.dh..][..s * d.dh], s, d.dh);
            let table = head_of(table, bh % d.heads, d).t();
            matmul(ViewMut::rows(&mut products, s, n), x, table, false, 1.0, 1);
            for (ij, o) in out.iter_mut().enumerate() {
                let (row, r) = self.at(ij / s, ij % s, s);
                *o = products[row * n + r];
            }
        });
        let (b, heads, s, _) = xl.shape().dims4()?;
        Ok((CpuStorage::F32(out), Shape::from((b, heads, s, s))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        table: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d = self.dims(x.layout(), table.layout())?;
        let grad = grad.contiguous()?;
        with_f32(&grad, |g| {
            with_f32(x, |xv| {
                with_f32(table, |tv| -> Result<_> {
                    let dx = x
                        .track_op()
                        .then(|| self.grad_x(g, tv, d))
                        .map(|dx| Tensor::from_vec(dx, x.shape(), x.device()))
                        .transpose()?;
                    let dt = table
                        .track_op()
                        .then(|| self.grad_table(g, xv, d))
                        .map(|dt| Tensor::from_vec(dt, table.shape(), table.device()))
                        .transpose()?;
                    Ok((dx, dt))
                })
            })
        })???
    }
}

impl Term {
    /// The gradient of one head's products: `g` scattered back to where the scores read.
    fn scatter(&self, g: &[f32], d: Dims, products: &mut [f32]) {
        products.fill(0.0);
        for (ij, g) in g.iter().enumerate() {
            let (row, r) = self.at(ij / d.s, ij % d.s, d.s);
            products[row * d.table_rows + r] += g;
        }
    }

    /// `dx` for the scores' gradient `g`: each head's scattered gradient times its table.
    fn grad_x(&self, g: &[f32], table: &[f32], d: Dims) -> Vec<f32> {
        let (s, n) = (d.s, d.table_rows);
        let mut dx = vec![0f32; g.len() / s * d.dh];
        dx.par_chunks_mut(s * d.dh)
            .enumerate()
            .for_each(|(bh, dx)| {
                let mut products = vec![0f32; s * n];
                self.scatter(&g[bh * s * s..][..s * s], d, &mut products);
                let dst = ViewMut::rows(dx, s, d.dh);
                let table = head_of(table, bh % d.heads, d);
                matmul(dst, View::rows(&products, s, n), table, false, 1.0, 1);
            });
        dx
    }

    /// The table's gradient: per head, the scattered gradients' transposes times `x`,
    /// summed over the batch in order.
    fn grad_table(&self, g: &[f32], x: &[f32], d: Dims) -> Vec<f32> {
        let (s, n, dh) = (d.s, d.table_rows, d.dh);
        let batch = g.len() / (s * s * d.heads);
        let mut by_head = vec![0f32; d.heads * n * dh];
        by_head
            .par_chunks_mut(n * dh)
            .enumerate()
            .for_each(|(h, dt)| {
                let mut products = vec![0f32; s * n];
                for b in 0..batch {
                    let bh = b * d.heads + h;
                    self.scatter(&g[bh * s * s..][..s * s], d, &mut products);
                    let left = View::rows(&products, s, n).t();
                    let x = View::rows(&x[bh * s * dh..][..s * dh], s, dh);
                    matmul(ViewMut::rows(dt, n, dh), left, x, b > 0, 1.0, 1);
                }
            });
        // (heads, rows, dh) to the table's (1, rows, heads * dh).
        let mut dt = vec![0f32; n * d.heads * dh];
        for (r, row) in dt.chunks_mut(d.heads * dh).enumerate() {
            for (h, part) in row.chunks_mut(dh).enumerate() {
                part.copy_from_slice(&by_head[(h * n + r) * dh..][..dh]);
            }
        }
        dt
    }
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

    /// The scores and every input's gradient against the tensor operations DeBERTa's
    /// reference path runs (batched products, gathers, a transpose).
    #[test]
    fn gradients_match_the_tensor_operations() {
        use candle_core::{D, Var};
        let (b, h, s, dh, n) = (2, 3, 5, 4, 7);
        let dev = &Device::Cpu;
        let var = |shape: &[usize], seed: f32| {
            let len = shape.iter().product::<usize>();
            let v: Vec<f32> = (0..len).map(|i| (i as f32 * 0.41 + seed).cos()).collect();
            Var::from_vec(v, shape, dev).unwrap()
        };
        let (q, key) = (var(&[b, h, s, dh], 0.2), var(&[b, h, s, dh], 0.9));
        let (pq, pk) = (var(&[1, n, h * dh], 1.7), var(&[1, n, h * dh], 2.3));
        let rows = (0..s * s).map(|x| ((3 * (x / s) + 5 * (x % s) + 1) % n) as u32);
        let rows = Tensor::from_vec(rows.collect::<Vec<_>>(), (s, s), dev).unwrap();
        let by_ops = || -> Result<Tensor> {
            let heads = |t: &Tensor| t.reshape((n, h, dh))?.transpose(0, 1)?.unsqueeze(0);
            let index = |r: &Tensor| r.unsqueeze(0)?.unsqueeze(0)?.broadcast_as((b, h, s, s));
            let c2p = q.broadcast_matmul(&heads(&pk)?.t()?)?;
            let c2p = c2p.gather(&index(&rows)?.contiguous()?, D::Minus1)?;
            let p2c = key.broadcast_matmul(&heads(&pq)?.t()?)?;
            let p2c = p2c.gather(&index(&rows.t()?)?.contiguous()?, D::Minus1)?;
            c2p + p2c.transpose(2, 3)?
        };
        let fused = || {
            let qk = HeadsQk { q: &q, key: &key };
            let table = ProjectedTable {
                query: Some(&pq),
                key: Some(&pk),
            };
            relative_scores(qk, table, &rows)
        };
        let weights = var(&[b, h, s, s], 0.5);
        let run = |scores: Tensor| {
            let loss = (scores.clone() * weights.as_tensor())
                .unwrap()
                .sum_all()
                .unwrap();
            let grads = loss.backward().unwrap();
            let mut all = vec![scores];
            for v in [&q, &key, &pq, &pk] {
                all.push(grads.get(v.as_tensor()).unwrap().clone());
            }
            all
        };
        let (got, want) = (run(fused().unwrap()), run(by_ops().unwrap()));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.dims(), w.dims(), "output {i}");
            let gap = (g - w).unwrap().abs().unwrap().max_all().unwrap();
            let gap = gap.to_scalar::<f32>().unwrap();
            assert!(
                gap < 1e-4,
                "output {i} (scores, dq, dk, dpq, dpk) off by {gap}"
            );
        }
    }
}
