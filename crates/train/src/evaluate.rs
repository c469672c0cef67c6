//! Evaluation on held-out data: metrics over all examples and per source, with the loss and
//! the expected calibration error.

use std::collections::BTreeMap;

use anyhow::Result;
use classifier::calibration::Calibration;
use classifier::dataset::{Example, positive_class};
use classifier::{ClassificationMetrics, Classifier, Prediction};
use serde::{Deserialize, Serialize};

/// Metrics of one evaluation: overall (flattened) and per source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    #[serde(flatten)]
    pub overall: ClassificationMetrics,
    pub per_source: BTreeMap<String, ClassificationMetrics>,
}

fn metrics_of(
    preds: &[&Prediction],
    labels: &[usize],
    classes: &[String],
) -> ClassificationMetrics {
    let predicted: Vec<usize> = preds.iter().map(|p| p.class).collect();
    let positive = positive_class(classes);
    let mut m = ClassificationMetrics::compute(labels, &predicted, classes.len(), positive);
    let loss: f64 = preds
        .iter()
        .zip(labels)
        .map(|(p, &l)| -f64::from(p.probabilities[l]).max(1e-12).ln())
        .sum::<f64>()
        / labels.len().max(1) as f64;
    m.loss = Some(loss);
    m.ece = Some(calibration(preds, labels).ece);
    m
}

/// Confidence against correctness of `preds`.
pub fn calibration(preds: &[&Prediction], labels: &[usize]) -> Calibration {
    Calibration::of(
        preds
            .iter()
            .zip(labels)
            .map(|(p, &l)| (p.confidence(), p.class == l)),
    )
}

/// Metrics of `predictions` against `examples` (same order) over the named `classes`.
pub fn score(predictions: &[Prediction], examples: &[Example], classes: &[String]) -> Evaluation {
    let all: Vec<&Prediction> = predictions.iter().collect();
    let labels: Vec<usize> = examples.iter().map(|e| e.label).collect();
    let overall = metrics_of(&all, &labels, classes);
    let mut by_source: BTreeMap<&str, (Vec<&Prediction>, Vec<usize>)> = BTreeMap::new();
    for (p, e) in predictions.iter().zip(examples) {
        let entry = by_source.entry(e.source.as_str()).or_default();
        entry.0.push(p);
        entry.1.push(e.label);
    }
    let per_source = by_source
        .into_iter()
        .map(|(s, (p, l))| (s.to_string(), metrics_of(&p, &l, classes)))
        .collect();
    Evaluation {
        overall,
        per_source,
    }
}

/// Classifies the (already tokenized) examples and scores the predictions.
pub fn evaluate(clf: &Classifier, ids: &[Vec<u32>], examples: &[Example]) -> Result<Evaluation> {
    let preds = clf.predict_ids(ids)?;
    Ok(score(&preds, examples, clf.labels()))
}
