//! Classification metrics from true and predicted classes: accuracy, balanced accuracy,
//! precision, recall and F1 of the positive class, every class's recall, macro F1, and the
//! confusion matrix.

use serde::{Deserialize, Serialize};

/// Metrics of one evaluation. Undefined ratios (no predicted or no true positives) are 0, as
/// scikit-learn's `zero_division=0`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationMetrics {
    pub accuracy: f64,
    /// Of the positive class.
    pub precision: f64,
    pub recall: f64,
    pub f1_score: f64,
    /// Unweighted mean of every class's F1.
    pub macro_f1: f64,
    /// Unweighted mean of every class's recall: what accuracy would be on balanced data, so
    /// a model that favours the majority class cannot hide behind it.
    #[serde(default)]
    pub balanced_accuracy: f64,
    /// Recall of each class, in class-index order.
    #[serde(default)]
    pub recall_per_class: Vec<f64>,
    /// `confusion_matrix[true][predicted]`.
    pub confusion_matrix: Vec<Vec<u64>>,
    /// Examples per true class.
    pub support: Vec<u64>,
    pub examples: u64,
    /// Mean cross-entropy, when the caller had logits.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub loss: Option<f64>,
    /// Expected calibration error ([`crate::calibration`]), when the caller had
    /// probabilities.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ece: Option<f64>,
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn f1(precision: f64, recall: f64) -> f64 {
    if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    }
}

impl ClassificationMetrics {
    /// Metrics of `predicted` against `truth` over `num_classes` classes; `positive` is the
    /// class whose precision, recall and F1 are reported.
    ///
    /// # Panics
    /// If the slices differ in length or a class is out of range: both are caller bugs.
    pub fn compute(
        truth: &[usize],
        predicted: &[usize],
        num_classes: usize,
        positive: usize,
    ) -> Self {
        assert_eq!(truth.len(), predicted.len(), "one prediction per example");
        let mut cm = vec![vec![0u64; num_classes]; num_classes];
        for (&t, &p) in truth.iter().zip(predicted) {
            cm[t][p] += 1;
        }
        let n = truth.len() as u64;
        let correct: u64 = (0..num_classes).map(|c| cm[c][c]).sum();
        let per_class = |c: usize| {
            let tp = cm[c][c];
            let predicted_c: u64 = (0..num_classes).map(|t| cm[t][c]).sum();
            let true_c: u64 = cm[c].iter().sum();
            let (p, r) = (ratio(tp, predicted_c), ratio(tp, true_c));
            (p, r, f1(p, r))
        };
        let (precision, recall, f1_score) = per_class(positive);
        let macro_f1 = (0..num_classes).map(|c| per_class(c).2).sum::<f64>() / num_classes as f64;
        let recall_per_class: Vec<f64> = (0..num_classes).map(|c| per_class(c).1).collect();
        Self {
            accuracy: ratio(correct, n),
            precision,
            recall,
            f1_score,
            macro_f1,
            balanced_accuracy: recall_per_class.iter().sum::<f64>() / num_classes as f64,
            recall_per_class,
            support: cm.iter().map(|row| row.iter().sum()).collect(),
            confusion_matrix: cm,
            examples: n,
            loss: None,
            ece: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hand_computed_binary_metrics() {
        // tp=3 fn=1 fp=2 tn=4
        let truth = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0];
        let pred = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0];
        let m = ClassificationMetrics::compute(&truth, &pred, 2, 1);
        assert_eq!(m.confusion_matrix, vec![vec![4, 2], vec![1, 3]]);
        assert!((m.accuracy - 0.7).abs() < 1e-12);
        assert!((m.precision - 0.6).abs() < 1e-12);
        assert!((m.recall - 0.75).abs() < 1e-12);
        let f1_pos = 2.0 * 0.6 * 0.75 / 1.35;
        assert!((m.f1_score - f1_pos).abs() < 1e-12);
        let f1_neg = 2.0 * 0.8 * (4.0 / 6.0) / (0.8 + 4.0 / 6.0);
        assert!((m.macro_f1 - (f1_pos + f1_neg) / 2.0).abs() < 1e-12);
        assert_eq!(m.support, vec![6, 4]);
        assert_eq!(m.recall_per_class, vec![4.0 / 6.0, 0.75]);
        assert!((m.balanced_accuracy - (4.0 / 6.0 + 0.75) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn no_positive_predictions_give_zero_not_nan() {
        let m = ClassificationMetrics::compute(&[1, 0], &[0, 0], 2, 1);
        assert_eq!(m.precision, 0.0);
        assert_eq!(m.f1_score, 0.0);
        assert!(m.macro_f1.is_finite());
    }
}
