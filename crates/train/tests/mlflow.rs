//! MLflow tracking against a stand-in tracking server (the REST calls a real one answers,
//! recorded): what a finished run logs, a failing call retried, and a server that is down
//! leaving training unaffected. `scripts/mlflow-e2e.sh` runs the same against real MLflow.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use clap::Parser;
use classifier::dataset::{Example, write_examples};
use classifier::testing::{TinySize, vocab_for, write_tiny_model};
use serde_json::Value;

/// One request the stand-in received: method, path, body.
type Seen = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// Serves MLflow's answers on a free port; the first runs/create fails with 503 once.
fn stand_in() -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        let failed_once = Arc::new(AtomicBool::new(false));
        for stream in listener.incoming() {
            let (log, failed_once) = (log.clone(), failed_once.clone());
            std::thread::spawn(move || serve(stream.unwrap(), &log, &failed_once));
        }
    });
    (url, seen)
}

fn serve(stream: std::net::TcpStream, log: &Seen, failed_once: &AtomicBool) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap().to_string(),
            parts.next().unwrap().to_string(),
        );
        let mut length = 0;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            if h.trim().is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let (status, answer) = answer(&method, &path, failed_once);
        log.lock().unwrap().push((method, path, body));
        let text = answer.to_string();
        write!(
            out,
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        )
        .unwrap();
    }
}

fn answer(method: &str, path: &str, failed_once: &AtomicBool) -> (u16, Value) {
    use std::sync::atomic::Ordering;
    let json = |s: &str| serde_json::from_str::<Value>(s).unwrap();
    match (method, path.split('?').next().unwrap()) {
        (_, p) if p.ends_with("experiments/get-by-name") => (
            404,
            json(r#"{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such experiment"}"#),
        ),
        (_, p) if p.ends_with("experiments/create") => (200, json(r#"{"experiment_id": "7"}"#)),
        (_, p) if p.ends_with("runs/create") && !failed_once.swap(true, Ordering::SeqCst) => {
            (503, json(r#"{"error_code": "TEMPORARILY_UNAVAILABLE"}"#))
        }
        (_, p) if p.ends_with("runs/create") => (
            200,
            json(
                r#"{"run": {"info": {"run_id": "abc", "artifact_uri": "mlflow-artifacts:/7/abc/artifacts"}}}"#,
            ),
        ),
        (_, p) if p.ends_with("model-versions/create") => {
            (200, json(r#"{"model_version": {"version": "3"}}"#))
        }
        _ => (200, json("{}")),
    }
}

fn cue(n: usize) -> Vec<Example> {
    (0..n)
        .map(|i| Example {
            text: format!(
                "{} film plot {}",
                if i % 2 == 0 { "great" } else { "awful" },
                i % 7
            ),
            label: i % 2,
            source: String::new(),
        })
        .collect()
}

fn train(work: &Path, uri: &str) -> train::runlog::RunSummary {
    let data = work.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_examples(&data.join("train.csv"), &cue(80)).unwrap();
    write_examples(&data.join("test.csv"), &cue(20)).unwrap();
    let texts: Vec<String> = cue(80).into_iter().map(|e| e.text).collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let model = work.join("base");
    write_tiny_model(&model, &vocab_for(&texts), TinySize::default(), 3).unwrap();
    let w = |p: &str| work.join(p).display().to_string();
    let args = train::Args::parse_from([
        "train",
        "--base-model",
        &model.display().to_string(),
        "--data-dir",
        &w("data"),
        "--output-dir",
        &w("model_output"),
        "--results-dir",
        &w("results"),
        "--epochs",
        "2",
        "--log-every",
        "1",
        "--mlflow-tracking-uri",
        uri,
        "--mlflow-model-name",
        "reviews",
    ]);
    match train::run(&args, &AtomicBool::new(false)).unwrap() {
        train::Outcome::Completed(s) => *s,
        train::Outcome::Interrupted { .. } => panic!("interrupted"),
    }
}

fn body(seen: &[(String, String, Vec<u8>)], path_end: &str) -> Vec<Value> {
    seen.iter()
        .filter(|(_, p, _)| p.ends_with(path_end))
        .map(|(_, _, b)| serde_json::from_slice(b).unwrap())
        .collect()
}

#[test]
fn a_finished_run_logs_params_history_artifacts_and_a_model_version() {
    let work = tempfile::tempdir().unwrap();
    let (uri, seen) = stand_in();
    let summary = train(work.path(), &uri);
    assert_eq!(summary.outputs.promoted, Some(true));
    let seen = seen.lock().unwrap().clone();

    let creates = body(&seen, "runs/create");
    assert_eq!(creates.len(), 2, "the 503 was retried");
    assert_eq!(creates[1]["experiment_id"], "7");
    assert_eq!(creates[1]["run_name"], summary.run_id.as_str());

    let batches = body(&seen, "runs/log-batch");
    let params: Vec<&Value> = batches
        .iter()
        .flat_map(|b| b["params"].as_array().into_iter().flatten())
        .collect();
    let param = |k: &str| {
        params
            .iter()
            .find(|p| p["key"] == k)
            .map(|p| p["value"].as_str().unwrap().to_string())
    };
    assert_eq!(param("epochs").as_deref(), Some("2"));
    assert!(param("lr").is_some(), "{params:?}");
    assert_eq!(param("data_hash.train.csv").unwrap().len(), 16);
    assert_eq!(param("promote").as_deref(), Some("if-better"));

    let metrics: Vec<&Value> = batches
        .iter()
        .flat_map(|b| b["metrics"].as_array().into_iter().flatten())
        .collect();
    let steps = |k: &str| {
        metrics
            .iter()
            .filter(|m| m["key"] == k)
            .map(|m| m["step"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert!(
        steps("loss").len() >= 4,
        "every logged step's loss: {:?}",
        steps("loss")
    );
    assert!(steps("lr").len() == steps("loss").len() && !steps("grad_norm").is_empty());
    assert_eq!(steps("val_macro_f1").len(), 2, "one per epoch");
    assert_eq!(steps("test_accuracy"), [summary.optimizer_steps]);

    let uploads: Vec<&str> = seen
        .iter()
        .filter(|(m, _, _)| m == "PUT")
        .map(|(_, p, _)| p.as_str())
        .collect();
    for file in [
        "config.json",
        "model.safetensors",
        "version.json",
        "run_summary.json",
    ] {
        let want = format!("mlflow-artifacts/artifacts/7/abc/artifacts/model/{file}");
        assert!(
            uploads.iter().any(|p| p.ends_with(&want)),
            "{file} not uploaded: {uploads:?}"
        );
    }
    let version = &body(&seen, "model-versions/create")[0];
    assert_eq!(version["name"], "reviews");
    assert_eq!(version["source"], "mlflow-artifacts:/7/abc/artifacts/model");
    assert_eq!(body(&seen, "runs/update")[0]["status"], "FINISHED");
}

#[test]
fn a_tracking_server_that_is_down_does_not_fail_training() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let work = tempfile::tempdir().unwrap();
    let summary = train(work.path(), &format!("http://127.0.0.1:{port}"));
    assert_eq!(summary.status, "completed");
    assert_eq!(summary.outputs.promoted, Some(true));
    assert!(work.path().join("model_output/config.json").is_file());
}
