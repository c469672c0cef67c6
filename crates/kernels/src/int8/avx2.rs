//! The AVX2 integer dot-product kernel: `vpmaddubsw` then `vpmaddwd`, 4 rows x 2 channels.

use std::arch::x86_64::*;

use super::{Dots, Tile};

/// Dispatches the partial tiles at the matrix edges to their own monomorphic kernels.
///
/// # Safety
/// AVX2 must be available; `a` holds `mr` rows and `w` holds `nr` rows of `stride` bytes.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn tile(t: Tile, out: &mut Dots, col: usize) {
    let (a, w, stride, mr, nr) = (t.a, t.w, t.stride, t.mr, t.nr);
    let (a, w) = (a.as_ptr(), w.as_ptr());
    // SAFETY: forwarded from the caller.
    unsafe {
        match (mr, nr) {
            (4, 2) => fixed::<4, 2>(a, w, stride, out, col),
            (3, 2) => fixed::<3, 2>(a, w, stride, out, col),
            (2, 2) => fixed::<2, 2>(a, w, stride, out, col),
            (1, 2) => fixed::<1, 2>(a, w, stride, out, col),
            (4, 1) => fixed::<4, 1>(a, w, stride, out, col),
            (3, 1) => fixed::<3, 1>(a, w, stride, out, col),
            (2, 1) => fixed::<2, 1>(a, w, stride, out, col),
            (1, 1) => fixed::<1, 1>(a, w, stride, out, col),
            _ => unreachable!("tile of {mr} x {nr}"),
        }
    }
}

/// # Safety
/// AVX2 must be available; `a` points at `M` rows and `w` at `N` rows of `stride` bytes.
#[target_feature(enable = "avx2")]
unsafe fn fixed<const M: usize, const N: usize>(
    a: *const u8,
    w: *const i8,
    stride: usize,
    out: &mut Dots,
    col: usize,
) {
    let ones = _mm256_set1_epi16(1);
    let mut sum = [[_mm256_setzero_si256(); N]; M];
    let mut k = 0;
    while k < stride {
        let mut wv = [_mm256_setzero_si256(); N];
        for (j, wv) in wv.iter_mut().enumerate() {
            // SAFETY: k + 32 <= stride, inside row j of w.
            *wv = unsafe { _mm256_loadu_si256(w.add(j * stride + k).cast()) };
        }
        for (i, sum) in sum.iter_mut().enumerate() {
            // SAFETY: k + 32 <= stride, inside row i of a.
            let av = unsafe { _mm256_loadu_si256(a.add(i * stride + k).cast()) };
            for (s, &wv) in sum.iter_mut().zip(&wv) {
                // u8 x i8 pairs into i16 (no saturation with 7-bit weights), then
                // pairs of those into i32.
                let pairs = _mm256_maddubs_epi16(av, wv);
                *s = _mm256_add_epi32(*s, _mm256_madd_epi16(pairs, ones));
            }
        }
        k += 32;
    }
    for (out, sum) in out.iter_mut().zip(&sum) {
        for (out, &s) in out[col..col + N].iter_mut().zip(sum) {
            *out = hsum(s);
        }
    }
}

#[target_feature(enable = "avx2")]
fn hsum(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}
