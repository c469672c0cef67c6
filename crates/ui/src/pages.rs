//! The pages: what each shows, rendered by askama templates (which escape every value).

use api_types::{Info, TrainingLog};
use askama::Template;
use serde_json::Value;

use crate::batch::{Classified, PreviewRow};
use crate::charts::{Series, confusion_matrix, line_chart};
use crate::client::ApiStatus;
use crate::session::Analysis;

/// The strip under the header when the model service is not ready.
pub struct Banner {
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
}

impl Banner {
    pub fn from_status(status: &ApiStatus) -> Option<Self> {
        match status {
            ApiStatus::Ready => None,
            ApiStatus::Starting(detail) => Some(Self {
                kind: "warn",
                title: "The model service is starting.",
                detail: detail.clone(),
            }),
            ApiStatus::Unreachable(detail) => Some(Self {
                kind: "down",
                title: "The model service is unreachable.",
                detail: detail.clone(),
            }),
        }
    }
}

/// Example texts offered on the Analyze page: (kind, text).
pub const EXAMPLES: [(&str, &str); 6] = [
    (
        "review",
        "One of the best films I have seen in years: sharp writing, a moving score and a cast at the top of their game.",
    ),
    (
        "review",
        "Two hours I will never get back. The plot makes no sense and the ending is lazy.",
    ),
    (
        "review",
        "The acting is fine, but the story drags and the jokes mostly fall flat.",
    ),
    (
        "tweet",
        "@united lost my bag again and nobody at the desk could tell me anything #fail",
    ),
    (
        "tweet",
        "Just got the new phone and the camera is amazing, best upgrade ever! 😍",
    ),
    (
        "tweet",
        "Self-driving cars would make my commute so much easier #future",
    ),
];

#[derive(Template)]
#[template(path = "analyze.html")]
pub struct AnalyzePage {
    pub page: &'static str,
    pub banner: Option<Banner>,
    pub api_url: String,
    pub error: Option<String>,
    pub text: String,
    pub latest: Option<Analysis>,
    pub history: Vec<Analysis>,
    pub examples: Vec<(&'static str, &'static str)>,
}

/// The column picker shown when an upload lacks the requested column.
pub struct ColumnPick {
    pub upload: String,
    pub file_name: String,
    pub wanted: String,
    pub columns: Vec<String>,
}

pub struct BatchView {
    pub file_name: String,
    pub rows: usize,
    pub empty: usize,
    pub counts: Vec<(String, usize)>,
    pub preview: Vec<PreviewRow>,
    pub download: String,
}

impl BatchView {
    pub fn new(file_name: String, c: &Classified, download: String) -> Self {
        Self {
            file_name,
            rows: c.rows,
            empty: c.empty,
            counts: c.counts.clone(),
            preview: c.preview.clone(),
            download,
        }
    }
}

#[derive(Template)]
#[template(path = "batch.html")]
pub struct BatchPage {
    pub page: &'static str,
    pub banner: Option<Banner>,
    pub api_url: String,
    pub error: Option<String>,
    pub pick: Option<ColumnPick>,
    pub result: Option<BatchView>,
    pub max_upload_mb: usize,
    pub max_rows: usize,
    /// What sending a corrections file did.
    pub feedback: Option<crate::batch::FeedbackSummary>,
}

#[derive(Template)]
#[template(path = "model.html")]
pub struct ModelPage {
    pub page: &'static str,
    pub banner: Option<Banner>,
    pub api_url: String,
    pub error: Option<String>,
    pub info: Option<Info>,
    pub parameters: String,
    pub metrics: Vec<(String, String)>,
    pub metrics_note: String,
    /// SVG markup built by [`crate::charts`], which escapes every label.
    pub confusion: Option<String>,
    pub per_source: Vec<(String, u64, String, String)>,
    pub loss_chart: Option<String>,
    pub eval_chart: Option<String>,
    /// Confidence against accuracy on the test split, before and after calibration.
    pub reliability_chart: Option<String>,
    pub calibration_note: String,
    /// The kept model versions (GET /models), newest first.
    pub versions: Vec<VersionRow>,
}

/// One row of the versions table.
pub struct VersionRow {
    pub id: String,
    pub base_model: String,
    pub validation_f1: String,
    pub test_f1: String,
    pub test_accuracy: String,
    pub serving: bool,
    pub was_promoted: bool,
}

impl VersionRow {
    /// The versions newest first, as the table shows them.
    pub fn rows(versions: &api_types::ModelVersions) -> Vec<Self> {
        let num = |x: Option<f64>| x.map_or_else(|| "–".into(), |x| format!("{x:.3}"));
        versions
            .versions
            .iter()
            .rev()
            .map(|v| Self {
                id: v.id.clone(),
                base_model: v.base_model.clone(),
                validation_f1: num(Some(v.validation_macro_f1)),
                test_f1: num(v.test_macro_f1),
                test_accuracy: num(v.test_accuracy),
                serving: v.serving,
                was_promoted: v.was_promoted,
            })
            .collect()
    }
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map(|x| format!("{:.1}%", 100.0 * x))
        .unwrap_or_else(|| "–".into())
}

impl ModelPage {
    /// Fills the page from /info and /training.
    pub fn build(&mut self, info: Option<Info>, log: Option<TrainingLog>) {
        if let Some(i) = &info {
            self.parameters = i
                .parameters
                .map(|p| format!("{:.1}M", p as f64 / 1e6))
                .unwrap_or_else(|| "–".into());
        }
        if let Some(m) = info.as_ref().and_then(|i| i.training_metrics.as_ref()) {
            let served = info.as_ref().map(|i| i.labels.clone());
            self.test_metrics(m, served);
        }
        if let Some(log) = log {
            self.charts(&log);
        }
        self.info = info;
    }

    /// What metrics.json says: the stats, a note on the data, calibration, the confusion
    /// matrix (labels from the metrics, else the served model's) and each source's figures.
    fn test_metrics(&mut self, m: &Value, served_labels: Option<Vec<String>>) {
        self.metric_stats(m);
        let examples = m["examples"]
            .as_u64()
            .map_or_else(|| "?".to_string(), |n| format!("{n} examples"));
        self.metrics_note = format!(
            "Computed on held-out data: {}; kept {}.",
            m["split"].as_str().map_or(examples, str::to_string),
            m["selection"].as_str().map_or_else(
                || format!("epoch {}", m["epoch"].as_u64().unwrap_or(0)),
                str::to_string
            ),
        );
        self.reliability(&m["calibration"]);
        let labels: Vec<String> = m["labels"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .or(served_labels)
            .unwrap_or_default();
        let matrix: Option<Vec<Vec<u64>>> =
            serde_json::from_value(m["confusion_matrix"].clone()).ok();
        self.confusion = matrix.and_then(|cm| confusion_matrix(&labels, &cm));
        for (name, s) in m["per_source"].as_object().into_iter().flatten() {
            let name = if name.is_empty() { "(none)" } else { name };
            self.per_source.push((
                name.to_string(),
                s["examples"].as_u64().unwrap_or(0),
                pct(&s["accuracy"]),
                pct(&s["f1_score"]),
            ));
        }
    }

    /// The loss curve by step and validation accuracy / macro F1 by epoch, from the run log.
    fn charts(&mut self, log: &TrainingLog) {
        let get = |r: &Value, k: &str| r[k].as_f64();
        let points = |kind: &str, x: &str, y: &str| -> Vec<(f64, f64)> {
            log.records
                .iter()
                .filter(|r| r["type"] == kind)
                .filter_map(|r| Some((get(r, x)?, get(r, y)?)))
                .collect()
        };
        let series = |name: &str, color: &'static str, points| Series {
            name: name.into(),
            color,
            points,
        };
        self.loss_chart = line_chart(
            "Training loss by optimizer step",
            "optimizer step",
            &[
                series("train loss", "#0969da", points("train", "step", "loss")),
                series("validation loss", "#bf3989", points("eval", "step", "loss")),
            ],
        );
        self.eval_chart = line_chart(
            "Validation accuracy and macro F1 by epoch",
            "epoch",
            &[
                series("accuracy", "#1a7f37", points("eval", "epoch", "accuracy")),
                series("macro F1", "#9a6700", points("eval", "epoch", "macro_f1")),
            ],
        );
    }
}

impl ModelPage {
    /// The grid of test metrics from metrics.json: the headline figures, each class's recall
    /// and the loss.
    fn metric_stats(&mut self, m: &Value) {
        for (key, name) in [
            ("accuracy", "Accuracy"),
            ("balanced_accuracy", "Balanced accuracy"),
            ("precision", "Precision"),
            ("recall", "Recall"),
            ("f1_score", "F1"),
            ("macro_f1", "Macro F1"),
            ("ece", "Calibration error (ECE)"),
        ] {
            if m.get(key).is_some() {
                self.metrics.push((name.into(), pct(&m[key])));
            }
        }
        let class_names = m["labels"].as_array().cloned().unwrap_or_default();
        if let Some(recalls) = m["recall_per_class"].as_array() {
            for (label, r) in class_names.iter().zip(recalls) {
                let label = label.as_str().unwrap_or("?");
                self.metrics.push((format!("Recall of {label}"), pct(r)));
            }
        }
        if let Some(l) = m["loss"].as_f64() {
            self.metrics.push(("Loss".into(), format!("{l:.4}")));
        }
    }

    /// The reliability diagram and its note from metrics.json's `calibration`.
    fn reliability(&mut self, c: &Value) {
        let Some(t) = c["temperature"].as_f64() else {
            return;
        };
        let points = |key: &str| -> Vec<(f64, f64)> {
            c[key]["bins"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|b| b["count"].as_u64().unwrap_or(0) > 0)
                .filter_map(|b| Some((b["confidence"].as_f64()?, b["accuracy"].as_f64()?)))
                .collect()
        };
        self.reliability_chart = line_chart(
            "Accuracy against confidence on the test split",
            "confidence",
            &[
                Series {
                    name: "perfectly calibrated".into(),
                    color: "#6e7781",
                    points: vec![(0.5, 0.5), (1.0, 1.0)],
                },
                Series {
                    name: "raw softmax".into(),
                    color: "#bf3989",
                    points: points("test_reliability_before"),
                },
                Series {
                    name: format!("served (temperature {t:.2})"),
                    color: "#0969da",
                    points: points("test_reliability"),
                },
            ],
        );
        self.calibration_note = format!(
            "Confidences are softmax(logits / {t:.3}), the temperature fitted on {}. Expected calibration error on test: {:.3} raw, {:.3} served.",
            c["fitted_on"].as_str().unwrap_or("validation data"),
            c["test_ece_before"].as_f64().unwrap_or(f64::NAN),
            c["test_ece_after"].as_f64().unwrap_or(f64::NAN),
        );
    }
}

/// Label scores in the model's order, for the Analyze page.
pub fn analysis(text: &str, r: api_types::PredictResponse) -> Analysis {
    Analysis {
        text: text.to_string(),
        label: r.sentiment,
        confidence: r.confidence,
        scores: r.scores,
        id: r.id,
        feedback: None,
    }
}
