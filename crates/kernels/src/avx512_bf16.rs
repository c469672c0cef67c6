//! The bf16 product block on AVX-512 BF16 (AMD Zen 4 and later, Intel Cooper Lake), for CPUs
//! without AMX tiles: the same packed operands and the same 32 x 32 block as
//! [`super::amx::Tiles::block_bf16`].
//!
//! `vdpbf16ps` adds the products of 16 pairs of bf16 into 16 f32 sums: twice the
//! multiply-adds of an f32 FMA per instruction. A right-hand tile row (one pair of K rows for
//! 16 columns, [`super::amx::Side::Right`]) is exactly one operand; the left operand's pair
//! of K values for one row is broadcast from its tile.

use std::arch::x86_64::*;

use super::amx::{BLOCK, TILE_PAIRS};

/// Whether this CPU has AVX-512 BF16.
pub fn available() -> bool {
    super::features::cpu().avx512_bf16
}

/// Rows of the block one pass holds in registers: 8 rows x 32 columns is 16 accumulators,
/// with 2 registers for the right-hand pairs, and 10 loads per 16 `vdpbf16ps`.
const PASS_ROWS: usize = 8;

/// `out[i * 32 + j] = a_i . w_j`, f32 sums of bf16 products, for a block of 32 rows and
/// 32 columns, both packed by [`super::amx::pack_bf16`]; rows from `rows` on (rounded up to a
/// pass) are left as they were.
///
/// # Safety
/// AVX-512 BF16 must be [`available`]; `a` and `w` point at the tiles of 32 rows and 32
/// columns (two groups of 16, `k_tiles` tiles each).
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn block_bf16(
    a: *const u32,
    w: *const u32,
    k_tiles: usize,
    rows: usize,
    out: &mut [f32; BLOCK * BLOCK],
) {
    let group = k_tiles * TILE_PAIRS;
    for r0 in (0..rows.min(BLOCK)).step_by(PASS_ROWS) {
        // Row r of the block is row r % 16 of group r / 16.
        let a = a.wrapping_add((r0 / 16) * group + (r0 % 16) * 16);
        let mut acc = [[_mm512_setzero_ps(); 2]; PASS_ROWS];
        for kt in 0..k_tiles {
            // SAFETY: tile kt of both column groups and of this row group lies inside the
            // packed operands (the caller's promise).
            unsafe {
                let (a, w0) = (a.add(kt * TILE_PAIRS), w.add(kt * TILE_PAIRS));
                let w1 = w0.add(group);
                for p in 0..16 {
                    let b0: __m512bh =
                        std::mem::transmute(_mm512_loadu_si512(w0.add(p * 16).cast()));
                    let b1: __m512bh =
                        std::mem::transmute(_mm512_loadu_si512(w1.add(p * 16).cast()));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let pair = a.add(r * 16 + p).read() as i32;
                        let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                        acc[0] = _mm512_dpbf16_ps(acc[0], x, b0);
                        acc[1] = _mm512_dpbf16_ps(acc[1], x, b1);
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let row = &mut out[(r0 + r) * BLOCK..][..BLOCK];
            // SAFETY: each store writes 16 of the row's 32 floats.
            unsafe {
                _mm512_storeu_ps(row.as_mut_ptr(), acc[0]);
                _mm512_storeu_ps(row.as_mut_ptr().add(16), acc[1]);
            }
        }
    }
}
