//! Int8 dynamic quantisation of linear layers, for serving: weights are quantised once per
//! output channel, activations per row on every call, products accumulate exactly in i32.
//!
//! Weights use 7 bits (`[-63, 63]`) so that AVX2's `vpmaddubsw` (u8 x i8 pairs summed into
//! i16) cannot saturate: `2 * 255 * 63 = 32130 <= i16::MAX`. ONNX Runtime's `reduce_range`
//! does the same for the same instruction. Activations use all 8 bits, asymmetric (their
//! range is lopsided after GELU), with the zero point folded out through each channel's
//! weight sum. Integer sums are exact, so the AMX, AVX-512 VNNI, AVX2 and portable kernels
//! agree bit for bit, and a model gives the same outputs on every machine.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

use std::sync::Arc;

use candle_core::{Result, Tensor};
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::amx;
use super::cpu::with_f32;
use super::fused::SharedMut;
use super::math;

/// Numeric precision of the encoder's weights at inference. (Products of f32 weights, in
/// training too, follow [`super::gemm::MatmulPrecision`].)
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[strum(
    ascii_case_insensitive,
    parse_err_ty = String,
    parse_err_fn = unknown_precision
)]
pub enum Precision {
    /// f32 weights and products: the reference, and the default.
    #[default]
    #[strum(to_string = "f32", serialize = "fp32", serialize = "float32")]
    F32,
    /// Int8 dynamic quantisation of every encoder linear layer (the head stays f32): a
    /// quarter of the weight memory traffic, and faster products at small batches.
    #[strum(to_string = "int8", serialize = "i8", serialize = "q8")]
    Int8,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

fn unknown_precision(s: &str) -> String {
    format!("unknown precision `{s}`: f32 or int8")
}

/// Largest weight level: 7 bits, see the module docs.
const W_LEVELS: f32 = 63.0;
/// Rows are padded to a multiple of one AMX tile row (two AVX2 registers) of bytes.
const K_ALIGN: usize = 64;
/// Rows and output channels per parallel task: both operands of a task stay in L2.
const TASK_ROWS: usize = 64;
const TASK_COLS: usize = 64;
/// Register tile of the kernel: 4 rows x 2 channels = 8 accumulators, 14 of AVX2's 16
/// vector registers with the operands.
const MR: usize = 4;
const NR: usize = 2;

/// A linear layer `y = x @ w^T + b` with int8 weights.
#[derive(Debug, Clone)]
pub struct QuantizedLinear {
    out_dim: usize,
    in_dim: usize,
    /// `in_dim` rounded up to [`K_ALIGN`].
    stride: usize,
    /// The kernel that runs this layer; it decides the layout of `weights`.
    kernel: Kernel,
    /// `out_dim x stride`, one output channel per row, zero padded; for AMX, packed into
    /// its weight tiles.
    weights: Vec<i8>,
    scales: Vec<f32>,
    /// Per channel, the sum of its quantised weights (removes the activations' zero point).
    sums: Vec<i32>,
    bias: Vec<f32>,
}

impl QuantizedLinear {
    /// Quantises `w` (`out_dim x in_dim`, row-major) and keeps `b` (`out_dim`) in f32, for
    /// the fastest kernel this CPU has.
    pub fn new(w: &[f32], b: &[f32], out_dim: usize, in_dim: usize) -> Self {
        Self::for_kernel(w, b, out_dim, in_dim, Kernel::detect())
    }

    fn for_kernel(w: &[f32], b: &[f32], out_dim: usize, in_dim: usize, kernel: Kernel) -> Self {
        assert_eq!(
            w.len(),
            out_dim * in_dim,
            "weights are not out_dim x in_dim"
        );
        assert_eq!(b.len(), out_dim, "bias is not out_dim long");
        let stride = in_dim.div_ceil(K_ALIGN) * K_ALIGN;
        let mut weights = vec![0i8; out_dim * stride];
        let mut scales = vec![0f32; out_dim];
        let mut sums = vec![0i32; out_dim];
        for (c, row) in w.chunks_exact(in_dim.max(1)).enumerate().take(out_dim) {
            let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = if max > 0.0 { max / W_LEVELS } else { 1.0 };
            let q = &mut weights[c * stride..c * stride + in_dim];
            for (q, &v) in q.iter_mut().zip(row) {
                *q = (v / scale).round().clamp(-W_LEVELS, W_LEVELS) as i8;
            }
            scales[c] = scale;
            sums[c] = q.iter().map(|&v| i32::from(v)).sum();
        }
        #[cfg(target_arch = "x86_64")]
        if kernel.blocks() {
            weights = amx::pack_i8(&weights, out_dim, stride);
        }
        Self {
            out_dim,
            in_dim,
            stride,
            kernel,
            weights,
            scales,
            sums,
            bias: b.to_vec(),
        }
    }

    /// Quantises a `(out, in)` weight tensor and its `(out,)` bias.
    pub fn from_tensors(w: &Tensor, b: &Tensor) -> Result<Arc<Self>> {
        let (out_dim, in_dim) = w.dims2()?;
        let b = b.flatten_all()?.to_vec1::<f32>()?;
        if b.len() != out_dim {
            candle_core::bail!("int8 linear: bias of {} for {out_dim} outputs", b.len());
        }
        with_f32(w, |w| Arc::new(Self::new(w, &b, out_dim, in_dim)))
    }

    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// `x @ w^T + b` for `x` of shape `(..., in)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_then(x, Then::Nothing)
    }

    /// `gelu(x @ w^T + b)`, the GELU applied while each output tile is still in cache.
    pub fn forward_gelu(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_then(x, Then::Gelu)
    }

    fn forward_then(&self, x: &Tensor, then: Then) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let inner = *dims.last().expect("rank >= 1");
        if inner != self.in_dim {
            candle_core::bail!(
                "int8 linear: input {dims:?}, expects last dim {}",
                self.in_dim
            );
        }
        let rows = x.elem_count() / inner.max(1);
        let y = with_f32(x, |x| self.forward_with(x, rows, then))?;
        let mut out = dims;
        *out.last_mut().expect("rank >= 1") = self.out_dim;
        Tensor::from_vec(y, out, x.device())
    }

    /// `x` is `rows x in_dim`, row-major; returns `rows x out_dim`.
    pub fn forward_rows(&self, x: &[f32], rows: usize) -> Vec<f32> {
        self.forward_with(x, rows, Then::Nothing)
    }

    fn forward_with(&self, x: &[f32], rows: usize, then: Then) -> Vec<f32> {
        assert_eq!(x.len(), rows * self.in_dim, "input is not rows x in_dim");
        let acts =
            Activations::quantize(x, rows, self.in_dim, self.stride, self.kernel.row_align());
        let n = self.out_dim;
        let mut y = vec![0f32; rows * n];
        let out = SharedMut::new(&mut y);
        let (row_tasks, col_tasks) = (rows.div_ceil(TASK_ROWS), n.div_ceil(TASK_COLS));
        (0..row_tasks * col_tasks).into_par_iter().for_each(|t| {
            let r0 = (t / col_tasks) * TASK_ROWS;
            let c0 = (t % col_tasks) * TASK_COLS;
            // SAFETY: task `t` writes only rows r0.. x columns c0.. of its own tile, which no
            // other task writes, and reads nothing of `y`.
            let y = unsafe { out.get() };
            let (r1, c1) = ((r0 + TASK_ROWS).min(rows), (c0 + TASK_COLS).min(n));
            match self.kernel {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the layer was packed for blocks only where their kernel runs.
                Kernel::Amx | Kernel::Avx512Vnni => unsafe {
                    self.block_task(&acts, r0..r1, c0..c1, then, y)
                },
                kernel => self.task(&acts, r0..r1, c0..c1, kernel, then, y),
            }
        });
        y
    }

    fn task(
        &self,
        acts: &Activations,
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
        kernel: Kernel,
        then: Then,
        y: &mut [f32],
    ) {
        let s = self.stride;
        let mut dots = [[0i32; TASK_COLS]; MR];
        for r in rows.clone().step_by(MR) {
            let mr = MR.min(rows.end - r);
            for c in cols.clone().step_by(NR) {
                let nr = NR.min(cols.end - c);
                let tile = Tile {
                    a: &acts.q[r * s..(r + mr) * s],
                    w: &self.weights[c * s..(c + nr) * s],
                    stride: s,
                    mr,
                    nr,
                };
                kernel.tile(tile, &mut dots, c - cols.start);
            }
            let dots = dots.as_flattened();
            self.dequantize(y, (dots, TASK_COLS), acts, r..r + mr, cols.clone(), then);
        }
    }

    /// Writes outputs `rows x cols` of `y` from their integer sums, `dots.0` holding row
    /// `rows.start + i`'s sums from `i * dots.1` on.
    fn dequantize(
        &self,
        y: &mut [f32],
        dots: (&[i32], usize),
        acts: &Activations,
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
        then: Then,
    ) {
        let start = rows.start * self.out_dim + cols.start;
        let ch = cols.clone();
        dequantize_block(
            &mut y[start..],
            (self.out_dim, cols.len(), rows.len()),
            dots,
            (&acts.scales[rows.clone()], &acts.zeros[rows]),
            (
                &self.scales[ch.clone()],
                &self.sums[ch.clone()],
                &self.bias[ch],
            ),
            then == Then::Gelu,
        );
    }

    /// [`Self::task`] on 32 x 32 blocks (AMX tiles or AVX-512 VNNI), each dequantised as soon
    /// as it is summed.
    ///
    /// # Safety
    /// The layer's kernel must run on this CPU and the weights be packed for blocks.
    #[cfg(target_arch = "x86_64")]
    unsafe fn block_task(
        &self,
        acts: &Activations,
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
        then: Then,
        y: &mut [f32],
    ) {
        let s = self.stride;
        let k_tiles = s / amx::K_STEP;
        // SAFETY: forwarded from the caller.
        let tiles = (self.kernel == Kernel::Amx).then(|| unsafe { amx::Tiles::configure() });
        let mut dots = [0i32; amx::BLOCK * amx::BLOCK];
        for r in rows.clone().step_by(amx::BLOCK) {
            for c in cols.clone().step_by(amx::BLOCK) {
                let group = c / 16;
                assert!(
                    (r + amx::BLOCK) * s <= acts.q.len()
                        && (group + 2) * k_tiles * amx::TILE_BYTES <= self.weights.len(),
                    "block outside its operands"
                );
                // SAFETY: activations are padded to whole blocks of rows and weights to
                // whole blocks of channels (checked just above); the kernel runs here.
                unsafe {
                    let a = acts.q.as_ptr().add(r * s);
                    let w = self.weights.as_ptr().add(group * k_tiles * amx::TILE_BYTES);
                    match &tiles {
                        Some(tiles) => tiles.block_i8(a, s, w, k_tiles, &mut dots),
                        None => avx512::block_i8(a, s, w, k_tiles, rows.end - r, &mut dots),
                    }
                }
                let (r1, c1) = (
                    (r + amx::BLOCK).min(rows.end),
                    (c + amx::BLOCK).min(cols.end),
                );
                self.dequantize(y, (&dots, amx::BLOCK), acts, r..r1, c..c1, then);
            }
        }
    }
}

/// One row to quantise: its values, its u8 slot, its (scale, zero point) slot.
type RowWork<'a> = (&'a [f32], (&'a mut [u8], &'a mut (f32, i32)));

/// Rows quantised to u8 with their own scale and zero point: `x ~ scale * (q - zero)`.
struct Activations {
    q: Vec<u8>,
    scales: Vec<f32>,
    zeros: Vec<i32>,
}

impl Activations {
    /// Quantises `rows x in_dim` values into `stride`-byte rows, adding zero rows up to a
    /// multiple of `row_align` (kernels that work on whole blocks read them, never use them).
    fn quantize(x: &[f32], rows: usize, in_dim: usize, stride: usize, row_align: usize) -> Self {
        let mut q = vec![0u8; rows.div_ceil(row_align) * row_align * stride];
        let mut params = vec![(0f32, 0i32); rows];
        let one = |(row, (q, p)): RowWork| {
            *p = quantize_row(row, q);
        };
        let work = x
            .par_chunks(in_dim.max(1))
            .zip(q.par_chunks_mut(stride).zip(params.par_iter_mut()));
        if rows >= 16 {
            work.with_min_len(8).for_each(one);
        } else {
            x.chunks(in_dim.max(1))
                .zip(q.chunks_mut(stride).zip(params.iter_mut()))
                .for_each(one);
        }
        let (scales, zeros) = params.into_iter().unzip();
        Self { q, scales, zeros }
    }
}

/// What happens to the outputs before they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    Nothing,
    Gelu,
}

/// `y[i][j] = x_scale[i] * w_scale[j] * (dot[i][j] - x_zero[i] * w_sum[j]) + b[j]`, then
/// GELU, for a block of `rows x width` outputs `y_stride` apart. One call per block: per-row
/// calls cost more in dispatch than the row's arithmetic.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn dequantize_block(
    y: &mut [f32],
    (y_stride, width, rows): (usize, usize, usize),
    (dots, dots_stride): (&[i32], usize),
    (x_scale, x_zero): (&[f32], &[i32]),
    (w_scale, w_sum, b): (&[f32], &[i32], &[f32]),
    gelu: bool,
) {
    let (w_scale, w_sum, b) = (&w_scale[..width], &w_sum[..width], &b[..width]);
    for i in 0..rows {
        let y = &mut y[i * y_stride..][..width];
        let dots = &dots[i * dots_stride..][..width];
        let (x_scale, x_zero) = (x_scale[i], x_zero[i]);
        for j in 0..width {
            y[j] = x_scale * w_scale[j] * (dots[j] - x_zero * w_sum[j]) as f32 + b[j];
        }
        if gelu {
            for y in y.iter_mut() {
                *y = math::gelu(*y);
            }
        }
    }
}

/// Quantises one row into `q` (its padding left zero); returns its scale and zero point.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn quantize_row(row: &[f32], q: &mut [u8]) -> (f32, i32) {
    // The range includes 0, so exact zeros stay exact.
    let (lo, hi) = row
        .iter()
        .fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
    let zero = (-lo / scale).round().clamp(0.0, 255.0);
    let (inv, offset) = (1.0 / scale, zero + 0.5);
    for (q, &v) in q.iter_mut().zip(row) {
        // Round half up into [0, 255]; `max`/`min` (unlike `clamp`) also map NaN into range.
        #[allow(clippy::manual_clamp)]
        let v = (v * inv + offset).max(0.0).min(255.0);
        // SAFETY: v is in [0, 255], so it fits an i32.
        *q = unsafe { v.to_int_unchecked::<i32>() } as u8;
    }
    (scale, zero as i32)
}

/// Which integer dot-product kernel runs: chosen from the CPU's features when a layer is
/// quantised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
    #[cfg(target_arch = "x86_64")]
    Amx,
}

impl Kernel {
    fn detect() -> Self {
        *Self::available()
            .last()
            .expect("portable is always available")
    }

    /// The kernels this CPU runs, slowest first.
    fn available() -> Vec<Self> {
        #[allow(unused_mut)]
        let mut kernels = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if crate::features::cpu().avx2 {
                kernels.push(Kernel::Avx2);
            }
            if avx512::available() {
                kernels.push(Kernel::Avx512Vnni);
            }
            if amx::available(amx::Feature::Int8) {
                kernels.push(Kernel::Amx);
            }
        }
        kernels
    }

    /// Activation rows are padded to a multiple of this.
    fn row_align(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Amx | Kernel::Avx512Vnni => amx::BLOCK,
            _ => 1,
        }
    }

    /// Whether the kernel works on 32 x 32 blocks of packed weights, not register tiles.
    #[cfg(target_arch = "x86_64")]
    fn blocks(self) -> bool {
        self.row_align() > 1
    }

    /// `out[i][col + j] = a_i . w_j` for the tile's rows `a_i` and `w_j`.
    fn tile(self, t: Tile, out: &mut Dots, col: usize) {
        assert!(t.a.len() >= t.mr * t.stride && t.w.len() >= t.nr * t.stride);
        assert!(t.stride.is_multiple_of(K_ALIGN));
        assert!(t.mr <= MR && t.nr <= NR && col + t.nr <= TASK_COLS);
        match self {
            Kernel::Portable => portable_tile(t, out, col),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 was detected; the lengths were checked above.
            Kernel::Avx2 => unsafe { avx2::tile(t, out, col) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Amx | Kernel::Avx512Vnni => unreachable!("{self:?} layers run whole blocks"),
        }
    }
}

/// A task's integer dot products for one register tile's rows.
type Dots = [[i32; TASK_COLS]; MR];

/// One register tile's operands: the first `mr` rows of `a` (quantised activations) and `nr`
/// rows of `w` (weights), each `stride` bytes long (a multiple of [`K_ALIGN`]).
#[derive(Clone, Copy)]
struct Tile<'a> {
    a: &'a [u8],
    w: &'a [i8],
    stride: usize,
    mr: usize,
    nr: usize,
}

fn portable_tile(t: Tile, out: &mut Dots, col: usize) {
    let (a, w, stride, mr, nr) = (t.a, t.w, t.stride, t.mr, t.nr);
    for (i, out) in out.iter_mut().enumerate().take(mr) {
        let a = &a[i * stride..(i + 1) * stride];
        for (j, out) in out[col..col + nr].iter_mut().enumerate() {
            let w = &w[j * stride..(j + 1) * stride];
            *out = a
                .iter()
                .zip(w)
                .map(|(&a, &w)| i32::from(a) * i32::from(w))
                .sum();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as f32 * 0.37 + seed as f32).sin() * 1.7).powi(3))
            .collect()
    }

    fn reference(x: &[f32], w: &[f32], b: &[f32], rows: usize, n: usize, k: usize) -> Vec<f32> {
        let mut y = vec![0f32; rows * n];
        for r in 0..rows {
            for c in 0..n {
                y[r * n + c] = b[c] + (0..k).map(|t| x[r * k + t] * w[c * k + t]).sum::<f32>();
            }
        }
        y
    }

    #[test]
    fn close_to_f32_product_at_odd_shapes() {
        // Shapes that leave partial register tiles, partial tasks and padded rows.
        for (rows, n, k) in [(1, 1, 1), (5, 3, 33), (67, 130, 70), (4, 2, 64)] {
            let (x, w, b) = (data(rows * k, 1), data(n * k, 2), data(n, 3));
            let q = QuantizedLinear::new(&w, &b, n, k);
            let got = q.forward_rows(&x, rows);
            let want = reference(&x, &w, &b, rows, n, k);
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1.0);
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 0.03 * scale,
                    "{rows}x{n}x{k}: {g} vs {w} (scale {scale})"
                );
            }
        }
    }

    #[test]
    fn kernels_agree_exactly() {
        // Partial register tiles, partial AMX blocks (rows and channels), several K steps.
        for (rows, n, k) in [(9, 7, 100), (40, 70, 200), (67, 33, 64), (33, 40, 600)] {
            let (x, w, b) = (data(rows * k, 4), data(n * k, 5), data(n, 6));
            let portable = QuantizedLinear::for_kernel(&w, &b, n, k, Kernel::Portable);
            for kernel in Kernel::available() {
                let q = QuantizedLinear::for_kernel(&w, &b, n, k, kernel);
                for then in [Then::Nothing, Then::Gelu] {
                    let want = portable.forward_with(&x, rows, then);
                    let got = q.forward_with(&x, rows, then);
                    assert_eq!(got, want, "{kernel:?} {then:?} {rows}x{n}x{k}");
                }
                let plain = q.forward_with(&x, rows, Then::Nothing);
                let fused: Vec<f32> = plain.into_iter().map(math::gelu).collect();
                assert_eq!(q.forward_with(&x, rows, Then::Gelu), fused, "{kernel:?}");
            }
        }
    }

    #[test]
    fn zero_rows_and_exact_zeros() {
        let q = QuantizedLinear::new(&[0.0; 6], &[1.0, 2.0], 2, 3);
        assert_eq!(q.forward_rows(&[0.0; 3], 1), vec![1.0, 2.0]);
        assert!(q.forward_rows(&[], 0).is_empty());
    }

    #[test]
    fn parses_precision() {
        assert_eq!("INT8".parse::<Precision>(), Ok(Precision::Int8));
        assert_eq!("fp32".parse::<Precision>(), Ok(Precision::F32));
        assert!(
            "bf16"
                .parse::<Precision>()
                .unwrap_err()
                .contains("f32 or int8")
        );
        assert_eq!(Precision::Int8.to_string(), "int8");
        assert_eq!(Precision::F32.as_str(), "f32");
    }
}
