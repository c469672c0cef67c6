//! A checked, strided f32 matrix product over slices, on the `gemm` crate (what candle's CPU
//! matmul runs on), for kernels that need products on sub-matrices without copies.

use gemm::Parallelism;

/// Where a strided matrix lies in its slice: element `(i, j)` of a `rows x cols` matrix is
/// `data[offset + i * rs + j * cs]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout2 {
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl Layout2 {
    /// A row-major `rows x cols` matrix starting at `offset` with row stride `rs`.
    pub fn strided_rows(offset: usize, rows: usize, cols: usize, rs: usize) -> Self {
        Self {
            offset,
            rows,
            cols,
            rs,
            cs: 1,
        }
    }

    fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    fn check(&self, len: usize, what: &str) {
        if self.rows == 0 || self.cols == 0 {
            return;
        }
        let last = self.offset + (self.rows - 1) * self.rs + (self.cols - 1) * self.cs;
        assert!(last < len, "{what}: {self:?} overruns {len} elements");
    }
}

/// A read-only strided matrix inside a slice.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub at: Layout2,
}

impl<'a> View<'a> {
    pub fn new(data: &'a [f32], at: Layout2) -> Self {
        Self { data, at }
    }

    /// The dense row-major `rows x cols` matrix at the start of `data`.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, Layout2::strided_rows(0, rows, cols, cols))
    }

    /// The transpose of this view.
    pub fn t(self) -> Self {
        Self {
            at: self.at.t(),
            ..self
        }
    }
}

/// A writable strided matrix inside a slice.
#[derive(Debug)]
pub struct ViewMut<'a> {
    pub data: &'a mut [f32],
    pub at: Layout2,
}

impl<'a> ViewMut<'a> {
    pub fn new(data: &'a mut [f32], at: Layout2) -> Self {
        Self { data, at }
    }

    /// The dense row-major `rows x cols` matrix at the start of `data`.
    pub fn rows(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, Layout2::strided_rows(0, rows, cols, cols))
    }
}

/// Products at least this large (m * n * k) are split over the thread pool.
const PARALLEL_MIN_WORK: usize = 1 << 20;

/// `dst = (accumulate ? dst : 0) + scale * a @ b`.
///
/// `threads` caps the parallelism: 1 inside an already parallel loop, otherwise the pool.
///
/// # Panics
/// If the shapes do not chain or a view overruns its slice.
pub fn matmul(dst: ViewMut, a: View, b: View, accumulate: bool, scale: f32, threads: usize) {
    let (m, k, n) = (a.at.rows, a.at.cols, b.at.cols);
    assert!(
        b.at.rows == k && dst.at.rows == m && dst.at.cols == n,
        "matmul: {:?} @ {:?} into {:?}",
        a.at,
        b.at,
        dst.at
    );
    a.at.check(a.data.len(), "lhs");
    b.at.check(b.data.len(), "rhs");
    dst.at.check(dst.data.len(), "dst");
    if m == 0 || n == 0 {
        return;
    }
    let parallelism = if threads > 1 && m * n * k >= PARALLEL_MIN_WORK {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    let (a_at, b_at, d_at) = (a.at, b.at, dst.at);
    // SAFETY: every element the product reads or writes lies inside the slices (checked
    // above); `dst` is borrowed mutably, so nothing else aliases it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr().add(d_at.offset),
            d_at.cs as isize,
            d_at.rs as isize,
            accumulate,
            a.data.as_ptr().add(a_at.offset),
            a_at.cs as isize,
            a_at.rs as isize,
            b.data.as_ptr().add(b_at.offset),
            b_at.cs as isize,
            b_at.rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_product_matches_naive() {
        let (m, n, k) = (3, 4, 5);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32).sin()).collect();
        // dst with a row stride of 6 (padding columns) and values to accumulate onto.
        let mut dst = vec![1.0f32; m * 6];
        // b used transposed: store b^T (n x k) and view it as k x n.
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        matmul(
            ViewMut::new(&mut dst, Layout2::strided_rows(0, m, n, 6)),
            View::rows(&a, m, k),
            View::rows(&bt, n, k).t(),
            true,
            2.0,
            1,
        );
        for i in 0..m {
            for j in 0..n {
                let want: f32 =
                    1.0 + 2.0 * (0..k).map(|t| a[i * k + t] * b[t * n + j]).sum::<f32>();
                assert!(
                    (dst[i * 6 + j] - want).abs() < 1e-4,
                    "({i},{j}) {} vs {want}",
                    dst[i * 6 + j]
                );
            }
            assert_eq!(dst[i * 6 + 5], 1.0, "padding untouched");
        }
    }
}
