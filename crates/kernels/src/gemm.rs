//! A checked, strided f32 matrix product over slices, for kernels that need products on
//! sub-matrices without copies: on our AVX-512 kernel where 512-bit FMAs run at full width,
//! on the `gemm` crate (what candle's CPU matmul runs on) elsewhere; or, where the process
//! asks for bf16 products, with bf16 operands and f32 sums on AMX tiles or AVX-512 BF16.

use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use gemm::Parallelism;

use super::features;
use crate::fused::SharedMut;

/// How f32 matrix products are computed, for the whole process, as PyTorch's
/// `torch.set_float32_matmul_precision`: a choice a binary makes once, at start-up.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "lowercase")]
#[strum(
    ascii_case_insensitive,
    parse_err_ty = String,
    parse_err_fn = unknown_matmul_precision
)]
pub enum MatmulPrecision {
    /// f32 operands and sums: the reference, and the default.
    #[default]
    #[strum(to_string = "f32", serialize = "fp32", serialize = "float32")]
    F32,
    /// Operands rounded to bf16, sums in f32, on AMX tiles or AVX-512 BF16 (8 bits of
    /// mantissa: PyTorch's bf16 autocast for products). Where the CPU has neither, products
    /// stay f32.
    #[strum(to_string = "bf16", serialize = "bfloat16")]
    Bf16,
}

impl MatmulPrecision {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

fn unknown_matmul_precision(s: &str) -> String {
    format!("unknown matmul precision `{s}`: f32 or bf16")
}

static BF16_PRODUCTS: AtomicBool = AtomicBool::new(false);

/// Sets how every later product in this process is computed; returns the precision that
/// products will really use on this CPU.
pub fn set_matmul_precision(precision: MatmulPrecision) -> MatmulPrecision {
    let bf16 = precision == MatmulPrecision::Bf16 && bf16_supported();
    BF16_PRODUCTS.store(bf16, Ordering::Relaxed);
    matmul_precision()
}

/// The precision products use now.
pub fn matmul_precision() -> MatmulPrecision {
    if BF16_PRODUCTS.load(Ordering::Relaxed) {
        MatmulPrecision::Bf16
    } else {
        MatmulPrecision::F32
    }
}

/// Why bf16 products run in f32 on this CPU, if they do.
pub fn bf16_fallback_reason() -> Option<&'static str> {
    if bf16_supported() {
        None
    } else if features::cpu().avx512_bf16 {
        Some(
            "this CPU has no AMX, and its AVX-512 BF16 products are slower than f32 ones on its 512-bit FMAs",
        )
    } else {
        Some("this CPU has neither AMX nor AVX-512 BF16")
    }
}

/// Whether this CPU computes bf16 products faster than f32 ones (AMX bf16, or AVX-512 BF16
/// where its rate beats the f32 kernel's).
pub fn bf16_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    return bf16::Kernel::best().is_some();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// What computes f32 products, chosen once per process from the CPU, or from
/// `SENTIMENT_F32_KERNEL` (`gemm` or `avx512`) to compare them on one machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
pub enum F32Kernel {
    /// The `gemm` crate's kernels (AVX2 and FMA on x86-64, NEON on aarch64).
    Gemm,
    /// Our 512-bit FMA kernel: the default where 512-bit FMAs run at full width (Intel's
    /// AVX-512 CPUs, AMD's Zen 5; see [`features::Cpu::wide_fma`]). AMD's Zen 4 splits each
    /// in two, so the `gemm` crate's AVX2 kernels already reach the same rate there and stay
    /// its default.
    Avx512,
}

/// The environment variable that overrides [`F32Kernel::current`].
pub const F32_KERNEL_ENV: &str = "SENTIMENT_F32_KERNEL";
/// The environment variable that makes bf16 products skip AMX tiles for AVX-512 BF16
/// (`avx512`), to measure on an AMX machine what a CPU without tiles gets.
pub const BF16_KERNEL_ENV: &str = "SENTIMENT_BF16_KERNEL";

impl F32Kernel {
    /// The kernel this process uses.
    pub fn current() -> F32Kernel {
        static CHOSEN: OnceLock<F32Kernel> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let asked = std::env::var(F32_KERNEL_ENV).ok();
            let chosen = F32Kernel::choose(asked.as_deref());
            // Once per process: which kernel ran is the first question about a speed figure.
            let why = match (chosen, features::cpu().wide_fma) {
                (F32Kernel::Avx512, true) => "this CPU's 512-bit FMAs run at full width",
                (F32Kernel::Gemm, _) if !features::cpu().avx512f => "no AVX-512 F here",
                (F32Kernel::Gemm, false) => "this CPU splits 512-bit FMAs in two",
                _ => F32_KERNEL_ENV,
            };
            tracing::info!("f32 products on the {chosen} kernel ({why})");
            chosen
        })
    }

    fn choose(asked: Option<&str>) -> F32Kernel {
        let avx512 = features::cpu().avx512f;
        match asked.map(str::parse::<F32Kernel>) {
            Some(Ok(F32Kernel::Avx512)) if avx512 => F32Kernel::Avx512,
            Some(Ok(F32Kernel::Avx512)) => {
                tracing::warn!("{F32_KERNEL_ENV}=avx512 but this CPU has no AVX-512 F: gemm runs");
                F32Kernel::Gemm
            }
            Some(Ok(kernel)) => kernel,
            Some(Err(_)) => {
                let asked = asked.unwrap_or_default();
                tracing::warn!("{F32_KERNEL_ENV}=`{asked}` is neither gemm nor avx512: ignored");
                F32Kernel::choose(None)
            }
            None if features::cpu().wide_fma => F32Kernel::Avx512,
            None => F32Kernel::Gemm,
        }
    }
}

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

/// A writable strided matrix inside a buffer, whose values may be uninitialised
/// ([`ViewMut::uninit`]): products write through its pointer, never through a slice.
#[derive(Debug)]
pub struct ViewMut<'a> {
    ptr: *mut f32,
    len: usize,
    /// Whether the buffer's values are initialised, so that a product may add to them.
    init: bool,
    pub at: Layout2,
    _buffer: PhantomData<&'a mut [f32]>,
}

impl<'a> ViewMut<'a> {
    pub fn new(data: &'a mut [f32], at: Layout2) -> Self {
        Self {
            ptr: data.as_mut_ptr(),
            len: data.len(),
            init: true,
            at,
            _buffer: PhantomData,
        }
    }

    /// The dense row-major `rows x cols` matrix at the start of `data`.
    pub fn rows(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, Layout2::strided_rows(0, rows, cols, cols))
    }

    /// A view of uninitialised values, for a product that does not accumulate: it writes
    /// every value of the view and reads none.
    pub fn uninit(data: &'a mut [MaybeUninit<f32>], at: Layout2) -> Self {
        Self {
            ptr: data.as_mut_ptr().cast(),
            len: data.len(),
            init: false,
            at,
            _buffer: PhantomData,
        }
    }

    /// A view into `buffer`, whose values may be uninitialised, for one of the parallel
    /// tasks that write it.
    ///
    /// # Safety
    /// No other task reads or writes this view's values while it lives.
    pub(crate) unsafe fn of_shared(buffer: &'a SharedMut, at: Layout2) -> Self {
        Self {
            ptr: buffer.ptr(),
            len: buffer.len(),
            init: false,
            at,
            _buffer: PhantomData,
        }
    }

    /// The buffer, for tasks that write disjoint parts of it through its pointer.
    pub(crate) fn shared(&self) -> SharedMut {
        SharedMut::from_raw(self.ptr, self.len)
    }
}

/// `scale * a @ b` into a new row-major `m x n` buffer, which the product writes without
/// zeroing it first: zeroing the fresh outputs of a training step's products, and of its
/// other kernels, took 3-6% of the step.
pub fn product(a: View, b: View, scale: f32, threads: usize) -> Vec<f32> {
    let (m, n) = (a.at.rows, b.at.cols);
    let mut out = Vec::with_capacity(m * n);
    let at = Layout2::strided_rows(0, m, n, n);
    let dst = ViewMut::uninit(&mut out.spare_capacity_mut()[..m * n], at);
    matmul(dst, a, b, false, scale, threads);
    // SAFETY: a product that does not accumulate writes every value of its output
    // (`matmul_kept`), here all m * n of them.
    unsafe { out.set_len(m * n) };
    out
}

/// Products at least this large (m * n * k) are split over the thread pool.
const PARALLEL_MIN_WORK: usize = 1 << 20;
/// Smaller products stay f32 even in bf16 mode: packing would cost more than it saves.
const BF16_MIN_WORK: usize = 1 << 15;
/// Products of fewer rows stay on the `gemm` crate: packing the right operand would cost
/// as much as multiplying it.
const AVX512_MIN_ROWS: usize = 4;

/// `dst = (accumulate ? dst : 0) + scale * a @ b`.
///
/// `threads` caps the parallelism: 1 inside an already parallel loop, otherwise the pool.
///
/// # Panics
/// If the shapes do not chain or a view overruns its slice.
pub fn matmul(dst: ViewMut, a: View, b: View, accumulate: bool, scale: f32, threads: usize) {
    matmul_kept(dst, a, (b, None), accumulate, scale, threads);
}

/// The packed copy of a right operand that never changes (a served model's weights), made
/// by the first product that packs it and kept for every later one: on the AVX-512 f32
/// kernel, re-packing the weights was 5% of a batch-32 pass. It costs a second copy of
/// the weights (about 170 MB for DistilBERT-base), so it is made only where it is used;
/// elsewhere (bf16 products, the `gemm` crate, another CPU) it stays empty.
#[derive(Debug, Clone, Default)]
pub struct KeptPacking {
    #[cfg(target_arch = "x86_64")]
    packed: std::sync::Arc<OnceLock<super::avx512_f32::PackedRight>>,
}

impl KeptPacking {
    /// Whether a product has packed into this yet.
    pub fn is_packed(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        return self.packed.get().is_some();
        #[cfg(not(target_arch = "x86_64"))]
        false
    }
}

/// [`matmul`], reusing (or making) `kept`, the packing of `b`, where the kernel packs `b`
/// whole. `kept` must only ever be passed with the same `b`, whose values never change.
pub fn matmul_kept(
    dst: ViewMut,
    a: View,
    (b, kept): (View, Option<&KeptPacking>),
    accumulate: bool,
    scale: f32,
    threads: usize,
) {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = kept;
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
    dst.at.check(dst.len, "dst");
    assert!(
        dst.init || !accumulate,
        "matmul: cannot add to uninitialised values"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // An empty sum: the output is zero, or stays as it is. Every kernel below writes
        // every value of the output when it does not accumulate.
        if !accumulate {
            fill_zero(&dst);
        }
        return;
    }
    // Small products run on the calling thread, whichever kernel computes them.
    let threads = if m * n * k >= PARALLEL_MIN_WORK {
        threads
    } else {
        1
    };
    #[cfg(target_arch = "x86_64")]
    if BF16_PRODUCTS.load(Ordering::Relaxed) && m * n * k >= BF16_MIN_WORK {
        let kernel =
            bf16::Kernel::best().expect("bf16 products are switched on only where supported");
        // SAFETY: `best` returns only kernels this CPU runs.
        unsafe { bf16::matmul(kernel, dst, a, b, accumulate, scale, threads) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if m >= AVX512_MIN_ROWS && F32Kernel::current() == F32Kernel::Avx512 {
        use super::avx512_f32::{PackedRight, matmul as avx512, matmul_packed};
        // SAFETY (all three): `current` picks Avx512 only where the CPU has AVX-512 F.
        match kept {
            Some(kept) => {
                let packed = kept.packed.get_or_init(|| unsafe { PackedRight::new(b) });
                unsafe { matmul_packed(dst, a, (b, packed), accumulate, scale, threads) };
            }
            None => unsafe { avx512(dst, a, b, accumulate, scale, threads) },
        }
        return;
    }
    gemm_crate(dst, a, b, accumulate, scale, threads);
}

/// Writes 0 to every value of `dst`.
fn fill_zero(dst: &ViewMut) {
    let at = dst.at;
    for i in 0..at.rows {
        for j in 0..at.cols {
            // SAFETY: the view's values lie inside its buffer (`check`ed by the caller), and
            // nothing else refers to them while `dst` is borrowed.
            unsafe { dst.ptr.add(at.offset + i * at.rs + j * at.cs).write(0.0) };
        }
    }
}

/// The product on the `gemm` crate, for [`matmul_kept`], which has checked the views.
fn gemm_crate(dst: ViewMut, a: View, b: View, accumulate: bool, scale: f32, threads: usize) {
    let (m, k, n) = (a.at.rows, a.at.cols, b.at.cols);
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    let (a_at, b_at, d_at) = (a.at, b.at, dst.at);
    // SAFETY: every element the product reads or writes lies inside the slices (checked by
    // `matmul_kept`); `dst` is borrowed mutably, so nothing else aliases it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.ptr.add(d_at.offset),
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

/// A `rows x cols` view of `data` for kernel tests, laid out as `layout` says: 0 row-major,
/// 1 the transpose of a row-major matrix, 2 strided both ways from offset 1 (every other
/// value of every other row), which only the general packing paths take.
#[cfg(test)]
pub(crate) fn test_view(data: &[f32], rows: usize, cols: usize, layout: usize) -> View<'_> {
    match layout {
        0 => View::rows(data, rows, cols),
        1 => View::rows(data, cols, rows).t(),
        _ => View::new(
            data,
            Layout2 {
                offset: 1,
                rows,
                cols,
                rs: 2 * cols,
                cs: 2,
            },
        ),
    }
}

#[cfg(target_arch = "x86_64")]
mod bf16 {
    use std::cell::RefCell;
    use std::sync::OnceLock;

    use rayon::prelude::*;

    use super::SharedMut;
    use super::{BF16_KERNEL_ENV, PARALLEL_MIN_WORK, View, ViewMut};
    use crate::amx::{self, BLOCK, Rows, Side, TILE_PAIRS, Tiles};
    use crate::{avx512_bf16, features};

    /// What computes a block of bf16 products; both read the same packed operands.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Kernel {
        /// `tdpbf16ps` on AMX tiles (Intel Sapphire Rapids and later).
        Amx,
        /// `vdpbf16ps` on AVX-512 registers (AMD Zen 4 and later, Intel Cooper Lake).
        Avx512,
    }

    impl Kernel {
        /// The kernel bf16 products run on here, if any: AMX tiles where the CPU has them;
        /// AVX-512 BF16 where it beats f32 products ([`features::Cpu::bf16_dot_beats_fma`]).
        /// On Intel without AMX, bf16 training took 1.55x as long as f32 training, ours and
        /// PyTorch's alike, so products stay f32 there. `SENTIMENT_BF16_KERNEL=avx512`
        /// passes over AMX and that check, to measure what such a CPU would get.
        pub fn best() -> Option<Kernel> {
            static CHOSEN: OnceLock<Option<Kernel>> = OnceLock::new();
            *CHOSEN.get_or_init(|| {
                let asked = std::env::var(BF16_KERNEL_ENV).ok();
                let forced = asked.as_deref() == Some("avx512");
                if amx::available(amx::Feature::Bf16) && !forced {
                    Some(Kernel::Amx)
                } else if avx512_bf16::available() && (forced || features::cpu().bf16_dot_beats_fma)
                {
                    Some(Kernel::Avx512)
                } else {
                    None
                }
            })
        }

        /// Every kernel this CPU runs (for tests).
        #[cfg(test)]
        pub fn all() -> Vec<Kernel> {
            let amx = amx::available(amx::Feature::Bf16).then_some(Kernel::Amx);
            let avx512 = avx512_bf16::available().then_some(Kernel::Avx512);
            amx.into_iter().chain(avx512).collect()
        }
    }

    /// Blocks of rows and of columns per parallel task: 128 x 64 outputs, whose operands
    /// stay in L2 for any K of the models here.
    const TASK_ROW_BLOCKS: usize = 4;
    const TASK_COL_BLOCKS: usize = 2;

    thread_local! {
        /// Packed operands of single-threaded products, reused call after call.
        static SCRATCH: RefCell<(Vec<u32>, Vec<u32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    }

    /// [`super::matmul`] with bf16 operands, on `kernel`. Shapes are checked by the caller.
    ///
    /// # Safety
    /// The CPU must run `kernel`.
    pub(super) unsafe fn matmul(
        kernel: Kernel,
        dst: ViewMut,
        a: View,
        b: View,
        accumulate: bool,
        scale: f32,
        threads: usize,
    ) {
        let (m, k, n) = (a.at.rows, a.at.cols, b.at.cols);
        let parallel = threads > 1 && m * n * k >= PARALLEL_MIN_WORK;
        let k_tiles = k.div_ceil(32);
        fn rows(v: View<'_>, transpose: bool) -> Rows<'_> {
            let at = if transpose { v.t().at } else { v.at };
            Rows {
                data: v.data,
                offset: at.offset,
                rows: at.rows,
                k: at.cols,
                rs: at.rs,
                ts: at.cs,
            }
        }
        let run = |packed_a: &mut Vec<u32>, packed_b: &mut Vec<u32>| {
            amx::pack_bf16(rows(a, false), Side::Left, k_tiles, parallel, packed_a);
            // The right operand's columns are the rows of its transpose.
            amx::pack_bf16(rows(b, true), Side::Right, k_tiles, parallel, packed_b);
            let shape = (m, n, k_tiles);
            // SAFETY: forwarded from the caller; the operands are packed for these shapes.
            unsafe {
                products(
                    kernel,
                    dst,
                    (packed_a, packed_b),
                    shape,
                    (accumulate, scale),
                    parallel,
                )
            };
        };
        if parallel {
            run(&mut Vec::new(), &mut Vec::new());
        } else {
            // Nothing below reenters this thread's scratch: the sequential path spawns no
            // rayon work that could run another product here.
            SCRATCH.with_borrow_mut(|(pa, pb)| run(pa, pb));
        }
    }

    /// # Safety
    /// The CPU must run `kernel`; `a` and `b` are packed tiles of `m` rows and `n` columns
    /// with `k_tiles` tiles of K each.
    unsafe fn products(
        kernel: Kernel,
        dst: ViewMut,
        (a, b): (&[u32], &[u32]),
        (m, n, k_tiles): (usize, usize, usize),
        (accumulate, scale): (bool, f32),
        parallel: bool,
    ) {
        let group_len = k_tiles * TILE_PAIRS;
        let (row_blocks, col_blocks) = (m.div_ceil(BLOCK), n.div_ceil(BLOCK));
        assert!(a.len() >= row_blocks * 2 * group_len && b.len() >= col_blocks * 2 * group_len);
        let at = dst.at;
        let out = dst.shared();
        let row_tasks = row_blocks.div_ceil(TASK_ROW_BLOCKS);
        let col_tasks = col_blocks.div_ceil(TASK_COL_BLOCKS);
        let task = |t: usize| {
            // SAFETY: the CPU runs `kernel` (the caller's promise).
            let tiles = (kernel == Kernel::Amx).then(|| unsafe { Tiles::configure() });
            let mut sums = [0f32; BLOCK * BLOCK];
            let (rt, ct) = (t / col_tasks, t % col_tasks);
            let rows = rt * TASK_ROW_BLOCKS..((rt + 1) * TASK_ROW_BLOCKS).min(row_blocks);
            for rb in rows {
                let cols = ct * TASK_COL_BLOCKS..((ct + 1) * TASK_COL_BLOCKS).min(col_blocks);
                for cb in cols {
                    let (r0, c0) = (rb * BLOCK, cb * BLOCK);
                    // SAFETY: row block rb and column block cb lie inside the packed operands
                    // (asserted above); the CPU runs `kernel`, and AMX has its tiles.
                    unsafe {
                        let (a, b) = (a.as_ptr(), b.as_ptr());
                        let (a, b) = (a.add(rb * 2 * group_len), b.add(cb * 2 * group_len));
                        match &tiles {
                            Some(tiles) => tiles.block_bf16(a, b, k_tiles, &mut sums),
                            None => avx512_bf16::block_bf16(a, b, k_tiles, m - r0, &mut sums),
                        }
                    }
                    let width = BLOCK.min(n - c0);
                    for (i, sums) in sums.chunks_exact(BLOCK).take(m - r0).enumerate() {
                        let row = at.offset + (r0 + i) * at.rs + c0 * at.cs;
                        // SAFETY: task t writes only its own rows x columns of the
                        // output (each value once), and reads no value another task writes.
                        unsafe { store(out, row, at.cs, &sums[..width], accumulate, scale) };
                    }
                }
            }
        };
        if parallel {
            (0..row_tasks * col_tasks).into_par_iter().for_each(task);
        } else {
            (0..row_tasks * col_tasks).for_each(task);
        }
    }

    /// `dst[at + j * cs] = (accumulate ? dst : 0) + scale * sums[j]`, through the pointer:
    /// the values may be uninitialised when not accumulating.
    ///
    /// # Safety
    /// No other thread reads or writes these values meanwhile.
    #[inline]
    unsafe fn store(
        dst: SharedMut,
        at: usize,
        cs: usize,
        sums: &[f32],
        accumulate: bool,
        scale: f32,
    ) {
        let Some(last) = sums.len().checked_sub(1) else {
            return;
        };
        assert!(at + last * cs < dst.len(), "store past the output");
        for (j, &s) in sums.iter().enumerate() {
            // SAFETY: inside the buffer (asserted above); not shared (the caller's promise).
            unsafe {
                let d = dst.ptr().add(at + j * cs);
                d.write(if accumulate {
                    d.read() + scale * s
                } else {
                    scale * s
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_matmul_precision_and_kernels() {
        assert_eq!(
            "BFloat16".parse::<MatmulPrecision>(),
            Ok(MatmulPrecision::Bf16)
        );
        assert_eq!("FP32".parse::<MatmulPrecision>(), Ok(MatmulPrecision::F32));
        assert_eq!(MatmulPrecision::Bf16.to_string(), "bf16");
        let err = "fp16".parse::<MatmulPrecision>().unwrap_err();
        assert_eq!(err, "unknown matmul precision `fp16`: f32 or bf16");
        use crate::Kernels;
        assert_eq!("Reference".parse::<Kernels>(), Ok(Kernels::Reference));
        assert_eq!(Kernels::Fused.to_string(), "fused");
        assert!(
            "fast"
                .parse::<Kernels>()
                .unwrap_err()
                .contains("reference or fused")
        );
    }

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

    /// A product into an uninitialised view writes every value of it and reads none: the
    /// buffer starts as NaN, which any value left unwritten, or read and added to, keeps.
    /// Covers the `gemm` crate (fewer than 4 rows), the AVX-512 kernel where the CPU has it
    /// (both parallel splits), an empty sum, a strided output, and the bf16 kernels.
    #[test]
    fn uninitialised_outputs_are_written_in_full() {
        let value = |i: usize, seed: f32| (i as f32 * 0.43 + seed).cos();
        for (m, n, k, threads) in [(3, 5, 7, 1), (13, 40, 70, 2), (70, 20, 33, 2), (6, 5, 0, 1)] {
            let a: Vec<f32> = (0..m * k).map(|i| value(i, 1.0)).collect();
            let b: Vec<f32> = (0..k * n).map(|i| value(i, 2.0)).collect();
            let (av, bv) = (View::rows(&a, m, k), View::rows(&b, k, n));
            let mut want = vec![0f32; m * n];
            matmul(ViewMut::rows(&mut want, m, n), av, bv, false, 0.5, 1);
            assert_eq!(product(av, bv, 0.5, threads), want, "{m}x{n}x{k}");
            // Strided: a padding column that no product may write.
            let at = Layout2::strided_rows(0, m, n, n + 1);
            let mut got = vec![MaybeUninit::new(f32::NAN); m * (n + 1)];
            matmul(ViewMut::uninit(&mut got, at), av, bv, false, 0.5, threads);
            for i in 0..m {
                // SAFETY: every value was initialised (as NaN, then perhaps by the product).
                let row: Vec<f32> = got[i * (n + 1)..][..n + 1]
                    .iter()
                    .map(|v| unsafe { v.assume_init() })
                    .collect();
                assert_eq!(row[..n], want[i * n..][..n], "{m}x{n}x{k} row {i}");
                assert!(row[n].is_nan(), "{m}x{n}x{k} row {i}: padding written");
            }
            #[cfg(target_arch = "x86_64")]
            for kernel in bf16::Kernel::all().into_iter().filter(|_| k > 0) {
                let mut got = vec![MaybeUninit::new(f32::NAN); m * n];
                let at = Layout2::strided_rows(0, m, n, n);
                // SAFETY: the CPU runs `kernel` (listed by `all`).
                unsafe {
                    bf16::matmul(
                        kernel,
                        ViewMut::uninit(&mut got, at),
                        av,
                        bv,
                        false,
                        0.5,
                        threads,
                    )
                };
                // SAFETY: as above.
                assert!(
                    got.iter().all(|v| unsafe { v.assume_init() }.is_finite()),
                    "{kernel:?}"
                );
            }
        }
    }

    #[test]
    #[should_panic(expected = "cannot add to uninitialised values")]
    fn a_product_does_not_add_to_uninitialised_values() {
        let (a, b) = ([1f32; 4], [1f32; 4]);
        let mut out = [MaybeUninit::new(0f32); 4];
        let at = Layout2::strided_rows(0, 2, 2, 2);
        let (av, bv) = (View::rows(&a, 2, 2), View::rows(&b, 2, 2));
        matmul(ViewMut::uninit(&mut out, at), av, bv, true, 1.0, 1);
    }

    #[test]
    fn the_f32_kernel_follows_the_environment_where_the_cpu_allows() {
        let default = F32Kernel::choose(None);
        assert_eq!(F32Kernel::choose(Some("gemm")), F32Kernel::Gemm);
        assert_eq!(F32Kernel::choose(Some("no-such-kernel")), default);
        let avx512 = F32Kernel::choose(Some("avx512"));
        let cpu = features::cpu();
        assert_eq!(avx512 == F32Kernel::Avx512, cpu.avx512f);
        if default == F32Kernel::Avx512 {
            assert!(cpu.wide_fma, "AVX-512 by default only with full-width FMAs");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn bf16_products_are_close_to_f32() {
        let kernels = bf16::Kernel::all();
        if kernels.is_empty() {
            eprintln!("no AMX bf16 or AVX-512 BF16 on this CPU: the bf16 path cannot run here");
        }
        let value = |i: usize, seed: f32| (i as f32 * 0.61 + seed).sin() * 2.0;
        // Partial blocks in every dimension, K across several tiles, both operand layouts,
        // the parallel path, and accumulation with a scale.
        for kernel in kernels {
            for (m, n, k, threads) in [(1, 1, 40, 1), (33, 17, 70, 1), (70, 130, 300, 2)] {
                // Row-major, transposed, and strided both ways (the general packing path).
                for (layout_a, layout_b, accumulate) in [(0, 1, false), (1, 0, true), (2, 2, false)]
                {
                    let a: Vec<f32> = (0..2 * m * k).map(|i| value(i, 1.0)).collect();
                    let b: Vec<f32> = (0..2 * k * n).map(|i| value(i, 2.0)).collect();
                    let (av, bv) = (test_view(&a, m, k, layout_a), test_view(&b, k, n, layout_b));
                    let start: Vec<f32> = (0..m * n).map(|i| value(i, 3.0)).collect();
                    let (mut want, mut got) = (start.clone(), start);
                    matmul(ViewMut::rows(&mut want, m, n), av, bv, accumulate, 0.5, 1);
                    // SAFETY: the CPU runs `kernel` (listed by `all`).
                    unsafe {
                        bf16::matmul(
                            kernel,
                            ViewMut::rows(&mut got, m, n),
                            av,
                            bv,
                            accumulate,
                            0.5,
                            threads,
                        )
                    };
                    // bf16 keeps 8 bits of mantissa: relative error about 2^-8 per operand, and
                    // the sums' errors partly cancel.
                    let tol = 0.5 * (k as f32).sqrt() * 2.0 * 2.0 * 2f32.powi(-7);
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g - w).abs() <= tol,
                            "{kernel:?} {m}x{n}x{k} [{i}]: {g} vs {w} (tol {tol})"
                        );
                    }
                }
            }
        }
    }
}
