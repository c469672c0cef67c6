//! `y = x @ w^T + b` with the bias folded into the GEMM, and a backward pass whose bias
//! gradient is a parallel column sum (candle's is a single-threaded reduction).

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::{column_sums, slice};
use crate::cpu::with_f32;
use crate::gemm::{KeptPacking, View, ViewMut, matmul_kept, product};

/// `kept` holds the packed weights of a layer that is not trained.
struct Linear {
    kept: Option<KeptPacking>,
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "fused-linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (m, k) = xl.shape().dims2()?;
        let (n, k2) = wl.shape().dims2()?;
        if k != k2 || bl.shape().elem_count() != n {
            candle_core::bail!(
                "fused-linear: x {:?}, w {:?}, b {:?} do not fit",
                xl.shape(),
                wl.shape(),
                bl.shape()
            );
        }
        let x = slice(xs, xl, "linear")?;
        let w = slice(ws, wl, "linear")?;
        let b = slice(bs, bl, "linear")?;
        let mut y = Vec::with_capacity(m * n);
        for _ in 0..m {
            y.extend_from_slice(b);
        }
        let threads = rayon::current_num_threads();
        let (x, w) = (View::rows(x, m, k), View::rows(w, n, k));
        let (y_at, w) = (ViewMut::rows(&mut y, m, n), (w.t(), self.kept.as_ref()));
        matmul_kept(y_at, x, w, true, 1.0, threads);
        Ok((CpuStorage::F32(y), Shape::from((m, n))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let (m, n) = dy.dims2()?;
        let k = x.dim(1)?;
        let threads = rayon::current_num_threads();
        let dev = x.device();
        let (dx, dw, db) = with_f32(&dy, |g| -> Result<_> {
            let g = View::rows(g, m, n);
            let dx = if x.track_op() {
                let dx = with_f32(w, |w| product(g, View::rows(w, n, k), 1.0, threads))?;
                Some(Tensor::from_vec(dx, (m, k), dev)?)
            } else {
                None
            };
            let dw = if w.track_op() {
                let dw = with_f32(x, |x| product(g.t(), View::rows(x, m, k), 1.0, threads))?;
                Some(Tensor::from_vec(dw, (n, k), dev)?)
            } else {
                None
            };
            Ok((dx, dw, Tensor::from_vec(column_sums(g.data, n), n, dev)?))
        })??;
        Ok((dx, dw, Some(db)))
    }
}

/// `x @ w^T + b` for `x` of shape `(..., in)`, `w` `(out, in)`, `b` `(out,)`; `kept`, for
/// weights that are not trained (no gradient is tracked for them), keeps their packing
/// between calls. It must belong to this `w`.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor, kept: Option<&KeptPacking>) -> Result<Tensor> {
    // A trained weight changes every step: its packing could not be reused.
    let kept = kept.filter(|_| !w.track_op()).cloned();
    let dims = x.dims().to_vec();
    let inner = *dims.last().expect("rank >= 1");
    let rows = x.elem_count() / inner;
    let y = x.reshape((rows, inner))?.contiguous()?.apply_op3_arc(
        &w.contiguous()?,
        &b.contiguous()?,
        std::sync::Arc::new(Box::new(Linear { kept })),
    )?;
    let mut out = dims;
    *out.last_mut().expect("rank >= 1") = w.dim(0)?;
    y.reshape(out)
}
