//! Intel AMX (Sapphire Rapids and later) matrix tiles: the int8 block behind the int8
//! linear layers and the bf16 block behind bf16 matrix products.
//!
//! `tdpbusd` multiplies a 16 x 64 tile of u8 by a 64 x 16 tile of i8 into 16 x 16 i32 sums
//! (16384 multiply-adds per instruction, where AVX2 does 256); `tdpbf16ps` a 16 x 32 tile of
//! bf16 by a 32 x 16 one into f32 sums. The right-hand operand is packed once into the layout
//! its tile wants ([`pack_i8`], [`pack_bf16`]): per 16 columns, K in 64-byte steps, each tile
//! row holding 16 columns x 4 bytes of consecutive K. A block is 2 x 2 tiles (32 rows x 32
//! columns): four accumulators, two left and two right tiles fill the eight tile registers,
//! as oneDNN's AMX kernels do. Rust has no stable AMX intrinsics, so this is inline assembly.

use std::arch::asm;
use std::sync::OnceLock;

/// Bytes of K per tile step: one tile row.
pub const K_STEP: usize = 64;
/// Rows (and columns) per block.
pub const BLOCK: usize = 32;
/// Bytes in one packed 16 x 64 right-hand tile.
pub const TILE_BYTES: usize = 1024;

/// The AMX instruction sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    Int8,
    Bf16,
}

/// Whether this CPU has `feature` and the kernel lets this process use tiles.
pub fn available(feature: Feature) -> bool {
    static USABLE: OnceLock<(bool, bool)> = OnceLock::new();
    let (int8, bf16) = *USABLE.get_or_init(|| {
        let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
        let bit = |b: u32| leaf7.edx >> b & 1 == 1;
        if !bit(24) || !request_tile_data() {
            return (false, false);
        }
        (bit(25), bit(22))
    });
    match feature {
        Feature::Int8 => int8,
        Feature::Bf16 => bf16,
    }
}

/// Linux hands out the 8 KiB of tile state only on request (arch_prctl
/// `ARCH_REQ_XCOMP_PERM`); without it the first tile instruction raises SIGILL. The grant is
/// for the whole process, its current and future threads.
#[cfg(target_os = "linux")]
fn request_tile_data() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain system call with integer arguments.
    let ok = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        )
    };
    if ok != 0 {
        tracing::debug!("AMX present but the kernel refused tile data: AVX kernels run");
    }
    ok == 0
}

#[cfg(not(target_os = "linux"))]
fn request_tile_data() -> bool {
    false
}

/// Packs row-major `channels x stride` i8 weights (`stride` a multiple of [`K_STEP`]) into
/// right-hand tiles. Channels are padded with zeros to whole blocks.
pub fn pack_i8(rows: &[i8], channels: usize, stride: usize) -> Vec<i8> {
    assert!(stride.is_multiple_of(K_STEP) && rows.len() >= channels * stride);
    let k_tiles = stride / K_STEP;
    let mut tiles = vec![0i8; channels.div_ceil(BLOCK) * 2 * k_tiles * TILE_BYTES];
    for (c, row) in rows.chunks_exact(stride).enumerate().take(channels) {
        let (group, lane) = (c / 16, c % 16);
        for (kt, chunk) in row.chunks_exact(K_STEP).enumerate() {
            let tile = &mut tiles[(group * k_tiles + kt) * TILE_BYTES..][..TILE_BYTES];
            for (quad, v) in chunk.chunks_exact(4).enumerate() {
                tile[quad * 64 + lane * 4..][..4].copy_from_slice(v);
            }
        }
    }
    tiles
}

/// A strided f32 matrix read as `rows` rows of `k` values: value `(i, t)` is
/// `data[offset + i * rs + t * ts]`.
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub rows: usize,
    pub k: usize,
    pub rs: usize,
    pub ts: usize,
}

/// Which tile a packed bf16 operand is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Left-hand tiles: 16 rows x 32 values of K, row by row.
    Left,
    /// Right-hand tiles: 16 pairs of K rows, each 16 columns x 2 values ("VNNI" order).
    Right,
}

/// Pairs of bf16 values (the even K index in the low half) per packed tile.
pub const TILE_PAIRS: usize = TILE_BYTES / 4;

/// Packs `src` as bf16 tiles for `side`: per 16 rows, K in tiles of 32 values (1 KiB each,
/// contiguous, so tile loads never alias in the cache), zero padded to whole blocks of rows
/// and to `k_tiles * 32` values. Both sides are stored as pairs of consecutive K values in
/// one u32: a left tile is 16 rows of 16 pairs, a right tile 16 pairs of K rows of 16
/// columns. `out` is reused across calls.
pub fn pack_bf16(src: Rows, side: Side, k_tiles: usize, parallel: bool, out: &mut Vec<u32>) {
    assert!(src.k <= k_tiles * 32);
    if src.rows > 0 && src.k > 0 {
        let last = src.offset + (src.rows - 1) * src.rs + (src.k - 1) * src.ts;
        assert!(
            last < src.data.len(),
            "pack_bf16: {src:?} overruns its slice"
        );
    }
    let group_len = k_tiles * TILE_PAIRS;
    // A transposed operand is read across rows; a task sweeps K once for many groups, so
    // its reads are long contiguous runs rather than one cache line per page.
    let groups = if src.ts != 1 && src.rs == 1 {
        SWEEP_GROUPS
    } else {
        1
    };
    let task = |(t, tiles): (usize, &mut [u32])| {
        pack_groups(src, side, t * groups, (tiles, group_len));
    };
    out.clear();
    out.resize(src.rows.div_ceil(BLOCK) * 2 * group_len, 0);
    use rayon::prelude::*;
    if parallel {
        out.par_chunks_mut(groups * group_len)
            .enumerate()
            .for_each(task);
    } else {
        out.chunks_mut(groups * group_len)
            .enumerate()
            .for_each(task);
    }
}

/// Groups of 16 rows one task packs from a transposed operand: 256 values per K step.
const SWEEP_GROUPS: usize = 16;

/// Packs the groups of 16 rows from `16 g0` on into `tiles`, `group_len` pairs per group
/// (see [`pack_bf16`]).
#[multiversion::multiversion(targets("x86_64+avx512f+avx512bw+avx512vl", "x86_64+avx2+fma"))]
fn pack_groups(src: Rows, side: Side, g0: usize, (tiles, group_len): (&mut [u32], usize)) {
    let rows = (tiles.len() / group_len * 16).min(src.rows.saturating_sub(g0 * 16));
    if rows == 0 {
        return;
    }
    let task = Task {
        base: src.offset + g0 * 16 * src.rs,
        rows,
        side,
        group_len,
    };
    // The helpers are inlined, so they are compiled for each target above.
    if src.ts == 1 {
        pack_k_contiguous(&src, &task, tiles);
    } else if src.rs == 1 {
        pack_rows_contiguous(&src, &task, tiles);
    } else {
        pack_strided(&src, &task, tiles);
    }
}

/// One packing task: `rows` rows from `base` on, into groups of `group_len` pairs.
struct Task {
    base: usize,
    rows: usize,
    side: Side,
    group_len: usize,
}

impl Task {
    /// Where pair `p` of row `i` (of this task) goes.
    #[inline(always)]
    fn at(&self, i: usize, p: usize) -> usize {
        let tile = (i / 16) * self.group_len + (p / 16) * TILE_PAIRS;
        let (i, p) = (i % 16, p % 16);
        tile + match self.side {
            Side::Left => i * 16 + p,
            Side::Right => p * 16 + i,
        }
    }
}

/// K contiguous: a row's pairs are neighbours in its source, converted a tile's 32 values
/// at a time.
#[inline(always)]
fn pack_k_contiguous(src: &Rows, task: &Task, tiles: &mut [u32]) {
    for i in 0..task.rows {
        let row = &src.data[task.base + i * src.rs..][..src.k];
        for (kt, chunk) in row.chunks(32).enumerate() {
            let mut values = [0f32; 32];
            values[..chunk.len()].copy_from_slice(chunk);
            let pairs = pairs16(&values);
            let start = task.at(i, 16 * kt);
            match task.side {
                Side::Left => tiles[start..][..16].copy_from_slice(&pairs),
                Side::Right => {
                    for (q, &v) in pairs.iter().enumerate() {
                        tiles[start + q * 16] = v;
                    }
                }
            }
        }
    }
}

/// Rows contiguous (a transposed operand): pair up K rows 2p and 2p + 1 for every row at
/// once, then spread them over the tiles.
#[inline(always)]
fn pack_rows_contiguous(src: &Rows, task: &Task, tiles: &mut [u32]) {
    let mut column = [0u32; SWEEP_GROUPS * 16];
    let column = &mut column[..task.rows];
    for p in 0..src.k.div_ceil(2) {
        let even = &src.data[task.base + 2 * p * src.ts..][..task.rows];
        if 2 * p + 1 < src.k {
            let odd = &src.data[task.base + (2 * p + 1) * src.ts..][..task.rows];
            for ((d, &lo), &hi) in column.iter_mut().zip(even).zip(odd) {
                *d = pair(lo, hi);
            }
        } else {
            for (d, &lo) in column.iter_mut().zip(even) {
                *d = pair(lo, 0.0);
            }
        }
        match task.side {
            Side::Right => {
                // 16 columns of one pair are one tile row.
                for (g, run) in column.chunks(16).enumerate() {
                    tiles[task.at(g * 16, p)..][..run.len()].copy_from_slice(run);
                }
            }
            Side::Left => {
                for (i, &v) in column.iter().enumerate() {
                    tiles[task.at(i, p)] = v;
                }
            }
        }
    }
}

/// Any other strides: one value at a time.
#[inline(always)]
fn pack_strided(src: &Rows, task: &Task, tiles: &mut [u32]) {
    let value = |i: usize, t: usize| {
        if t < src.k {
            src.data[task.base + i * src.rs + t * src.ts]
        } else {
            0.0
        }
    };
    for i in 0..task.rows {
        for p in 0..src.k.div_ceil(2) {
            tiles[task.at(i, p)] = pair(value(i, 2 * p), value(i, 2 * p + 1));
        }
    }
}

/// 32 consecutive f32 values as 16 pairs of bf16. Split into even and odd values first, so
/// the conversion vectorises.
#[inline(always)]
fn pairs16(values: &[f32; 32]) -> [u32; 16] {
    let (mut lo, mut hi) = ([0f32; 16], [0f32; 16]);
    for q in 0..16 {
        lo[q] = values[2 * q];
        hi[q] = values[2 * q + 1];
    }
    std::array::from_fn(|q| pair(lo[q], hi[q]))
}

/// Two f32 values as bf16, `lo` in the low half.
#[inline(always)]
fn pair(lo: f32, hi: f32) -> u32 {
    bf16(lo) as u32 | (bf16(hi) as u32) << 16
}

/// f32 to bf16, rounding to nearest even; NaN stays NaN. Branch-free, so loops of it
/// vectorise.
#[inline(always)]
pub fn bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    let rounded = bits.wrapping_add(0x7fff + (bits >> 16 & 1)) >> 16;
    let quiet = (bits >> 16) | 0x40;
    (if x.is_nan() { quiet } else { rounded }) as u16
}

/// The tile registers configured for the blocks on this thread, released when dropped.
pub struct Tiles(());

impl Tiles {
    /// # Safety
    /// [`available`] must have returned true for the feature whose blocks will run.
    pub unsafe fn configure() -> Self {
        // palette 1; every tile 16 rows of 64 bytes.
        let mut config = [0u8; 64];
        config[0] = 1;
        for t in 0..8 {
            config[16 + 2 * t] = 64;
            config[48 + t] = 16;
        }
        // SAFETY: AMX is usable (the caller's promise); the config is a valid palette 1.
        unsafe { asm!("ldtilecfg [{}]", in(reg) config.as_ptr(), options(nostack, readonly)) };
        Tiles(())
    }

    /// `out[i * 32 + j] = a_i . w_j`, i32 sums of u8 x i8, for a block of 32 rows and 32
    /// columns.
    ///
    /// # Safety
    /// `a` points at 32 rows `stride` bytes apart, `w` at the [`pack_i8`] tiles of 32
    /// columns (two groups of 16, `k_tiles` tiles each): both `k_tiles * K_STEP` bytes of K.
    pub unsafe fn block_i8(
        &self,
        a: *const u8,
        stride: usize,
        w: *const i8,
        k_tiles: usize,
        out: &mut [i32; BLOCK * BLOCK],
    ) {
        let a_rows = (a, stride, 16 * stride, K_STEP);
        // SAFETY: forwarded from the caller.
        unsafe {
            block!(
                "tdpbusd",
                a_rows,
                w.cast(),
                k_tiles,
                out.as_mut_ptr().cast()
            )
        }
    }

    /// `out[i * 32 + j] = a_i . w_j`, f32 sums of bf16 products, for a block of 32 rows and
    /// 32 columns, both packed by [`pack_bf16`].
    ///
    /// # Safety
    /// `a` and `w` point at the tiles of 32 rows and 32 columns (two groups of 16, `k_tiles`
    /// tiles each).
    pub unsafe fn block_bf16(
        &self,
        a: *const u32,
        w: *const u32,
        k_tiles: usize,
        out: &mut [f32; BLOCK * BLOCK],
    ) {
        let a_tiles = (a.cast(), 64, k_tiles * TILE_BYTES, TILE_BYTES);
        let (w, c) = (w.cast(), out.as_mut_ptr().cast());
        // SAFETY: forwarded from the caller.
        unsafe { block!("tdpbf16ps", a_tiles, w, k_tiles, c) }
    }
}

/// One 2 x 2 tile block with the dot-product instruction `$op`, on byte pointers. `$a` is
/// (start, row stride, offset of rows 16.., bytes per K step) of the left operand; packed
/// right-hand tiles at `w`; 32 rows of 128 bytes out at `c`.
macro_rules! block {
    ($op:literal, $a:expr, $w:expr, $k_tiles:expr, $c:expr) => {{
        let (a, stride, low, step): (*const u8, usize, usize, usize) = $a;
        let (w, k_tiles): (*const u8, usize) = ($w, $k_tiles);
        let c: *mut u8 = $c;
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem)
        );
        let (a_low, w_next) = (a.add(low), w.add(k_tiles * TILE_BYTES));
        for kt in 0..k_tiles {
            asm!(
                "tileloadd tmm4, [{a0} + {s} * 1]",
                "tileloadd tmm6, [{w0} + {ws} * 1]",
                concat!($op, " tmm0, tmm4, tmm6"),
                "tileloadd tmm7, [{w1} + {ws} * 1]",
                concat!($op, " tmm1, tmm4, tmm7"),
                "tileloadd tmm5, [{a1} + {s} * 1]",
                concat!($op, " tmm2, tmm5, tmm6"),
                concat!($op, " tmm3, tmm5, tmm7"),
                a0 = in(reg) a.add(kt * step),
                a1 = in(reg) a_low.add(kt * step),
                w0 = in(reg) w.add(kt * TILE_BYTES),
                w1 = in(reg) w_next.add(kt * TILE_BYTES),
                s = in(reg) stride,
                ws = in(reg) 64usize,
                options(nostack, readonly)
            );
        }
        asm!(
            "tilestored [{c0} + {s} * 1], tmm0",
            "tilestored [{c1} + {s} * 1], tmm1",
            "tilestored [{c2} + {s} * 1], tmm2",
            "tilestored [{c3} + {s} * 1], tmm3",
            c0 = in(reg) c,
            c1 = in(reg) c.add(64),
            c2 = in(reg) c.add(16 * 128),
            c3 = in(reg) c.add(16 * 128 + 64),
            s = in(reg) 128usize,
            options(nostack)
        );
    }};
}
use block;

impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: tiles were configured; releasing returns them to their initial state.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}
