//! The ui against a stub api that can be told to fail: every page, every failure, escaping.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Parser;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// How the stub api behaves.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Ok,
    Starting,
    Busy,
}

#[derive(Clone)]
struct Stub {
    mode: Arc<Mutex<Mode>>,
    /// Every prediction's id is its text; corrections received, as (id, label).
    feedback: Arc<Mutex<Vec<(String, String)>>>,
}

/// The prediction-log ids the stub gives: the text itself, so feedback can be checked.
fn ids_header(texts: &[&str]) -> [(&'static str, String); 1] {
    [("x-prediction-ids", texts.join(","))]
}

fn scores(text: &str) -> (String, f32) {
    // Positive iff the text contains "good" or "great": enough to check wiring.
    let pos = text.contains("good") || text.contains("great");
    if pos {
        ("positive".into(), 0.9)
    } else {
        ("negative".into(), 0.8)
    }
}

async fn stub_health(State(s): State<Stub>) -> Response {
    match *s.mode.lock().unwrap() {
        Mode::Starting => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "loading"})),
        )
            .into_response(),
        _ => Json(json!({"status": "ok"})).into_response(),
    }
}

async fn stub_predict(State(s): State<Stub>, Json(body): Json<Value>) -> Response {
    match *s.mode.lock().unwrap() {
        Mode::Starting => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "the model is still loading", "error_type": "unhealthy"})),
            )
                .into_response();
        }
        Mode::Busy => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({"error": "the model queue is full", "error_type": "overloaded"})),
            )
                .into_response();
        }
        Mode::Ok => {}
    }
    let one = |t: &str| {
        let (label, p) = scores(t);
        let other = if label == "positive" {
            "negative"
        } else {
            "positive"
        };
        (label, p, other)
    };
    if let Some(t) = body["text"].as_str() {
        let (label, p, _) = one(t);
        let (neg, pos) = if label == "positive" {
            (1.0 - p, p)
        } else {
            (p, 1.0 - p)
        };
        let answer = json!({"sentiment": label, "confidence": p, "id": t, "scores": [
            {"label": "negative", "score": neg}, {"label": "positive", "score": pos}]});
        return (ids_header(&[t]), Json(answer)).into_response();
    }
    let texts: Vec<String> = serde_json::from_value(body["inputs"].clone()).unwrap();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let header = ids_header(&refs);
    let answer = Json(Value::Array(
        texts
            .iter()
            .map(|t| {
                let (label, p, other) = one(t);
                json!([{"label": label, "score": p}, {"label": other, "score": 1.0 - p}])
            })
            .collect(),
    ));
    (header, answer).into_response()
}

/// POST /feedback: known ids are texts the stub classified (any text: it keeps none), except
/// `unknown`, which it has never seen.
async fn stub_feedback(State(s): State<Stub>, Json(body): Json<Value>) -> Response {
    let (id, label) = (
        body["id"].as_str().unwrap(),
        body["label"].as_str().unwrap(),
    );
    if id == "unknown" {
        let e = json!({"error": "no logged prediction has the id `unknown`", "error_type": "not_found"});
        return (StatusCode::NOT_FOUND, Json(e)).into_response();
    }
    s.feedback.lock().unwrap().push((id.into(), label.into()));
    let predicted = scores(id).0;
    Json(
        json!({"id": id, "label": label, "predicted": predicted, "correct": predicted == label,
                "model_version": "v1"}),
    )
    .into_response()
}

/// GET /monitoring: 24 hourly buckets, the last two drifting.
async fn stub_monitoring(State(s): State<Stub>) -> Response {
    if *s.mode.lock().unwrap() == Mode::Starting {
        let e = json!({"error": "the model service is starting", "error_type": "unhealthy"});
        return (StatusCode::SERVICE_UNAVAILABLE, Json(e)).into_response();
    }
    let stats = |n: u64, neg: f64, psi: f64| {
        json!({"predictions": n, "label_shares": [neg, 1.0 - neg], "mean_confidence": 0.9 - psi / 4.0,
               "over_max_length_share": 0.01, "unknown_token_rate": 0.001,
               "drift": {"label": psi / 2.0, "confidence": psi / 3.0, "length": psi, "max": psi}})
    };
    let hour = 3_600_000i64;
    let buckets: Vec<Value> = (0..24)
        .map(|i| {
            let drifting = i >= 22;
            let psi = if drifting { 0.4 } else { 0.02 };
            json!({"start_ms": 1_000_000 + i * hour, "stats": stats(50, if drifting { 0.8 } else { 0.45 }, psi),
                   "feedback": {"received": 4, "correct": if drifting { 2 } else { 4 },
                                "accuracy": if drifting { 0.5 } else { 1.0 }}})
        })
        .collect();
    Json(json!({"labels": ["negative", "positive"], "model_version": "v1",
        "reference": "validation.csv (500 rows)", "psi_warn": 0.1, "psi_alert": 0.25,
        "window": stats(1000, 0.8, 0.4), "window_length_quantiles": [12, 40, 90],
        "logging": true, "log_error": null,
        "range": {"since_ms": 1_000_000, "bucket_seconds": 3600, "rows": 1200, "row_limit": 200000,
                  "overall": stats(1200, 0.5, 0.3), "feedback": {"received": 96, "correct": 92, "accuracy": 0.958},
                  "buckets": buckets}}))
    .into_response()
}

/// metrics.json's calibration record (its own `json!`: one literal exceeds the macro's
/// recursion limit).
fn calibration() -> Value {
    json!({"temperature": 1.7, "fitted_on": "validation.csv (500 rows)",
                "test_ece_before": 0.082, "test_ece_after": 0.031,
                "test_reliability_before": {"ece": 0.082, "bins": [
                    {"lower": 0.6, "upper": 0.667, "count": 20, "confidence": 0.63, "accuracy": 0.55},
                    {"lower": 0.933, "upper": 1.0, "count": 180, "confidence": 0.98, "accuracy": 0.93}]},
                "test_reliability": {"ece": 0.031, "bins": [
                    {"lower": 0.6, "upper": 0.667, "count": 40, "confidence": 0.62, "accuracy": 0.6},
                    {"lower": 0.667, "upper": 0.733, "count": 0, "confidence": 0.0, "accuracy": 0.0},
                    {"lower": 0.933, "upper": 1.0, "count": 160, "confidence": 0.95, "accuracy": 0.94}]}})
}

async fn stub_info() -> Json<Value> {
    Json(json!({
        "version": "0.1.0", "model_path": "model_output", "ready": true,
        "labels": ["negative", "positive"], "max_length": 256, "truncation": "head-tail",
        "base_model": "distilbert-base-uncased", "model_type": "distilbert", "parameters": 66955010,
        "cleaning": null,
        "training_metrics": {"accuracy": 0.91, "precision": 0.9, "recall": 0.92, "f1_score": 0.91,
            "macro_f1": 0.905, "loss": 0.25, "examples": 200, "epoch": 2,
            "labels": ["negative", "positive"], "confusion_matrix": [[90, 10], [8, 92]],
            "per_source": {"imdb": {"accuracy": 0.91, "f1_score": 0.91, "examples": 200}},
            "balanced_accuracy": 0.9075, "ece": 0.031, "recall_per_class": [0.9, 0.92],
            "selection": "epoch 2 of 2: the best macro F1 on validation.csv (500 rows)",
            "calibration": calibration()},
        "limits": {"max_inputs": 4, "max_body_bytes": 2097152, "max_batch_size": 32, "max_batch_tokens": 16384, "max_queue": 512}
    }))
}

async fn stub_training() -> Json<Value> {
    Json(json!({"summary": null, "records": [
        {"type": "train", "step": 10, "epoch": 0.5, "loss": 0.69, "lr": 1e-5, "grad_norm": 1.0, "examples_per_s": 5.0},
        {"type": "train", "step": 20, "epoch": 1.0, "loss": 0.45, "lr": 2e-5, "grad_norm": 1.0, "examples_per_s": 5.0},
        {"type": "eval", "step": 20, "epoch": 1, "accuracy": 0.88, "f1_score": 0.87, "loss": 0.3},
        {"type": "train", "step": 30, "epoch": 1.5, "loss": 0.31, "lr": 1e-5, "grad_norm": 1.0, "examples_per_s": 5.0},
        {"type": "eval", "step": 40, "epoch": 2, "accuracy": 0.91, "f1_score": 0.91, "loss": 0.25}
    ]}))
}

async fn stub_models() -> Json<Value> {
    let v = |id: &str, f1: f64, serving: bool, was_promoted: bool| {
        json!({"id": id, "created_at": "", "base_model": "distilbert-base-uncased",
               "labels": ["negative", "positive"], "validation_macro_f1": f1,
               "test_macro_f1": 0.9, "test_accuracy": null, "model_version": id,
               "was_promoted": was_promoted, "serving": serving})
    };
    Json(
        json!({"models_dir": "models", "promoted": "run-b", "serving_model_version": "run-b",
                "versions": [v("run-a", 0.85, false, true), v("run-b", 0.9123, true, true),
                             v("run-c", 0.8, false, false)]}),
    )
}

async fn start_stub(mode: Mode) -> (String, Stub) {
    let stub = Stub {
        mode: Arc::new(Mutex::new(mode)),
        feedback: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/health", get(stub_health))
        .route("/predict", post(stub_predict))
        .route("/info", get(stub_info))
        .route("/training", get(stub_training))
        .route("/models", get(stub_models))
        .route("/feedback", post(stub_feedback))
        .route("/monitoring", get(stub_monitoring))
        .with_state(stub.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, stub)
}

struct Ui {
    url: String,
    client: reqwest::Client,
}

async fn start_ui(api_url: &str) -> Ui {
    let args = ui::Args::parse_from(["ui", "--api-url", api_url, "--max-upload-mb", "1"]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(ui::serve(args, listener, std::future::pending()));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    Ui { url, client }
}

impl Ui {
    async fn get(&self, path: &str, cookie: Option<&str>) -> (u16, String) {
        let mut req = self.client.get(format!("{}{path}", self.url));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Posts the Analyze form; returns status, body, and the session cookie if one was set.
    async fn analyze(&self, text: &str, cookie: Option<&str>) -> (u16, String, Option<String>) {
        let mut req = self
            .client
            .post(format!("{}/analyze", self.url))
            .form(&[("text", text)]);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        let r = req.send().await.unwrap();
        let set = r
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string());
        (r.status().as_u16(), r.text().await.unwrap(), set)
    }

    /// Uploads a corrections file on the batch page.
    async fn send_corrections(&self, name: &str, bytes: &[u8]) -> (u16, String) {
        let part = reqwest::multipart::Part::bytes(bytes.to_vec()).file_name(name.to_string());
        let form = reqwest::multipart::Form::new().part("file", part);
        let url = format!("{}/batch/feedback", self.url);
        let r = self.client.post(url).multipart(form).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn upload(&self, name: &str, bytes: Vec<u8>, column: &str) -> (u16, String) {
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()),
            )
            .text("column", column.to_string());
        let r = self
            .client
            .post(format!("{}/batch", self.url))
            .multipart(form)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

#[tokio::test]
async fn analyze_shows_label_confidence_every_class_and_history() {
    let (api, _) = start_stub(Mode::Ok).await;
    let ui = start_ui(&api).await;
    let (status, page) = ui.get("/", None).await;
    assert_eq!(status, 200);
    assert!(page.contains("<label for=\"text\">") && page.contains("Try an example"));
    assert!(
        !page.contains("class=\"banner"),
        "no banner while the api is ready"
    );

    let (status, _, cookie) = ui.analyze("a great film", None).await;
    assert_eq!(status, 303, "post/redirect/get");
    let cookie = cookie.expect("a session cookie");
    let (_, page) = ui.get("/", Some(&cookie)).await;
    assert!(page.contains("verdict positive"));
    assert!(
        page.contains("90.0%") && page.contains("10.0%"),
        "confidence and the other class"
    );
    ui.analyze("a dull film", Some(&cookie)).await;
    let (_, page) = ui.get("/", Some(&cookie)).await;
    assert!(page.contains("verdict negative"));
    assert!(
        page.contains("This session") && page.contains("a great film"),
        "history"
    );
    // Another browser has its own history.
    let (_, other) = ui.get("/", None).await;
    assert!(!other.contains("a great film"));
}

#[tokio::test]
async fn user_text_is_escaped_everywhere() {
    let (api, _) = start_stub(Mode::Ok).await;
    let ui = start_ui(&api).await;
    let nasty = r#"<script>alert(1)</script> "><img src=x onerror=alert(2)>"#;
    let (_, _, cookie) = ui.analyze(nasty, None).await;
    let (_, page) = ui.get("/", Some(&cookie.unwrap())).await;
    assert!(
        !page.contains("<script>alert(1)"),
        "script tag must be escaped"
    );
    assert!(
        !page.contains("<img src=x"),
        "attribute breakout must be escaped"
    );
    // askama writes numeric character references.
    assert!(page.contains("&#60;script&#62;alert(1)&#60;/script&#62;"));
    assert!(page.contains("&#34;&#62;&#60;img src=x onerror=alert(2)&#62;"));

    // In a CSV upload too: cells and column names.
    let csv = format!(
        "text,\"<b>col</b>\"\n\"{}\",x\n",
        nasty.replace('"', "\"\"")
    );
    let (status, page) = ui.upload("<i>evil</i>.csv", csv.into_bytes(), "text").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        !page.contains("<script>alert(1)")
            && !page.contains("<img src=x")
            && !page.contains("<i>evil")
    );
    let (status, page) = ui
        .upload("x.csv", b"id,\"<b>col</b>\"\n1,2\n".to_vec(), "text")
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("&#60;b&#62;col&#60;/b&#62;") && !page.contains("<b>col</b>"));
}

#[tokio::test]
async fn empty_text_gets_a_message_not_a_call() {
    let (api, _) = start_stub(Mode::Ok).await;
    let ui = start_ui(&api).await;
    let (status, page, _) = ui.analyze("   ", None).await;
    assert_eq!(status, 422);
    assert!(page.contains("Please enter some text"));
}

#[tokio::test]
async fn the_api_being_down_starting_or_busy_is_explained() {
    // Down: nothing listens there.
    let ui = start_ui("http://127.0.0.1:9").await;
    let (status, page) = ui.get("/", None).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("The model service is unreachable")
            && page.contains("cannot reach the model service at http://127.0.0.1:9")
    );
    let (status, page, _) = ui.analyze("a great film", None).await;
    assert_eq!(status, 502);
    assert!(
        page.contains("cannot reach the model service") && page.contains("a great film"),
        "the text is kept"
    );
    let (status, page) = ui.get("/model", None).await;
    assert_eq!(status, 200);
    assert!(page.contains("cannot reach"));
    let (status, health) = ui.get("/health", None).await;
    assert_eq!(status, 200, "the ui itself is healthy");
    assert!(health.contains("unreachable"));

    let (api, stub) = start_stub(Mode::Starting).await;
    let ui = start_ui(&api).await;
    let (_, page) = ui.get("/", None).await;
    assert!(page.contains("The model service is starting"));
    let (status, page, _) = ui.analyze("a great film", None).await;
    assert_eq!(status, 503);
    assert!(page.contains("the model is still loading"));

    *stub.mode.lock().unwrap() = Mode::Busy;
    let (status, page, _) = ui.analyze("a great film", None).await;
    assert_eq!(status, 429);
    assert!(page.contains("busy") && page.contains("Try again"));
    for p in ["/", "/batch", "/model"] {
        assert!(!ui.get(p, None).await.1.contains("panicked"));
    }
}

#[tokio::test]
async fn batch_previews_and_downloads_with_every_row() {
    let (api, _) = start_stub(Mode::Ok).await;
    let ui = start_ui(&api).await;
    let (status, page) = ui.get("/batch", None).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("enctype=\"multipart/form-data\"") && page.contains("<label for=\"file\">")
    );

    // 10 rows, chunked by the api's max_inputs (4); one empty text; a quoted comma.
    let mut csv = String::from("id,text,extra\n");
    for i in 0..10 {
        let t = match i {
            3 => String::new(),
            5 => "\"good, really good\"".into(),
            _ => format!(
                "review {i} was {}",
                if i % 2 == 0 { "great" } else { "poor" }
            ),
        };
        csv.push_str(&format!("{i},{t},e{i}\n"));
    }
    let (status, page) = ui.upload("reviews.csv", csv.into_bytes(), "text").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("reviews.csv: 10 rows") && page.contains("1 rows without text"));
    let id = page
        .split("/batch/download/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let r = ui
        .client
        .get(format!("{}/batch/download/{id}", ui.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("reviews-predictions.csv")
    );
    let body = r.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    assert_eq!(
        reader.headers().unwrap(),
        vec!["id", "text", "extra", "sentiment", "confidence"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 10);
    assert_eq!(&rows[5][3], "positive");
    assert_eq!(&rows[3][3], "");
    assert_eq!(&rows[1][3], "negative");
    assert_eq!(&rows[9][2], "e9");
}

#[tokio::test]
async fn bad_uploads_are_explained() {
    let (api, _) = start_stub(Mode::Ok).await;
    let ui = start_ui(&api).await;
    let (status, page) = ui
        .upload("photo.png", b"\x89PNG\r\n\x1a\n\0\0\0".to_vec(), "text")
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("not a CSV file"));
    let (status, page) = ui
        .upload("big.csv", vec![b'a'; 2 * 1024 * 1024], "text")
        .await;
    assert_eq!(status, 413);
    assert!(page.contains("larger than 1 MB") && page.contains("batch_predict"));

    // A missing column offers the file's columns, and picking one classifies it.
    let (status, page) = ui
        .upload(
            "r.csv",
            b"id,review\n1,good stuff\n2,bad\n".to_vec(),
            "text",
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("has no `text` column") && page.contains("<option value=\"review\">"));
    let upload = page
        .split("name=\"upload\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let r = ui
        .client
        .post(format!("{}/batch/column", ui.url))
        .form(&[("upload", upload), ("column", "review")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("r.csv: 2 rows"));
}

#[tokio::test]
async fn model_page_draws_metrics_matrix_and_curves() {
    let (api, _) = start_stub(Mode::Ok).await;
    let ui = start_ui(&api).await;
    let (status, page) = ui.get("/model", None).await;
    assert_eq!(status, 200);
    assert!(page.contains("distilbert-base-uncased") && page.contains("67.0M"));
    assert!(page.contains("91.0%") && page.contains("Macro F1"));
    assert!(page.contains("aria-label=\"Confusion matrix\"") && page.contains(">92<"));
    assert!(page.contains("Training loss by optimizer step") && page.contains("<polyline"));
    assert!(page.contains("Validation accuracy and macro F1 by epoch"));
    assert!(page.contains("imdb"));
    assert!(page.contains("Balanced accuracy") && page.contains("90.8%"));
    assert!(page.contains("Recall of negative") && page.contains("Recall of positive"));
    assert!(page.contains("the best macro F1 on validation.csv"));
    assert!(page.contains("Accuracy against confidence on the test split"));
    assert!(page.contains("served (temperature 1.70)") && page.contains("0.082 raw, 0.031 served"));
    // The versions, newest first, the served one marked.
    let table = &page[page.find("<h2>Versions</h2>").expect("a versions table")..];
    let (a, b, c) = (
        table.find("run-a").unwrap(),
        table.find("run-b").unwrap(),
        table.find("run-c").unwrap(),
    );
    assert!(c < b && b < a, "newest first");
    assert!(
        table.contains("<tr class=\"serving\"><td><code>run-b</code>") && table.contains("0.912")
    );
    assert!(table.contains("promoted before") && table.contains(">kept<"));
}

#[tokio::test]
async fn right_and_wrong_buttons_send_the_users_verdict() {
    let (api, stub) = start_stub(Mode::Ok).await;
    let ui = start_ui(&api).await;
    let (_, _, cookie) = ui.analyze("a great film", None).await;
    let cookie = cookie.unwrap();
    let (_, page) = ui.get("/", Some(&cookie)).await;
    assert!(
        page.contains("Is this right?") && page.contains("Wrong: it is negative"),
        "{page}"
    );
    let send = |id: &'static str, label: &'static str| {
        ui.client
            .post(format!("{}/feedback", ui.url))
            .header("cookie", &cookie)
            .form(&[("id", id), ("label", label)])
            .send()
    };
    let r = send("a great film", "negative").await.unwrap();
    assert_eq!(r.status(), 303);
    let (_, page) = ui.get("/", Some(&cookie)).await;
    assert!(page.contains("recorded as <b>negative</b>") && page.contains("a correction"));
    assert!(!page.contains("Is this right?"), "asked once");
    assert_eq!(
        *stub.feedback.lock().unwrap(),
        vec![("a great film".to_string(), "negative".to_string())]
    );
    // A refusal is shown, not swallowed.
    let r = send("unknown", "negative").await.unwrap();
    assert_eq!(r.status(), 422);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("no logged prediction has the id")
    );
}

#[tokio::test]
async fn a_classified_file_carries_ids_and_a_corrected_copy_is_sent_back() {
    let (api, stub) = start_stub(Mode::Ok).await;
    let ui = start_ui(&api).await;
    let (status, page) = ui
        .upload("r.csv", b"text\ngood one\nbad one\n".to_vec(), "text")
        .await;
    assert_eq!(status, 200, "{page}");
    let link = page
        .split("/batch/download/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let (_, csv) = ui.get(&format!("/batch/download/{link}"), None).await;
    assert!(
        csv.starts_with("text,sentiment,confidence,prediction_id\n"),
        "{csv}"
    );
    assert!(csv.contains(",good one\n"), "the id of each row: {csv}");

    let corrected = "text,sentiment,prediction_id,label\ngood one,positive,good one,negative\nbad one,negative,bad one,\n";
    let (status, page) = ui.send_corrections("fixed.csv", corrected.as_bytes()).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("fixed.csv: 1 corrections sent")
            && page.contains("<strong>1</strong> where the model was wrong"),
        "{page}"
    );
    assert_eq!(
        stub.feedback.lock().unwrap().len(),
        1,
        "only the row with a label"
    );

    let (status, page) = ui
        .send_corrections("plain.csv", b"text,sentiment\na,positive\n")
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("needs a `prediction_id` column"), "{page}");
}

#[tokio::test]
async fn the_monitoring_page_shows_drift_label_shares_and_feedback_accuracy() {
    let (api, stub) = start_stub(Mode::Ok).await;
    let ui = start_ui(&api).await;
    let (status, page) = ui.get("/monitoring?hours=24", None).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Drift (largest PSI)") && page.contains("0.300"),
        "{page}"
    );
    assert!(
        page.contains("class=\"stat alert\""),
        "above the alert threshold"
    );
    assert!(page.contains("95.8%") && page.contains("96 corrections received"));
    for chart in [
        "Label shares",
        "Mean confidence",
        "Drift",
        "Feedback accuracy",
    ] {
        assert!(page.contains(&format!("aria-label=\"{chart}\"")), "{chart}");
    }
    assert!(
        page.contains("12 / 40 / 90"),
        "the window's length percentiles"
    );
    assert!(page.contains("href=\"/monitoring?hours=24\" aria-current=\"page\""));
    *stub.mode.lock().unwrap() = Mode::Starting;
    let (status, page) = ui.get("/monitoring", None).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("class=\"error\"") && page.contains("starting"),
        "{page}"
    );
}
