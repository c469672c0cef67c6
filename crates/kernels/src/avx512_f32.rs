//! f32 matrix products on AVX-512 with 512-bit FMAs, for CPUs whose 512-bit FMA units run
//! at full width (Intel Xeons from Skylake-SP on, AMD from Zen 5 on) and so do twice the
//! work per instruction of the `gemm` crate's AVX2 kernels (its own AVX-512 kernels lost on
//! the 32-row products of batch-1 inference).
//!
//! A blocked product as BLIS lays it out. The work is split along the output's longer side;
//! the operand that every task reads in full is packed once, up front, and each task packs
//! its own part of the other. The right operand is packed into panels of `NR` columns
//! (`KC x NR`, K-major, zero padded) that stay in L2, `KC` values of K at a time, and `MR` rows
//! of the left operand into K-major micro-panels that stay in L1 while the right block streams
//! past them (prefetched a few steps ahead). Large operands (the 12 MB activations of a
//! batch-32 pass) come from memory: the next left micro-panel is fetched into L2 a part per
//! block while the current one runs, and the block of C into L2 at a block's start and into
//! L1 near its end (+12% on batch-32 inference, 4096 x 768 x 3072 went from 120 to 140-147
//! GFLOP/s on one core). The microkernel holds an `MR x NR` block of sums in
//! 24 of the 32 vector registers: per value of K, two loads of the right panel, `MR`
//! broadcasts of the left one and `2 MR` FMAs. Packing makes every operand layout (row-major,
//! transposed, strided) one case for the microkernel; the transposed right operand of
//! `x @ w^T` (every linear layer) is packed with 16 x 16 register transposes.

use std::arch::x86_64::*;
use std::cell::RefCell;
use std::ops::Range;

use rayon::prelude::*;

use super::fused::SharedMut;
use super::gemm::{Layout2, View, ViewMut};

/// Rows of the microkernel's block of sums.
const MR: usize = 12;
/// Columns of the microkernel's block of sums: two 16-lane registers.
const NR: usize = 32;
/// Values of K per packed block: a right panel is 48 KiB, a left micro-panel 18 KiB (L1
/// holds it). 384 took 4% off batch-32 inference against 256: the 768 values of K of
/// DistilBERT in two blocks rather than three, so one pass less over the output.
const KC: usize = 384;
/// Columns per packed right block (`KC x NC` is 576 KiB, held in L2).
const NC: usize = 384;

/// At most this many left micro-panels per task of a split by rows (192 rows): the task's
/// packed left operand (590 KB at K = 768) then stays in L2 beside the right block, where a
/// quarter of a batch-32 pass's 4096 rows (3.2 MB) was read from L3 for every block of
/// columns. 4096 x 768 x 768 went from 111-146 to 196-238 GFLOP/s on 2 threads; 8 to 24
/// panels measured alike.
const TASK_PANELS: usize = 16;

/// How many values of K ahead the microkernel prefetches its right panel.
const PREFETCH_STEPS: usize = 8;

/// How many values of K before the end the microkernel fetches its block of C into L1.
const LATE_STEPS: usize = 32;

thread_local! {
    /// Packed left and right operands, reused call after call on each thread.
    static PACKED: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `dst = (accumulate ? dst : 0) + scale * a @ b`, as [`super::gemm::matmul`], whose
/// caller has checked the shapes and views.
///
/// # Safety
/// AVX-512 F must be available ([`super::features::Cpu::avx512f`]).
pub unsafe fn matmul(dst: ViewMut, a: View, b: View, accumulate: bool, scale: f32, threads: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { product(dst, a, b, None, accumulate, scale, threads) }
}

/// A right operand packed once, whole, as every product packs it, for weights that never
/// change (inference): each batch-32 product otherwise re-packs its 2.4-9.4 MB of weights.
#[derive(Debug)]
pub struct PackedRight {
    data: Vec<f32>,
    k: usize,
    n: usize,
}

impl PackedRight {
    /// Packs `b`.
    ///
    /// # Safety
    /// AVX-512 F must be available.
    pub unsafe fn new(b: View) -> Self {
        Self {
            // SAFETY: the caller's promise.
            data: unsafe { pack_all_right(b) },
            k: b.at.rows,
            n: b.at.cols,
        }
    }

    /// Whether this is the packing of a `k x n` operand.
    pub fn fits(&self, k: usize, n: usize) -> bool {
        (self.k, self.n) == (k, n)
    }
}

/// [`matmul`] with `b` already packed as `packed`.
///
/// # Safety
/// AVX-512 F must be available; `packed` is `b` packed.
pub unsafe fn matmul_packed(
    dst: ViewMut,
    a: View,
    (b, packed): (View, &PackedRight),
    accumulate: bool,
    scale: f32,
    threads: usize,
) {
    assert!(
        packed.fits(b.at.rows, b.at.cols),
        "packed right operand of another shape"
    );
    // SAFETY: forwarded from the caller.
    unsafe { product(dst, a, b, Some(&packed.data), accumulate, scale, threads) }
}

/// [`matmul`], with the right operand's whole packing given or made here when shared.
///
/// # Safety
/// As [`matmul_packed`].
unsafe fn product(
    dst: ViewMut,
    a: View,
    b: View,
    packed: Option<&[f32]>,
    accumulate: bool,
    scale: f32,
    threads: usize,
) {
    let (m, k, n) = (a.at.rows, a.at.cols, b.at.cols);
    let at = dst.at;
    assert!(k > 0, "empty sums are the caller's (matmul_kept)");
    let tasks = tasks(m, n, threads);
    // The operand that every task reads in full is packed once, in parallel, up front.
    let split_by_rows = tasks.len() > 1 && tasks[0].1.len() == n;
    let split_by_cols = tasks.len() > 1 && !split_by_rows;
    // SAFETY (both): AVX-512 F, the caller's promise.
    let packed_here = (packed.is_none() && split_by_rows).then(|| unsafe { pack_all_right(b) });
    let shared_b = packed.or(packed_here.as_deref());
    let shared_a = split_by_cols.then(|| unsafe { pack_all_left(a) });
    let out = dst.shared();
    let run = |(rows, cols): (Range<usize>, Range<usize>)| {
        // Nothing below spawns rayon work, so no other product can run on this thread
        // while it holds its packing buffers.
        PACKED.with_borrow_mut(|(pa, pb)| {
            let task = Task {
                a,
                b,
                at,
                accumulate,
                scale,
            };
            let left = shared_a.as_deref().map_or(Packed::Own(pa), Packed::Shared);
            let right = shared_b.map_or(Packed::Own(pb), Packed::Shared);
            // SAFETY: the caller's promise: the CPU has AVX-512 F. Tasks cover disjoint
            // rows x columns of dst, and read nothing of it that another task writes.
            unsafe { task.run(out, rows, cols, left, right) }
        });
    };
    if tasks.len() > 1 {
        tasks.into_par_iter().for_each(run);
    } else {
        tasks.into_iter().for_each(run);
    }
}

/// A packed operand: one that every task shares (packed whole, up front), or a task's own
/// buffer that it packs as it goes.
enum Packed<'a> {
    Shared(&'a [f32]),
    Own(&'a mut Vec<f32>),
}

/// Packs all of `a` as [`Task::run`] would for a task of every row.
///
/// # Safety
/// AVX-512 F must be available.
#[target_feature(enable = "avx512f")]
unsafe fn pack_all_left(a: View) -> Vec<f32> {
    let (m, k) = (a.at.rows, a.at.cols);
    let panels = m.div_ceil(MR);
    let mut out = vec![0f32; panels * MR * k];
    out.par_chunks_mut(panels * MR * KC)
        .enumerate()
        .for_each(|(block, out)| {
            let pc = block * KC;
            // SAFETY: AVX-512 F (the caller's promise).
            unsafe { pack_left(a, 0..m, pc..(pc + KC).min(k), out) };
        });
    out
}

/// Packs all of `b`, block by block, as [`Task::run`] would for a task of every column:
/// the block of columns from `jc` and values of K from `pc` starts at `jc * k + pc * width`,
/// `width` its columns rounded up to whole panels.
///
/// # Safety
/// AVX-512 F must be available.
#[target_feature(enable = "avx512f")]
unsafe fn pack_all_right(b: View) -> Vec<f32> {
    let (k, n) = (b.at.rows, b.at.cols);
    let blocks: Vec<(usize, usize)> = (0..n)
        .step_by(NC)
        .flat_map(|jc| (0..k).step_by(KC).map(move |pc| (jc, pc)))
        .collect();
    // Every block but the last is NC wide, a whole number of panels.
    let len = n.div_ceil(NR) * NR * k;
    let mut out = vec![0f32; len];
    let shared = SharedMut::new(&mut out);
    blocks.into_par_iter().for_each(|(jc, pc)| {
        let (nc, kc) = (NC.min(n - jc), KC.min(k - pc));
        let width = nc.div_ceil(NR) * NR;
        // SAFETY: each block writes only its own range of the buffer (the layout above).
        let block = unsafe { &mut shared.get()[jc * k + pc * width..][..kc * width] };
        // SAFETY: AVX-512 F (the caller's promise).
        unsafe { pack_right(b, pc..pc + kc, jc..jc + nc, block) };
    });
    out
}

/// Splits the output among `threads` along its longer side, so that what every task packs
/// in full (the right operand for a split by rows, the left one for a split by columns) is
/// the smaller operand. Batch-1 inference splits by columns: each task packs only its part
/// of the weights, which is what it reads from memory.
fn tasks(m: usize, n: usize, threads: usize) -> Vec<(Range<usize>, Range<usize>)> {
    let parts = 2 * threads;
    let (row_panels, col_panels) = (m.div_ceil(MR), n.div_ceil(NR));
    if threads <= 1 {
        vec![(0..m, 0..n)]
    } else if n >= m && col_panels >= parts {
        let cols = even_runs(col_panels, parts, NR, n);
        cols.map(|cols| (0..m, cols)).collect()
    } else {
        let count = row_panels.div_ceil(TASK_PANELS).max(parts);
        let count = count.next_multiple_of(threads).min(row_panels);
        let rows = even_runs(row_panels, count, MR, m);
        rows.map(|rows| (rows, 0..n)).collect()
    }
}

/// `0..len` cut into `count` runs of whole panels of `size` (the last one cut short at
/// `len`), as even as whole panels allow, so that each thread gets the same work: 1024
/// rows in tasks of 16 panels were 5 tasks of 192 rows and one of 64, so one of two
/// threads ran 576 rows while the other waited (1024 x 3072 x 768: 422 -> 480 GFLOP/s).
fn even_runs(
    panels: usize,
    count: usize,
    size: usize,
    len: usize,
) -> impl Iterator<Item = Range<usize>> {
    let edge = move |t: usize| (t * panels / count * size).min(len);
    (0..count).map(move |t| edge(t)..edge(t + 1))
}

/// One product's operands and how its result is stored.
struct Task<'a> {
    a: View<'a>,
    b: View<'a>,
    at: Layout2,
    accumulate: bool,
    scale: f32,
}

impl Task<'_> {
    /// Computes `rows x cols` of the output.
    ///
    /// # Safety
    /// AVX-512 F must be available.
    #[target_feature(enable = "avx512f")]
    unsafe fn run(
        &self,
        dst: SharedMut,
        rows: Range<usize>,
        cols: Range<usize>,
        left: Packed,
        mut right: Packed,
    ) {
        let k = self.a.at.cols;
        let panels = rows.len().div_ceil(MR);
        let pa: &[f32] = match left {
            Packed::Shared(pa) => pa,
            Packed::Own(pa) => {
                // Packed once, all of K: it is read once per right block.
                if pa.len() < panels * MR * k {
                    pa.resize(panels * MR * k, 0.0);
                }
                for pc in (0..k).step_by(KC) {
                    let block = &mut pa[pc * panels * MR..][..KC.min(k - pc) * panels * MR];
                    // SAFETY: AVX-512 F (the caller's promise).
                    unsafe {
                        pack_left(
                            self.a,
                            rows.clone(),
                            pc..pc + block.len() / (panels * MR),
                            block,
                        )
                    };
                }
                pa
            }
        };
        for (jc, nc) in col_blocks(cols.clone()) {
            let width = nc.div_ceil(NR) * NR;
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                let pb: &[f32] = match &mut right {
                    Packed::Shared(pb) => shared_panels(pb, (jc, width), (pc, kc), self.b),
                    Packed::Own(pb) => {
                        if pb.len() < kc * width {
                            pb.resize(kc * width, 0.0);
                        }
                        // SAFETY: AVX-512 F (the caller's promise).
                        unsafe {
                            pack_right(self.b, pc..pc + kc, jc..jc + nc, &mut pb[..kc * width])
                        };
                        pb
                    }
                };
                // Later blocks of K add to what the first stored.
                let add = self.accumulate || pc > 0;
                let left_block = &pa[pc * panels * MR..][..kc * panels * MR];
                // Each left micro-panel stays in L1 while the right block streams from L2.
                for (p, ir) in rows.clone().step_by(MR).enumerate() {
                    let left = &left_block[p * kc * MR..][..kc * MR];
                    let next = left_block.get((p + 1) * kc * MR..).unwrap_or(&[]);
                    let col_panels = nc.div_ceil(NR);
                    for (q, jr) in (jc..jc + nc).step_by(NR).enumerate() {
                        prefetch_part(next, kc * MR, q, col_panels);
                        let block = Block {
                            row: ir,
                            rows: MR.min(rows.end - ir),
                            col: jr,
                            cols: NR.min(jc + nc - jr),
                        };
                        let panel = &pb[q * kc * NR..][..kc * NR];
                        // SAFETY: AVX-512 F (the caller's promise); the panels hold kc
                        // values of K for these rows and columns.
                        unsafe { self.block(dst, block, kc, (left, panel), add) };
                    }
                }
            }
        }
    }

    /// Stores one microkernel block: straight into `dst` when its rows are contiguous,
    /// through a local buffer otherwise.
    ///
    /// # Safety
    /// AVX-512 F must be available; `a` and `b` hold `kc` values of K for the block.
    #[target_feature(enable = "avx512f")]
    unsafe fn block(
        &self,
        dst: SharedMut,
        blk: Block,
        kc: usize,
        (a, b): (&[f32], &[f32]),
        add: bool,
    ) {
        assert!(a.len() >= kc * MR && b.len() >= kc * NR);
        let at = self.at;
        let start = at.offset + blk.row * at.rs + blk.col * at.cs;
        let last = start + (blk.rows - 1) * at.rs + (blk.cols - 1) * at.cs;
        assert!(last < dst.len(), "block past the output");
        if at.cs == 1 {
            let c = Out {
                ptr: dst.ptr().wrapping_add(start),
                rs: at.rs,
                cols: blk.cols,
                add,
                scale: self.scale,
            };
            // SAFETY: every row the kernel stores (blk.cols values at rs apart) lies in dst.
            unsafe { kernel(blk.rows, kc, a.as_ptr(), b.as_ptr(), c) };
            return;
        }
        let mut sums = [0f32; MR * NR];
        let c = Out {
            ptr: sums.as_mut_ptr(),
            rs: NR,
            cols: blk.cols,
            add: false,
            scale: self.scale,
        };
        // SAFETY: the local buffer holds MR x NR values.
        unsafe { kernel(blk.rows, kc, a.as_ptr(), b.as_ptr(), c) };
        for (i, row) in sums.chunks_exact(NR).take(blk.rows).enumerate() {
            for (j, &s) in row[..blk.cols].iter().enumerate() {
                // SAFETY: inside the output (asserted above), and this task's alone; read
                // only when adding, after a first pass wrote it.
                unsafe {
                    let d = dst.ptr().add(start + i * at.rs + j * at.cs);
                    d.write(if add { d.read() + s } else { s });
                }
            }
        }
    }
}

/// The blocks of columns a task runs: `(first column, columns)`, split where the whole
/// packing's blocks of `NC` columns split (a task of a split by columns starts on a panel,
/// not always on a block), so a block's panels lie together in a shared packing.
fn col_blocks(cols: Range<usize>) -> impl Iterator<Item = (usize, usize)> {
    let mut jc = cols.start;
    std::iter::from_fn(move || {
        (jc < cols.end).then(|| {
            let end = ((jc / NC + 1) * NC).min(cols.end);
            let block = (jc, end - jc);
            jc = end;
            block
        })
    })
}

/// The panels of columns `jc..` (`width` of them, rounded to whole panels) and values of K
/// `pc..pc + kc` in a whole packing of `b` ([`pack_all_right`]'s layout).
fn shared_panels<'a>(
    packed: &'a [f32],
    (jc, width): (usize, usize),
    (pc, kc): (usize, usize),
    b: View,
) -> &'a [f32] {
    let (k, n) = (b.at.rows, b.at.cols);
    let block = jc / NC * NC;
    let block_width = NC.min(n - block).div_ceil(NR) * NR;
    debug_assert_eq!((jc - block) % NR, 0, "tasks start on a panel");
    &packed[block * k + pc * block_width + (jc - block) * kc..][..kc * width]
}

/// Fetches the `part`-th of `parts` of the first `len` values of `panel` into L2: the
/// next left micro-panel, a part before each block of the current one, so that it is in
/// L2 when its first block starts rather than read from memory then.
#[inline(always)]
fn prefetch_part(panel: &[f32], len: usize, part: usize, parts: usize) {
    let lines = len.min(panel.len()).div_ceil(16);
    let per = lines.div_ceil(parts);
    for line in (part * per..(part + 1) * per).take_while(|&l| l < lines) {
        // SAFETY: the address lies inside `panel`, and prefetching never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(panel.as_ptr().add(line * 16).cast()) };
    }
}

/// Where one microkernel block lies in the output.
#[derive(Clone, Copy)]
struct Block {
    row: usize,
    rows: usize,
    col: usize,
    cols: usize,
}

/// Where a block of sums goes: `cols` values per row, rows `rs` apart; `add` adds
/// `scale * sums` to what is there, otherwise overwrites it.
struct Out {
    ptr: *mut f32,
    rs: usize,
    cols: usize,
    add: bool,
    scale: f32,
}

/// Runs the microkernel for `rows` (1..=MR) rows.
///
/// # Safety
/// AVX-512 F; `a` holds `kc x MR` and `b` `kc x NR` packed values; `c` names `rows` rows of
/// `c.cols` writable values.
#[target_feature(enable = "avx512f")]
unsafe fn kernel(rows: usize, kc: usize, a: *const f32, b: *const f32, c: Out) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match rows {
            12 => micro::<12>(kc, a, b, c),
            11 => micro::<11>(kc, a, b, c),
            10 => micro::<10>(kc, a, b, c),
            9 => micro::<9>(kc, a, b, c),
            8 => micro::<8>(kc, a, b, c),
            7 => micro::<7>(kc, a, b, c),
            6 => micro::<6>(kc, a, b, c),
            5 => micro::<5>(kc, a, b, c),
            4 => micro::<4>(kc, a, b, c),
            3 => micro::<3>(kc, a, b, c),
            2 => micro::<2>(kc, a, b, c),
            1 => micro::<1>(kc, a, b, c),
            _ => unreachable!("a block has 1 to {MR} rows"),
        }
    }
}

/// `R x NR` sums over `kc` values of K, stored through masks for a partial last panel.
///
/// # Safety
/// As [`kernel`].
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn micro<const R: usize>(kc: usize, a: *const f32, b: *const f32, c: Out) {
    // The sums are added to or stored over C at the end: fetch its lines into L2 now, and
    // into L1 only near the end (the right panel streaming through L1 would evict them).
    prefetch_rows::<R, _MM_HINT_T1>(&c);
    let late = kc.saturating_sub(LATE_STEPS);
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    // SAFETY: p < kc, so every load lies inside the packed panels (the caller's promise).
    unsafe {
        for p in 0..kc {
            if p == late {
                prefetch_rows::<R, _MM_HINT_T0>(&c);
            }
            // The right panel streams from L2: ask for its lines a few steps ahead.
            let ahead = b.wrapping_add((p + PREFETCH_STEPS) * NR).cast();
            _mm_prefetch::<_MM_HINT_T0>(ahead);
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
            let b0 = _mm512_loadu_ps(b.add(p * NR));
            let b1 = _mm512_loadu_ps(b.add(p * NR + 16));
            let a = a.add(p * MR);
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*a.add(r));
                acc[0] = _mm512_fmadd_ps(x, b0, acc[0]);
                acc[1] = _mm512_fmadd_ps(x, b1, acc[1]);
            }
        }
    }
    let masks = [lanes(c.cols), lanes(c.cols.saturating_sub(16))];
    let scale = _mm512_set1_ps(c.scale);
    for (r, acc) in acc.iter().enumerate() {
        for (h, (&sums, &mask)) in acc.iter().zip(&masks).enumerate() {
            if mask == 0 {
                continue;
            }
            let at = c.ptr.wrapping_add(r * c.rs + h * 16);
            // SAFETY: the mask covers only the row's `cols` values, which the caller
            // promises are writable; masked-off lanes are not touched.
            unsafe {
                let mut v = _mm512_mul_ps(sums, scale);
                if c.add {
                    v = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, at), v);
                }
                _mm512_mask_storeu_ps(at, mask, v);
            }
        }
    }
}

/// Prefetches the `R` rows of the block of C that `c` names.
#[inline(always)]
fn prefetch_rows<const R: usize, const HINT: i32>(c: &Out) {
    for r in 0..R {
        let row = c.ptr.wrapping_add(r * c.rs);
        // SAFETY: prefetching never faults, whatever the address.
        unsafe {
            _mm_prefetch::<HINT>(row.cast());
            _mm_prefetch::<HINT>(row.wrapping_add(c.cols - 1).cast());
        }
    }
}

/// The mask of the first `n` of 16 lanes.
fn lanes(n: usize) -> __mmask16 {
    if n >= 16 { u16::MAX } else { (1u16 << n) - 1 }
}

/// Packs rows `rows`, values `ks` of K, of `a` into micro-panels of MR rows, K-major:
/// micro-panel `p` holds `(i, t)` at `p * kc * MR + (t - ks.start) * MR + (i - rows.start -
/// p * MR)`. Rows past the last one are left as they are: the microkernel for fewer rows
/// never reads them.
///
/// # Safety
/// AVX-512 F must be available.
#[target_feature(enable = "avx512f")]
unsafe fn pack_left(a: View, rows: Range<usize>, ks: Range<usize>, out: &mut [f32]) {
    let kc = ks.len();
    let panels = rows.len().div_ceil(MR);
    let at = a.at;
    for p in 0..panels {
        let i0 = rows.start + p * MR;
        let mr = MR.min(rows.end - i0);
        let panel = &mut out[p * kc * MR..][..kc * MR];
        if at.rs == 1 {
            // A transposed operand: the rows of one K value are contiguous.
            for (q, t) in ks.clone().enumerate() {
                let src = &a.data[at.offset + i0 + t * at.cs..][..mr];
                // SAFETY: AVX-512 F (the caller's promise).
                unsafe { copy_short(src, &mut panel[q * MR..q * MR + mr]) };
            }
            continue;
        }
        let full = if at.cs == 1 && mr == MR {
            // SAFETY: AVX-512 F (the caller's promise).
            unsafe { interleave_rows(a, i0, ks.clone(), panel) }
        } else {
            0
        };
        for r in 0..mr {
            let row = at.offset + (i0 + r) * at.rs;
            for (q, t) in ks.clone().enumerate().skip(full) {
                panel[q * MR + r] = a.data[row + t * at.cs];
            }
        }
    }
}

/// Packs MR row-major rows from `i0`, values `ks` of K, as one K-major micro-panel, 16
/// values of K at a time through [`transpose16`]; returns how many values of K it packed
/// (the tail of fewer than 16 is left to the caller).
///
/// # Safety
/// AVX-512 F must be available.
#[target_feature(enable = "avx512f")]
unsafe fn interleave_rows(a: View, i0: usize, ks: Range<usize>, panel: &mut [f32]) -> usize {
    let at = a.at;
    let full = ks.len() / 16 * 16;
    let row = |r: usize| at.offset + (i0 + r) * at.rs + ks.start;
    assert!(row(MR - 1) + full <= a.data.len() && panel.len() >= ks.len() * MR);
    // The first MR of each transposed row are one K value's MR rows.
    let keep: __mmask16 = (1 << MR) - 1;
    for p in (0..full).step_by(16) {
        let mut r = [_mm512_setzero_ps(); 16];
        for (i, r) in r.iter_mut().take(MR).enumerate() {
            // SAFETY: 16 values of row i inside the slice (asserted above).
            *r = unsafe { _mm512_loadu_ps(a.data.as_ptr().add(row(i) + p)) };
        }
        transpose16(&mut r);
        for (q, r) in r.iter().enumerate() {
            // SAFETY: MR values at K index p + q of the panel, inside it (asserted above).
            unsafe { _mm512_mask_storeu_ps(panel.as_mut_ptr().add((p + q) * MR), keep, *r) };
        }
    }
    full
}

/// Packs values `ks` of K, columns `cols` of `b` into panels of NR columns: panel `q` holds
/// `(t, j)` at `q * kc * NR + (t - ks.start) * NR + (j - cols.start - q * NR)`, and zeros for
/// the columns past the last one.
///
/// # Safety
/// AVX-512 F must be available.
#[target_feature(enable = "avx512f")]
unsafe fn pack_right(b: View, ks: Range<usize>, cols: Range<usize>, out: &mut [f32]) {
    let kc = ks.len();
    let panels = cols.len().div_ceil(NR);
    assert!(out.len() >= panels * kc * NR);
    let at = b.at;
    for q in 0..panels {
        let j0 = cols.start + q * NR;
        let nr = NR.min(cols.end - j0);
        let panel = &mut out[q * kc * NR..][..kc * NR];
        if at.cs == 1 {
            for (p, t) in ks.clone().enumerate() {
                let src = &b.data[at.offset + t * at.rs + j0..][..nr];
                let dst = &mut panel[p * NR..(p + 1) * NR];
                dst[nr..].fill(0.0);
                // SAFETY: AVX-512 F (the caller's promise).
                unsafe { copy_short(src, &mut dst[..nr]) };
            }
        } else if at.rs == 1 && nr == NR {
            // SAFETY: AVX-512 F (the caller's promise).
            unsafe { transpose_panel(b, ks.clone(), j0, panel) };
        } else {
            for (p, t) in ks.clone().enumerate() {
                let dst = &mut panel[p * NR..(p + 1) * NR];
                for (c, d) in dst.iter_mut().enumerate() {
                    *d = if c < nr {
                        b.data[at.offset + t * at.rs + (j0 + c) * at.cs]
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

/// `dst.copy_from_slice(src)` for the at most 32 values of a panel row, in two masked
/// moves: a call to `memcpy` per row cost more than the copy.
///
/// # Safety
/// AVX-512 F must be available.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn copy_short(src: &[f32], dst: &mut [f32]) {
    let n = src.len();
    assert!(n <= NR && dst.len() == n);
    for h in (0..n).step_by(16) {
        let mask = lanes(n - h);
        // SAFETY: the mask covers only the values from h to n, inside both slices.
        unsafe {
            let v = _mm512_maskz_loadu_ps(mask, src.as_ptr().add(h));
            _mm512_mask_storeu_ps(dst.as_mut_ptr().add(h), mask, v);
        }
    }
}

/// Packs a full panel of a right operand whose columns are contiguous in K (`rs == 1`):
/// 16 x 16 blocks are loaded as 16 columns, transposed in registers and stored as 16 rows;
/// a K tail of fewer than 16 is copied value by value.
///
/// # Safety
/// AVX-512 F must be available.
#[target_feature(enable = "avx512f")]
unsafe fn transpose_panel(b: View, ks: Range<usize>, j0: usize, panel: &mut [f32]) {
    let at = b.at;
    let kc = ks.len();
    let column = |j: usize| at.offset + j * at.cs;
    // Bounds: the last value read is column j0 + NR - 1 at K index ks.end - 1.
    assert!(column(j0 + NR - 1) + ks.end <= b.data.len() && panel.len() >= kc * NR);
    let full = kc / 16 * 16;
    for half in 0..2 {
        for p in (0..full).step_by(16) {
            let mut r = [_mm512_setzero_ps(); 16];
            for (c, r) in r.iter_mut().enumerate() {
                let src = column(j0 + half * 16 + c) + ks.start + p;
                // SAFETY: 16 values of one column, inside the slice (asserted above).
                *r = unsafe { _mm512_loadu_ps(b.data.as_ptr().add(src)) };
            }
            transpose16(&mut r);
            for (t, r) in r.iter().enumerate() {
                let dst = (p + t) * NR + half * 16;
                // SAFETY: 16 values of row p + t of the panel, inside it (asserted above).
                unsafe { _mm512_storeu_ps(panel.as_mut_ptr().add(dst), *r) };
            }
        }
    }
    for p in full..kc {
        for c in 0..NR {
            panel[p * NR + c] = b.data[column(j0 + c) + ks.start + p];
        }
    }
}

/// Transposes the 16 x 16 matrix whose rows are `r`.
#[target_feature(enable = "avx512f")]
fn transpose16(r: &mut [__m512; 16]) {
    // Interleave pairs of rows in 32-bit, then 64-bit units, then move 128-bit lanes.
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    let pd = _mm512_castps_pd;
    let ps = _mm512_castpd_ps;
    for i in 0..4 {
        let (x0, x1, y0, y1) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
        r[4 * i] = ps(_mm512_unpacklo_pd(pd(x0), pd(y0)));
        r[4 * i + 1] = ps(_mm512_unpackhi_pd(pd(x0), pd(y0)));
        r[4 * i + 2] = ps(_mm512_unpacklo_pd(pd(x1), pd(y1)));
        r[4 * i + 3] = ps(_mm512_unpackhi_pd(pd(x1), pd(y1)));
    }
    // Now r[4g + q] holds, in each 128-bit lane l, column 4l + q of rows 4g..4g + 4.
    for g in 0..2 {
        for q in 0..4 {
            let (x, y) = (r[8 * g + q], r[8 * g + 4 + q]);
            t[8 * g + q] = _mm512_shuffle_f32x4::<0x88>(x, y);
            t[8 * g + 4 + q] = _mm512_shuffle_f32x4::<0xdd>(x, y);
        }
    }
    for q in 0..4 {
        for h in 0..2 {
            let (x, y) = (t[4 * h + q], t[8 + 4 * h + q]);
            r[4 * h + q] = _mm512_shuffle_f32x4::<0x88>(x, y);
            r[8 + 4 * h + q] = _mm512_shuffle_f32x4::<0xdd>(x, y);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::test_view;

    fn skip() -> bool {
        if !crate::features::cpu().avx512f {
            eprintln!("no AVX-512 F on this CPU: the AVX-512 f32 products cannot run here");
            return true;
        }
        false
    }

    #[test]
    fn transpose16_transposes() {
        if skip() {
            return;
        }
        let m: Vec<f32> = (0..256).map(|i| i as f32).collect();
        // SAFETY: AVX-512 F is available; each load reads 16 of the 256 values.
        let r = unsafe {
            let mut r = [_mm512_setzero_ps(); 16];
            for (i, r) in r.iter_mut().enumerate() {
                *r = _mm512_loadu_ps(m.as_ptr().add(16 * i));
            }
            transpose16(&mut r);
            r
        };
        let mut out = vec![0f32; 256];
        for (i, r) in r.iter().enumerate() {
            // SAFETY: each store writes 16 of the 256 values.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(16 * i), *r) };
        }
        for i in 0..16 {
            for j in 0..16 {
                assert_eq!(out[i * 16 + j], m[j * 16 + i], "({i}, {j})");
            }
        }
    }

    /// A right operand packed once gives the very sums of one packed per product: splits by
    /// rows, by columns (tasks starting inside a block of `NC` columns), one thread.
    #[test]
    fn kept_packing_gives_the_same_sums() {
        if skip() {
            return;
        }
        let value = |i: usize, seed: f32| (i as f32 * 0.61 + seed).cos();
        for (m, n, k, threads) in [(20, 1100, 40, 2), (800, 40, 500, 2), (13, 33, 17, 1)] {
            let a: Vec<f32> = (0..m * k).map(|i| value(i, 1.0)).collect();
            let w: Vec<f32> = (0..n * k).map(|i| value(i, 2.0)).collect();
            let (av, bv) = (View::rows(&a, m, k), View::rows(&w, n, k).t());
            let (mut plain, mut kept) = (vec![0f32; m * n], vec![0f32; m * n]);
            // SAFETY: AVX-512 F is available (checked above); bv is what was packed.
            unsafe {
                matmul(ViewMut::rows(&mut plain, m, n), av, bv, false, 1.0, threads);
                let packed = PackedRight::new(bv);
                let out = ViewMut::rows(&mut kept, m, n);
                matmul_packed(out, av, (bv, &packed), false, 1.0, threads);
            }
            assert_eq!(plain, kept, "{m}x{n}x{k} on {threads} threads");
        }
    }

    /// Every operand layout, partial blocks in every dimension, several blocks of K and of
    /// columns, the parallel split both ways, accumulation and scale, and a strided output:
    /// within rounding of the naive sum in f64.
    #[test]
    fn products_match_naive_sums() {
        if skip() {
            return;
        }
        let value = |i: usize, seed: f32| (i as f32 * 0.37 + seed).sin();
        let shapes = [
            (1, 1, 1, 1),
            (5, 7, 3, 1),
            (13, 33, 17, 1),
            (32, 64, 300, 2),
            (40, 600, 520, 2),
            (300, 40, 70, 2),
            (20, 1100, 40, 1),
            (800, 40, 30, 2),
        ];
        for (m, n, k, threads) in shapes {
            for (la, lb, accumulate, strided_out) in [
                (0, 1, true, false),
                (0, 0, false, false),
                (1, 0, false, true),
                (2, 2, true, true),
                (1, 1, false, false),
            ] {
                let a: Vec<f32> = (0..2 * m * k + 1).map(|i| value(i, 1.0)).collect();
                let b: Vec<f32> = (0..2 * k * n + 1).map(|i| value(i, 2.0)).collect();
                let (av, bv) = (test_view(&a, m, k, la), test_view(&b, k, n, lb));
                let (rs, cs) = if strided_out { (1, m + 1) } else { (n + 2, 1) };
                let out_at = Layout2 {
                    offset: 1,
                    rows: m,
                    cols: n,
                    rs,
                    cs,
                };
                let len = 1 + (m - 1) * rs + (n - 1) * cs + 3;
                let start: Vec<f32> = (0..len).map(|i| value(i, 3.0)).collect();
                let mut got = start.clone();
                // SAFETY: AVX-512 F is available (checked above).
                unsafe {
                    matmul(
                        ViewMut::new(&mut got, out_at),
                        av,
                        bv,
                        accumulate,
                        0.5,
                        threads,
                    )
                };
                let mut want = start.clone();
                for i in 0..m {
                    for j in 0..n {
                        let dot: f64 = (0..k)
                            .map(|t| {
                                let x = av.data[av.at.offset + i * av.at.rs + t * av.at.cs];
                                let y = bv.data[bv.at.offset + t * bv.at.rs + j * bv.at.cs];
                                f64::from(x) * f64::from(y)
                            })
                            .sum();
                        let at = 1 + i * rs + j * cs;
                        let base = if accumulate {
                            f64::from(start[at])
                        } else {
                            0.0
                        };
                        want[at] = (base + 0.5 * dot) as f32;
                    }
                }
                let tol = 1e-5 * (k as f32).sqrt() + 1e-6;
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= tol,
                        "{m}x{n}x{k} layouts {la}/{lb} acc {accumulate} [{i}]: {g} vs {w}"
                    );
                }
            }
        }
    }

    /// Tasks cover the output once, start on panels, and give each of the threads the same
    /// number of panels give or take one per task.
    #[test]
    fn tasks_cover_the_output_evenly() {
        for (m, n, threads) in [(1024, 768, 2), (1024, 2304, 2), (4096, 768, 4), (100, 7, 2)] {
            let tasks = tasks(m, n, threads);
            let mut cells = vec![0u8; m * n];
            for (rows, cols) in &tasks {
                assert!(
                    rows.start % MR == 0 && cols.start % NR == 0,
                    "{rows:?} {cols:?}"
                );
                for i in rows.clone() {
                    cols.clone().for_each(|j| cells[i * n + j] += 1);
                }
            }
            assert!(
                cells.iter().all(|&c| c == 1),
                "{m}x{n} on {threads}: {tasks:?}"
            );
            let size = |(r, c): &(Range<usize>, Range<usize>)| r.len() * c.len();
            let per_thread = tasks.len().div_ceil(threads);
            let loads: Vec<usize> = tasks
                .chunks(per_thread)
                .map(|t| t.iter().map(size).sum())
                .collect();
            let (least, most) = (loads.iter().min(), loads.iter().max());
            // One panel a task: a row of micro-panels, or a column of them.
            let panel = if tasks[0].1.len() == n {
                MR * n
            } else {
                NR * m
            };
            let slack = per_thread * panel;
            assert!(
                most.unwrap() - least.unwrap() <= slack,
                "{m}x{n}: {loads:?}"
            );
        }
    }
}
