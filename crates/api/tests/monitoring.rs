//! The prediction log, feedback and drift monitoring over HTTP, with a tiny model and a
//! SQLite log in a temporary folder.

mod common;

use std::path::Path;

use classifier::testing::TinySize;
use common::{Server, TEXTS, assert_error, tiny_model};
use monitoring::{Observation, REFERENCE_FILE, Reference};
use serde_json::{Value, json};

impl Server {
    async fn feedback(&self, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}/feedback", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn predict_from(&self, body: Value, source: &str) -> (u16, Vec<String>, Value) {
        let r = self
            .client
            .post(format!("{}/predict", self.url))
            .header("x-prediction-source", source)
            .json(&body)
            .send()
            .await
            .unwrap();
        let ids = r
            .headers()
            .get("x-prediction-ids")
            .map(|v| v.to_str().unwrap().split(',').map(str::to_string).collect())
            .unwrap_or_default();
        (r.status().as_u16(), ids, r.json().await.unwrap())
    }

    async fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
}

/// The log's corrections, read as preprocess reads them (outside the runtime).
async fn read_corrections(url: String) -> prediction_log::Corrections {
    tokio::task::spawn_blocking(move || prediction_log::read_corrections(&url))
        .await
        .unwrap()
        .unwrap()
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("results/predictions.db").display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictions_are_logged_with_ids_and_can_be_corrected() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), TinySize::default());
    let url = sqlite_url(dir.path());
    let s = Server::ready(&model, &["--prediction-log", &url]).await;

    let (status, ids, one) = s.predict_from(json!({"text": TEXTS[0]}), "api").await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(ids.len(), 1);
    assert_eq!(one["id"], json!(ids[0]), "the body carries the id too");
    let (status, many, answers) = s
        .predict_from(json!({"inputs": [TEXTS[1], TEXTS[2], TEXTS[3]]}), "ui")
        .await;
    assert_eq!((status, many.len()), (200, 3));
    let (status, _, body) = s.predict_from(json!({"text": "x"}), "robot").await;
    assert_error(status, &body, 422, "validation");

    // Corrected at once: the row may still be in the write buffer, and is waited for.
    let predicted = one["sentiment"].as_str().unwrap();
    let other = if predicted == "positive" {
        "negative"
    } else {
        "positive"
    };
    let (status, fb) = s.feedback(json!({"id": ids[0], "label": other})).await;
    assert_eq!(status, 200, "{fb}");
    assert_eq!(
        (fb["predicted"].as_str(), fb["correct"].as_bool()),
        (Some(predicted), Some(false))
    );
    // The model's own label for TEXTS[1] (the top of its sorted scores), confirmed.
    let right = answers[0][0]["label"].as_str().unwrap().to_string();
    let (status, fb) = s.feedback(json!({"id": many[0], "label": right})).await;
    assert_eq!((status, fb["correct"].as_bool()), (200, Some(true)), "{fb}");

    let unknown = "01939d2e-7a4b-7c3e-9f1a-2b3c4d5e6f70";
    let (status, body) = s
        .feedback(json!({"id": unknown, "label": "positive"}))
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = s
        .feedback(json!({"id": "1 OR 1=1", "label": "positive"}))
        .await;
    assert_error(status, &body, 422, "validation");
    let (status, body) = s.feedback(json!({"id": ids[0], "label": "great"})).await;
    assert_error(status, &body, 422, "validation");
    assert!(
        body["error"].as_str().unwrap().contains("negative"),
        "{body}"
    );
    let (status, body) = s.feedback(json!({"id": ids[0]})).await;
    assert_error(status, &body, 422, "validation");

    let m = s.json("/monitoring?hours=1&buckets=6").await;
    let range = &m["range"];
    assert_eq!(range["rows"], 4, "{m}");
    assert_eq!(range["buckets"].as_array().unwrap().len(), 6);
    assert_eq!(range["feedback"]["received"], 2, "{m}");
    assert_eq!(m["window"]["predictions"], 4);
    let (_, metrics) = s.get("/metrics").await;
    assert_eq!(metric(&metrics, "prediction_log_rows_written_total"), 4.0);
    assert_eq!(metric(&metrics, "prediction_log_rows_dropped_total"), 0.0);
    assert_eq!(metric(&metrics, "feedback_total{correct=\"false\"}"), 1.0);
    assert_eq!(metric(&metrics, "feedback_total{correct=\"true\"}"), 1.0);
    assert_eq!(metric(&metrics, "monitor_window_predictions"), 4.0);
    s.stop().await;

    // What the log holds, read as preprocess reads it.
    let corrections = read_corrections(url).await;
    let texts: Vec<(&str, &str)> = corrections
        .examples
        .iter()
        .map(|c| (c.text.as_str(), c.label.as_str()))
        .collect();
    assert_eq!(texts, vec![(TEXTS[0], other), (TEXTS[1], right.as_str())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_log_text_only_the_hash_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), TinySize::default());
    let url = sqlite_url(dir.path());
    let s = Server::ready(&model, &["--prediction-log", &url, "--log-text", "false"]).await;
    let (_, ids, _) = s.predict_from(json!({"text": TEXTS[4]}), "api").await;
    let (status, _) = s.feedback(json!({"id": ids[0], "label": "positive"})).await;
    assert_eq!(status, 200);
    s.stop().await;
    let c = read_corrections(url).await;
    assert_eq!((c.examples.len(), c.without_text), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_down_never_fails_a_prediction() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), TinySize::default());
    // Nothing listens on port 1.
    let down = "postgres://sentiment:secret@127.0.0.1:1/log";
    let s = Server::ready(
        &model,
        &["--prediction-log", down, "--prediction-log-buffer", "2"],
    )
    .await;
    for text in TEXTS {
        let (status, ids, body) = s.predict_from(json!({"text": text}), "api").await;
        assert_eq!((status, ids.len()), (200, 1), "{body}");
    }
    let (_, metrics) = s.get("/metrics").await;
    assert!(
        metric(&metrics, "prediction_log_rows_dropped_total") >= 6.0,
        "{metrics}"
    );
    let (_, ids, _) = s.predict_from(json!({"text": TEXTS[0]}), "api").await;
    let (status, body) = s.feedback(json!({"id": ids[0], "label": "positive"})).await;
    assert_error(status, &body, 503, "unhealthy");
    let m = s.json("/monitoring").await;
    assert!(
        m["log_error"].as_str().unwrap().contains("not reachable"),
        "{m}"
    );
    assert!(
        !m.to_string().contains("secret"),
        "no password in answers: {m}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_scored_against_the_models_reference() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), TinySize::default());
    // A reference of long, confidently positive texts; the traffic below is short.
    let long_positive = Observation {
        label: 1,
        confidence: 0.99,
        tokens: 300,
        unknown: 0,
        over_max_length: false,
    };
    let labels = vec!["negative".to_string(), "positive".to_string()];
    let reference = Reference::new(
        labels,
        "validation.csv (50 rows)".into(),
        &[long_positive; 50],
    );
    std::fs::write(model.join(REFERENCE_FILE), reference.to_json()).unwrap();
    let s = Server::ready(&model, &[]).await;
    for text in TEXTS {
        s.predict(json!({"text": text})).await;
    }
    let m = s.json("/monitoring").await;
    assert_eq!(m["reference"], "validation.csv (50 rows)");
    assert_eq!(
        (m["logging"].as_bool(), m["range"].is_null()),
        (Some(false), true)
    );
    let length = m["window"]["drift"]["length"].as_f64().unwrap();
    assert!(length > 0.25, "{m}");
    let (_, metrics) = s.get("/metrics").await;
    assert!(metric(&metrics, "monitor_drift_psi{feature=\"length\"}") > 0.25);
    assert_eq!(metric(&metrics, "monitor_window_predictions"), 8.0);
    let (status, body) = s
        .feedback(json!({"id": "01939d2e-7a4b-7c3e-9f1a-2b3c4d5e6f70", "label": "positive"}))
        .await;
    assert_error(status, &body, 501, "not_enabled");
    s.stop().await;
}
