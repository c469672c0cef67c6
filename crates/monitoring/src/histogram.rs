//! Fixed-edge histograms: the reference and live traffic are binned on the same edges, so
//! their shares compare bin by bin.

use serde::{Deserialize, Serialize};

/// Counts of values between fixed edges: bin 0 holds values below `edges[0]`, bin `i`
/// values in `[edges[i-1], edges[i])`, the last bin values from the last edge up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
}

impl Histogram {
    pub fn new(edges: Vec<f64>) -> Self {
        let counts = vec![0; edges.len() + 1];
        Self { edges, counts }
    }

    pub fn add(&mut self, value: f64) {
        let bin = self.edges.partition_point(|&e| e <= value);
        self.counts[bin] += 1;
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Each bin's share of the values (all zero when empty).
    pub fn shares(&self) -> Vec<f64> {
        shares(&self.counts)
    }

    /// Whether `other` bins on the same edges (so the two compare).
    pub fn same_bins(&self, other: &Histogram) -> bool {
        self.edges == other.edges
    }
}

/// Counts as shares of their sum (all zero when the sum is).
pub fn shares(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    counts
        .iter()
        .map(|&c| {
            if total == 0 {
                0.0
            } else {
                c as f64 / total as f64
            }
        })
        .collect()
}

/// Ten equal bins of confidence over `[1/labels, 1]`, the range a top probability can take.
pub fn confidence_edges(labels: usize) -> Vec<f64> {
    let low = 1.0 / labels.max(2) as f64;
    (1..10)
        .map(|i| low + (1.0 - low) * i as f64 / 10.0)
        .collect()
}

/// Text length in word pieces, in doubling bins from 8 to 1024: short tweets, reviews and
/// documents longer than any model's window fall in different bins.
pub fn length_edges() -> Vec<f64> {
    (3..=10).map(|p| f64::from(1u32 << p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_fall_in_their_bins() {
        let mut h = Histogram::new(vec![1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 2.0, 9.0] {
            h.add(v);
        }
        assert_eq!(h.counts, vec![1, 2, 2]);
        assert_eq!(h.shares(), vec![0.2, 0.4, 0.4]);
        assert_eq!(Histogram::new(vec![1.0]).shares(), vec![0.0, 0.0]);
    }

    #[test]
    fn confidence_bins_cover_what_a_top_probability_can_be() {
        let two = confidence_edges(2);
        assert_eq!(two.len(), 9);
        assert!((two[0] - 0.55).abs() < 1e-12 && (two[8] - 0.95).abs() < 1e-12);
        let three = confidence_edges(3);
        assert!((three[0] - 0.4).abs() < 1e-12, "{three:?}");
    }
}
