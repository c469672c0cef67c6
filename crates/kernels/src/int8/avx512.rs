//! The AVX-512 VNNI integer block (AMD Zen 4 and later, Intel Ice Lake and later without AMX):
//! the same packed weights and the same 32 x 32 block as [`crate::amx::Tiles::block_i8`].
//!
//! `vpdpbusd` adds the products of 4 u8 x i8 pairs into each of 16 i32 sums, exactly. A row
//! of a packed weight tile (4 bytes of K for 16 channels) is one operand; the activation
//! row's 4 bytes of K are broadcast.

use std::arch::x86_64::*;

use crate::amx::{BLOCK, K_STEP, TILE_BYTES};

/// Whether this CPU has AVX-512 VNNI.
pub fn available() -> bool {
    crate::features::cpu().avx512_vnni
}

/// Rows per pass: 8 rows x 32 channels is 16 accumulators, with 2 registers of weights.
const PASS_ROWS: usize = 8;
/// How far ahead weights are prefetched, in tiles (1 KiB each).
const PREFETCH_TILES: usize = 4;

/// `out[i * 32 + j] = a_i . w_j`, i32 sums of u8 x i8, for a block of 32 rows and 32
/// channels; rows from `rows` on (rounded up to a pass) are left as they were.
///
/// # Safety
/// AVX-512 VNNI must be [`available`]; `a` points at 32 rows `stride` bytes apart, `w` at the
/// [`crate::amx::pack_i8`] tiles of 32 channels (two groups of 16, `k_tiles` tiles each): both
/// `k_tiles * K_STEP` bytes of K.
#[target_feature(enable = "avx512f,avx512vnni")]
pub unsafe fn block_i8(
    a: *const u8,
    stride: usize,
    w: *const i8,
    k_tiles: usize,
    rows: usize,
    out: &mut [i32; BLOCK * BLOCK],
) {
    let group = k_tiles * TILE_BYTES;
    for r0 in (0..rows.min(BLOCK)).step_by(PASS_ROWS) {
        let mut acc = [[_mm512_setzero_si512(); 2]; PASS_ROWS];
        for kt in 0..k_tiles {
            // SAFETY: tile kt of both channel groups, and K step kt of the pass's rows, lie
            // inside the operands (the caller's promise).
            unsafe {
                let (a, w0) = (a.add(r0 * stride + kt * K_STEP), w.add(kt * TILE_BYTES));
                let w1 = w0.add(group);
                for q in 0..K_STEP / 4 {
                    // The hardware prefetcher stops at page boundaries; ask for each line a
                    // few tiles ahead (past a group's end, the next stream's start).
                    let ahead = PREFETCH_TILES * TILE_BYTES + q * 64;
                    _mm_prefetch::<_MM_HINT_T0>(w0.wrapping_add(ahead).cast());
                    _mm_prefetch::<_MM_HINT_T0>(w1.wrapping_add(ahead).cast());
                    let b0 = _mm512_loadu_si512(w0.add(q * 64).cast());
                    let b1 = _mm512_loadu_si512(w1.add(q * 64).cast());
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let quad = a.add(r * stride + 4 * q).cast::<i32>().read_unaligned();
                        let x = _mm512_set1_epi32(quad);
                        acc[0] = _mm512_dpbusd_epi32(acc[0], x, b0);
                        acc[1] = _mm512_dpbusd_epi32(acc[1], x, b1);
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let row = &mut out[(r0 + r) * BLOCK..][..BLOCK];
            // SAFETY: each store writes 16 of the row's 32 sums.
            unsafe {
                _mm512_storeu_si512(row.as_mut_ptr().cast(), acc[0]);
                _mm512_storeu_si512(row.as_mut_ptr().add(16).cast(), acc[1]);
            }
        }
    }
}
