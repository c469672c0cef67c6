//! Calibrated confidence: temperature scaling (Guo et al. 2017, "On Calibration of Modern
//! Neural Networks", <https://arxiv.org/abs/1706.04599>), expected calibration error and the
//! reliability diagram's bins.
//!
//! One scalar `T` divides the logits before the softmax. It never changes which class wins,
//! only how sure the model says it is; it is fitted on held-out (validation) data by
//! minimising the negative log-likelihood.

use serde::{Deserialize, Serialize};

/// Bins of the expected calibration error, as Guo et al. report it.
pub const ECE_BINS: usize = 15;

/// The temperature search interval: beyond it a model is broken, not miscalibrated.
const T_MIN: f64 = 0.05;
const T_MAX: f64 = 20.0;

/// Mean negative log-likelihood of `labels` under `softmax(logits / t)`.
pub fn nll(logits: &[Vec<f32>], labels: &[usize], t: f64) -> f64 {
    let total: f64 = logits
        .iter()
        .zip(labels)
        .map(|(z, &y)| {
            let scaled: Vec<f64> = z.iter().map(|&v| f64::from(v) / t).collect();
            let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + scaled.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            lse - scaled[y]
        })
        .sum();
    total / labels.len().max(1) as f64
}

/// The temperature that minimises [`nll`] on `(logits, labels)`: a golden-section search
/// over `ln t` (the NLL is convex in `1 / t`, so it has one minimum). 1 when there is
/// nothing to fit.
pub fn fit_temperature(logits: &[Vec<f32>], labels: &[usize]) -> f32 {
    assert_eq!(logits.len(), labels.len(), "one label per row of logits");
    if labels.is_empty() {
        return 1.0;
    }
    let f = |u: f64| nll(logits, labels, u.exp());
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let (mut a, mut b) = (T_MIN.ln(), T_MAX.ln());
    let mut c = b - ratio * (b - a);
    let mut d = a + ratio * (b - a);
    let (mut fc, mut fd) = (f(c), f(d));
    while b - a > 1e-5 {
        if fc < fd {
            (b, d, fd) = (d, c, fc);
            c = b - ratio * (b - a);
            fc = f(c);
        } else {
            (a, c, fc) = (c, d, fd);
            d = a + ratio * (b - a);
            fd = f(d);
        }
    }
    ((a + b) / 2.0).exp() as f32
}

/// One bin of a reliability diagram: predictions whose confidence fell in `[lower, upper)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    pub count: u64,
    /// Mean confidence of the bin's predictions (0 when empty).
    pub confidence: f64,
    /// Share of them that were right (0 when empty).
    pub accuracy: f64,
}

/// How confidence matched accuracy: the bins and the expected calibration error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// `sum over bins of count / n x |accuracy - confidence|`.
    pub ece: f64,
    pub bins: Vec<ReliabilityBin>,
}

impl Calibration {
    /// Over predictions given as `(confidence of the predicted class, was it right)`, in
    /// [`ECE_BINS`] equal-width bins.
    pub fn of(predictions: impl IntoIterator<Item = (f32, bool)>) -> Self {
        let mut count = [0u64; ECE_BINS];
        let mut conf = [0f64; ECE_BINS];
        let mut right = [0u64; ECE_BINS];
        for (c, ok) in predictions {
            let bin = ((f64::from(c) * ECE_BINS as f64) as usize).min(ECE_BINS - 1);
            count[bin] += 1;
            conf[bin] += f64::from(c);
            right[bin] += u64::from(ok);
        }
        let n: u64 = count.iter().sum();
        let bins: Vec<ReliabilityBin> = (0..ECE_BINS)
            .map(|b| {
                let k = count[b].max(1) as f64;
                ReliabilityBin {
                    lower: b as f64 / ECE_BINS as f64,
                    upper: (b + 1) as f64 / ECE_BINS as f64,
                    count: count[b],
                    confidence: if count[b] == 0 { 0.0 } else { conf[b] / k },
                    accuracy: if count[b] == 0 {
                        0.0
                    } else {
                        right[b] as f64 / k
                    },
                }
            })
            .collect();
        let ece = bins
            .iter()
            .map(|b| b.count as f64 / n.max(1) as f64 * (b.accuracy - b.confidence).abs())
            .sum();
        Self { ece, bins }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    /// An over-confident binary model: the true log-odds are `s`, it reports `3 s`.
    fn overconfident(n: usize) -> (Vec<Vec<f32>>, Vec<usize>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        (0..n)
            .map(|_| {
                let s: f64 = rng.random_range(-3.0..3.0);
                let p_pos = 1.0 / (1.0 + (-s).exp());
                let y = usize::from(rng.random::<f64>() < p_pos);
                (vec![0.0, (3.0 * s) as f32], y)
            })
            .unzip()
    }

    #[test]
    fn temperature_of_an_overconfident_model_lowers_nll_and_ece() {
        let (logits, labels) = overconfident(4000);
        let t = fit_temperature(&logits, &labels);
        assert!(
            (2.6..3.4).contains(&t),
            "the model is 3x over-confident, got T = {t}"
        );
        let (before, after) = (nll(&logits, &labels, 1.0), nll(&logits, &labels, t.into()));
        assert!(after < before - 0.05, "NLL {before} -> {after}");
        let ece_at = |t: f64| {
            Calibration::of(logits.iter().zip(&labels).map(|(z, &y)| {
                let p = 1.0 / (1.0 + (-(f64::from(z[1]) / t)).exp());
                let class = usize::from(p >= 0.5);
                (p.max(1.0 - p) as f32, class == y)
            }))
            .ece
        };
        assert!(ece_at(t.into()) < ece_at(1.0) / 2.0);
    }

    #[test]
    fn calibrated_model_keeps_temperature_near_one() {
        let (mut logits, labels) = overconfident(4000);
        for z in &mut logits {
            z[1] /= 3.0;
        }
        let t = fit_temperature(&logits, &labels);
        assert!((0.85..1.15).contains(&t), "T = {t}");
        assert_eq!(fit_temperature(&[], &[]), 1.0);
    }

    #[test]
    fn ece_bins_by_confidence() {
        // Four predictions at 0.95 confidence, half right: ECE 0.45 in one bin.
        let c = Calibration::of([(0.95, true), (0.95, false), (0.95, true), (0.95, false)]);
        assert_eq!(c.bins.len(), ECE_BINS);
        assert!((c.ece - 0.45).abs() < 1e-6, "{}", c.ece);
        assert_eq!(c.bins[14].count, 4);
        assert_eq!(Calibration::of([(1.0, true)]).bins[14].count, 1);
    }
}
