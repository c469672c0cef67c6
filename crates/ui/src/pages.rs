//! The pages: what each shows, rendered by askama templates (which escape every value).

use api_types::{Info, LabelScore, TrainingLog};
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
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map(|x| format!("{:.1}%", 100.0 * x))
        .unwrap_or_else(|| "–".into())
}

impl ModelPage {
    /// Fills the page from /info and /training.
    pub fn build(&mut self, info: Option<Info>, log: Option<TrainingLog>) {
        let metrics = info.as_ref().and_then(|i| i.training_metrics.clone());
        if let Some(i) = &info {
            self.parameters = i
                .parameters
                .map(|p| format!("{:.1}M", p as f64 / 1e6))
                .unwrap_or_else(|| "–".into());
        }
        if let Some(m) = &metrics {
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
                .or_else(|| info.as_ref().map(|i| i.labels.clone()))
                .unwrap_or_default();
            let matrix: Option<Vec<Vec<u64>>> =
                serde_json::from_value(m["confusion_matrix"].clone()).ok();
            self.confusion = matrix.and_then(|cm| confusion_matrix(&labels, &cm));
            if let Some(sources) = m["per_source"].as_object() {
                for (name, s) in sources {
                    self.per_source.push((
                        if name.is_empty() {
                            "(none)".into()
                        } else {
                            name.clone()
                        },
                        s["examples"].as_u64().unwrap_or(0),
                        pct(&s["accuracy"]),
                        pct(&s["f1_score"]),
                    ));
                }
            }
        }
        if let Some(log) = log {
            let get = |r: &Value, k: &str| r[k].as_f64();
            let train: Vec<(f64, f64)> = log
                .records
                .iter()
                .filter(|r| r["type"] == "train")
                .filter_map(|r| Some((get(r, "step")?, get(r, "loss")?)))
                .collect();
            let evals: Vec<&Value> = log.records.iter().filter(|r| r["type"] == "eval").collect();
            let eval_loss: Vec<(f64, f64)> = evals
                .iter()
                .filter_map(|r| Some((get(r, "step")?, get(r, "loss")?)))
                .collect();
            self.loss_chart = line_chart(
                "Training loss by optimizer step",
                "optimizer step",
                &[
                    Series {
                        name: "train loss".into(),
                        color: "#0969da",
                        points: train,
                    },
                    Series {
                        name: "validation loss".into(),
                        color: "#bf3989",
                        points: eval_loss,
                    },
                ],
            );
            let per_epoch = |k: &str| -> Vec<(f64, f64)> {
                evals
                    .iter()
                    .filter_map(|r| Some((get(r, "epoch")?, get(r, k)?)))
                    .collect()
            };
            self.eval_chart = line_chart(
                "Validation accuracy and macro F1 by epoch",
                "epoch",
                &[
                    Series {
                        name: "accuracy".into(),
                        color: "#1a7f37",
                        points: per_epoch("accuracy"),
                    },
                    Series {
                        name: "macro F1".into(),
                        color: "#9a6700",
                        points: per_epoch("macro_f1"),
                    },
                ],
            );
        }
        self.info = info;
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
pub fn analysis(text: &str, label: String, confidence: f32, scores: Vec<LabelScore>) -> Analysis {
    Analysis {
        text: text.to_string(),
        label,
        confidence,
        scores,
    }
}
