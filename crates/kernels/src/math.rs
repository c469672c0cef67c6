//! Scalar maths written so that loops over slices vectorise: `exp` and `erf` from
//! polynomials (libm's calls would not vectorise), and the GELU built on them.

/// e^x, relative error below 3e-7; 0 below -87.3 (where f32 turns subnormal), +inf above
/// 88.7.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let (input, x) = (x, x.clamp(-87.3, 88.7));
    // x = n ln2 + r, |r| <= ln2 / 2
    let n = (x * LOG2E).round();
    let r = x - n * LN2_HI - n * LN2_LO;
    // Cephes expf polynomial.
    let p = 1.987_569_1e-4f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5e-1;
    let e = p * r * r + r + 1.0;
    // 2^n through the exponent bits; n is within [-126, 128] after the clamp. Adding 2^23
    // puts the integer n + 127 in the low mantissa bits: unlike `n as i32`, whose saturating
    // NaN handling LLVM lowers lane by lane, this stays in vector registers.
    const MAGIC: f32 = 8_388_608.0;
    let biased = (n + (MAGIC + 127.0)).to_bits() & 0x7f_ffff;
    let scale = f32::from_bits(biased.clamp(1, 254) << 23);
    // 2^128 is not an f32: near the top of the range (x > 88.03) take the last doubling
    // into `e`.
    let e = if n > 127.0 { e * 2.0 } else { e };
    let y = e * scale;
    if input >= 88.7 {
        f32::INFINITY
    } else if input <= -87.3 {
        0.0
    } else {
        y
    }
}

/// erf(x) as a rational function of x (|error| < 4e-7, a few f32 ulps near +-1), the fit
/// XLA and Eigen use for f32: a third of the work of an erfc fit through `exp`, no branch.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    // Beyond +-4, erf is +-1 to f32 precision.
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = -2.726_142_3e-10f32;
    let p = p * x2 + 2.770_681_4e-8;
    let p = p * x2 - 2.101_024e-6;
    let p = p * x2 - 5.692_506_4e-5;
    let p = p * x2 - 7.349_906_3e-4;
    let p = p * x2 - 2.954_6e-3;
    let p = p * x2 - 1.609_603_3e-2;
    let q = -1.456_607_2e-5f32;
    let q = q * x2 - 2.133_740_6e-4;
    let q = q * x2 - 1.682_827e-3;
    let q = q * x2 - 7.373_329e-3;
    let q = q * x2 - 1.426_474e-2;
    x * p / q
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi)
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// Exact GELU, x * Phi(x).
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2))
}

/// d/dx GELU(x) = Phi(x) + x * phi(x).
#[inline(always)]
pub fn gelu_grad(x: f32) -> f32 {
    let cdf = 0.5 * (1.0 + erf(x * FRAC_1_SQRT_2));
    cdf + x * FRAC_1_SQRT_2PI * exp(-0.5 * x * x)
}

/// Accumulators a reduction keeps apart: a float sum in one accumulator must run in order,
/// element by element, so LLVM cannot vectorise it; 16 lanes fill an AVX-512 register.
const LANES: usize = 16;

/// `sum of f(i) for i in 0..n`, in [`LANES`] interleaved partial sums (so it vectorises
/// where `f` does).
#[inline(always)]
pub fn sum_by(n: usize, f: impl Fn(usize) -> f32) -> f32 {
    let full = n / LANES * LANES;
    let mut acc = [0f32; LANES];
    for base in (0..full).step_by(LANES) {
        for (lane, a) in acc.iter_mut().enumerate() {
            *a += f(base + lane);
        }
    }
    acc.iter().sum::<f32>() + (full..n).map(f).sum::<f32>()
}

/// The sum of `xs`, vectorised.
#[inline(always)]
pub fn sum(xs: &[f32]) -> f32 {
    sum_by(xs.len(), |i| xs[i])
}

/// The dot product of `a` and `b` (as long as the shorter), vectorised.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    sum_by(n, |i| a[i] * b[i])
}

/// The largest of `xs` (`f32::MIN` when empty; NaN is skipped, as `f32::max` does).
#[inline(always)]
pub fn max(xs: &[f32]) -> f32 {
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    let mut acc = [f32::MIN; LANES];
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = a.max(x);
        }
    }
    acc.iter().chain(tail).fold(f32::MIN, |m, &x| m.max(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reductions_match_sequential_ones() {
        for n in [0, 1, 15, 16, 17, 100] {
            let xs: Vec<f32> = (0..n).map(|i| (i as f32 * 0.7).sin() * 3.0).collect();
            let ys: Vec<f32> = (0..n).map(|i| (i as f32 * 0.3).cos()).collect();
            let want_sum: f32 = xs.iter().sum();
            let want_dot: f32 = xs.iter().zip(&ys).map(|(a, b)| a * b).sum();
            assert!((sum(&xs) - want_sum).abs() < 1e-4, "sum of {n}");
            assert!((dot(&xs, &ys) - want_dot).abs() < 1e-4, "dot of {n}");
            assert_eq!(
                max(&xs),
                xs.iter().fold(f32::MIN, |m, &x| m.max(x)),
                "max of {n}"
            );
        }
        assert_eq!(max(&[f32::NAN, -2.0]), -2.0);
    }

    #[test]
    fn exp_is_accurate() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.7 {
            let rel = ((exp(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(exp(f32::MIN), 0.0);
        assert!(exp(1000.0).is_infinite());
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn erf_and_gelu_are_accurate() {
        let mut x = -6.0f64;
        while x < 6.0 {
            // erf via its series-free identity with f64 libm-free reference: use the
            // complementary relation erf(x) = 2 Phi(x sqrt 2) - 1 computed by integration.
            let reference = erf_f64(x);
            assert!((erf(x as f32) as f64 - reference).abs() < 4e-7, "erf({x})");
            let g = x * 0.5 * (1.0 + erf_f64(x / std::f64::consts::SQRT_2));
            assert!((gelu(x as f32) as f64 - g).abs() < 1e-6, "gelu({x})");
            let h = 1e-4;
            let gp = |y: f64| y * 0.5 * (1.0 + erf_f64(y / std::f64::consts::SQRT_2));
            let numeric = (gp(x + h) - gp(x - h)) / (2.0 * h);
            assert!(
                (gelu_grad(x as f32) as f64 - numeric).abs() < 1e-5,
                "gelu'({x})"
            );
            x += 0.01;
        }
    }

    /// erf in f64 by Simpson integration of 2/sqrt(pi) e^{-t^2}: slow, but an independent
    /// reference.
    fn erf_f64(x: f64) -> f64 {
        let n = 2000;
        let h = x / n as f64;
        let f = |t: f64| (-t * t).exp();
        let mut s = f(0.0) + f(x);
        for i in 1..n {
            s += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        s * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
    }
}
