//! What a set of predictions looks like, and how far it is from another set.

use serde::{Deserialize, Serialize};

use crate::histogram::{Histogram, confidence_edges, length_edges, shares};
use crate::psi::psi;

/// One served prediction, as monitoring sees it (no text).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// The predicted label's index in the model's labels.
    pub label: usize,
    /// The predicted label's probability.
    pub confidence: f32,
    /// Word pieces of the cleaned text, before truncation or windows.
    pub tokens: u32,
    /// Of those, how many were the tokenizer's unknown token.
    pub unknown: u32,
    /// Whether the text was longer than the model reads in one pass.
    pub over_max_length: bool,
}

/// Counts over a set of predictions: per label, confidence and length histograms, and the
/// sums behind the means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub predictions: u64,
    pub label_counts: Vec<u64>,
    pub confidence: Histogram,
    pub length: Histogram,
    pub confidence_sum: f64,
    pub over_max_length: u64,
    pub tokens: u64,
    pub unknown_tokens: u64,
}

/// The PSI of each feature of a profile against a reference profile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    pub label: f64,
    pub confidence: f64,
    pub length: f64,
}

impl Drift {
    /// The largest of the three: what an alert watches.
    pub fn max(&self) -> f64 {
        self.label.max(self.confidence).max(self.length)
    }
}

impl Profile {
    /// An empty profile for a model with `labels` labels.
    pub fn new(labels: usize) -> Self {
        Self {
            predictions: 0,
            label_counts: vec![0; labels],
            confidence: Histogram::new(confidence_edges(labels)),
            length: Histogram::new(length_edges()),
            confidence_sum: 0.0,
            over_max_length: 0,
            tokens: 0,
            unknown_tokens: 0,
        }
    }

    pub fn of<'a>(labels: usize, observations: impl IntoIterator<Item = &'a Observation>) -> Self {
        let mut p = Self::new(labels);
        for o in observations {
            p.add(o);
        }
        p
    }

    /// Counts one prediction; a label outside the model's is ignored.
    pub fn add(&mut self, o: &Observation) {
        let Some(count) = self.label_counts.get_mut(o.label) else {
            return;
        };
        *count += 1;
        self.predictions += 1;
        self.confidence.add(f64::from(o.confidence));
        self.length.add(f64::from(o.tokens));
        self.confidence_sum += f64::from(o.confidence);
        self.over_max_length += u64::from(o.over_max_length);
        self.tokens += u64::from(o.tokens);
        self.unknown_tokens += u64::from(o.unknown);
    }

    pub fn label_shares(&self) -> Vec<f64> {
        shares(&self.label_counts)
    }

    pub fn mean_confidence(&self) -> Option<f64> {
        (self.predictions > 0).then(|| self.confidence_sum / self.predictions as f64)
    }

    pub fn over_max_length_share(&self) -> Option<f64> {
        (self.predictions > 0).then(|| self.over_max_length as f64 / self.predictions as f64)
    }

    pub fn unknown_token_rate(&self) -> Option<f64> {
        (self.tokens > 0).then(|| self.unknown_tokens as f64 / self.tokens as f64)
    }

    /// This profile's drift from `reference`: `None` when either is empty or they do not
    /// compare (another number of labels, other bins).
    pub fn drift_from(&self, reference: &Profile) -> Option<Drift> {
        let comparable = self.label_counts.len() == reference.label_counts.len()
            && self.confidence.same_bins(&reference.confidence)
            && self.length.same_bins(&reference.length);
        if !comparable || self.predictions == 0 || reference.predictions == 0 {
            return None;
        }
        Some(Drift {
            label: psi(&reference.label_shares(), &self.label_shares()),
            confidence: psi(&reference.confidence.shares(), &self.confidence.shares()),
            length: psi(&reference.length.shares(), &self.length.shares()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(label: usize, confidence: f32, tokens: u32) -> Observation {
        Observation {
            label,
            confidence,
            tokens,
            unknown: tokens / 10,
            over_max_length: tokens > 512,
        }
    }

    #[test]
    fn a_profile_counts_what_it_saw() {
        let p = Profile::of(2, &[obs(0, 0.9, 40), obs(1, 0.7, 600), obs(5, 0.9, 1)]);
        assert_eq!(
            p.predictions, 2,
            "a label outside the model's is not counted"
        );
        assert_eq!(p.label_shares(), vec![0.5, 0.5]);
        assert!((p.mean_confidence().unwrap() - 0.8).abs() < 1e-6);
        assert_eq!(p.over_max_length_share(), Some(0.5));
        assert!((p.unknown_token_rate().unwrap() - 64.0 / 640.0).abs() < 1e-12);
    }

    #[test]
    fn the_same_traffic_does_not_drift_and_a_shifted_one_does() {
        let reference: Vec<Observation> = (0..1000)
            .map(|i| obs(i % 2, 0.6 + (i % 40) as f32 / 100.0, 50 + (i % 200) as u32))
            .collect();
        let r = Profile::of(2, &reference);
        let same = Profile::of(2, &reference[..500]);
        let d = same.drift_from(&r).unwrap();
        // A part of the same traffic: sampling noise only, far below the warning level.
        assert!(d.max() < crate::PSI_WARN / 2.0, "{d:?}");
        // Short, uncertain, mostly-negative texts: every feature moves.
        let shifted: Vec<Observation> = (0..500)
            .map(|i| {
                obs(
                    usize::from(i % 5 == 0),
                    0.55 + (i % 5) as f32 / 100.0,
                    5 + (i % 20) as u32,
                )
            })
            .collect();
        let d = Profile::of(2, &shifted).drift_from(&r).unwrap();
        assert!(d.label > crate::PSI_ALERT, "{d:?}");
        assert!(d.confidence > crate::PSI_ALERT, "{d:?}");
        assert!(d.length > crate::PSI_ALERT, "{d:?}");
    }

    #[test]
    fn profiles_of_other_label_sets_do_not_compare() {
        let two = Profile::of(2, &[obs(0, 0.9, 10)]);
        let three = Profile::of(3, &[obs(0, 0.9, 10)]);
        assert_eq!(three.drift_from(&two), None);
        assert_eq!(Profile::new(2).drift_from(&two), None);
    }
}
