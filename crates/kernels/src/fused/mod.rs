//! Fused CPU kernels with hand-written backward passes: linear (GEMM + bias), multi-head
//! self-attention (scores, mask, softmax, dropout, context in one pass per head), LayerNorm,
//! GELU, dropout, the embedding lookup, and DeBERTa's relative-position scores.
//!
//! Each replaces a chain of candle ops that would allocate a tensor per step and run its
//! elementwise parts on one thread. Work is split over rayon's pool in fixed partitions, and
//! reductions add partial results in a fixed order, so results do not depend on scheduling
//! (a resumed training run must reproduce an uninterrupted one exactly). The reference
//! kernels in [`super`] are the oracle the tests hold these to.

mod attention;
mod elementwise;
mod embedding;
mod layer_norm;
mod linear;
mod relative;

pub use attention::{attention, attention_with_scores};
pub use elementwise::{dropout, gelu};
pub use embedding::embedding;
pub use layer_norm::layer_norm;
pub use linear::linear;
pub use relative::{HeadsQk, ProjectedTable, relative_scores};

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, Layout, Result};

/// The f32 elements of a contiguous CPU tensor.
fn slice<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: expects a contiguous tensor")))?;
    match storage {
        CpuStorage::F32(data) => Ok(&data[start..end]),
        other => candle_core::bail!(
            "{op}: expects f32, got {:?}",
            candle_core::backend::BackendStorage::dtype(other)
        ),
    }
}

/// A raw pointer that parallel tasks use to write disjoint parts of one buffer.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(*mut f32, usize);

// SAFETY: tasks only write index ranges that no other task touches (each use says why).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    pub(crate) fn new(v: &mut [f32]) -> Self {
        Self(v.as_mut_ptr(), v.len())
    }

    /// A buffer of `len` values at `ptr`, which may be uninitialised: only [`Self::ptr`]
    /// may then touch it (writes first), never [`Self::get`].
    pub(crate) fn from_raw(ptr: *mut f32, len: usize) -> Self {
        Self(ptr, len)
    }

    /// The first `len` values of `v`'s spare capacity, uninitialised: tasks write every one
    /// of them through [`Self::ptr`] before `v.set_len(len)`.
    pub(crate) fn spare(v: &mut Vec<f32>, len: usize) -> Self {
        Self::from_raw(v.spare_capacity_mut()[..len].as_mut_ptr().cast(), len)
    }

    pub(crate) fn ptr(&self) -> *mut f32 {
        self.0
    }

    pub(crate) fn len(&self) -> usize {
        self.1
    }

    /// The whole buffer.
    ///
    /// # Safety
    /// Concurrent callers must write disjoint elements, and read none that others write; the
    /// buffer's values are initialised (not one made by [`Self::from_raw`] over fresh memory).
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn get(&self) -> &mut [f32] {
        // SAFETY: the pointer and length come from a live `&mut [f32]` (see `new`).
        unsafe { std::slice::from_raw_parts_mut(self.0, self.1) }
    }
}

/// A new vector of `len` values, written chunk by chunk in parallel by `fill(c, out)`, `out`
/// being values `c * chunk..` (the last chunk shorter), without zeroing them first: zeroing
/// the fresh outputs of a training step's kernels and products took 3-6% of the step.
///
/// # Safety
/// `fill` writes every value of each chunk it is given.
unsafe fn par_new(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync + Send,
) -> Vec<f32> {
    use rayon::prelude::*;
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(c, values)| fill(c, values));
    // SAFETY: every chunk of the first `len` values was written (the caller's promise).
    unsafe { out.set_len(len) };
    out
}

/// Rows per work item when a kernel walks rows in parallel.
const ROW_BLOCK: usize = 16;

/// Sums the rows of a `rows x cols` row-major matrix, `out[j] = sum_i m[i][j]`, in parallel
/// over fixed row blocks whose partial sums are then added in block order.
fn column_sums(m: &[f32], cols: usize) -> Vec<f32> {
    use rayon::prelude::*;
    let rows = m.len() / cols.max(1);
    const BLOCK: usize = 64;
    let partials: Vec<Vec<f32>> = m
        .par_chunks(BLOCK * cols)
        .map(|block| {
            let mut acc = vec![0f32; cols];
            for row in block.chunks(cols) {
                add_into(&mut acc, row);
            }
            acc
        })
        .collect();
    let mut out = vec![0f32; cols];
    for p in &partials {
        add_into(&mut out, p);
    }
    debug_assert!(rows == 0 || !partials.is_empty());
    out
}

#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn add_into(acc: &mut [f32], x: &[f32]) {
    for (a, b) in acc.iter_mut().zip(x) {
        *a += b;
    }
}
