//! Experiment tracking in MLflow, over its REST API (no Python client needed): when a run
//! finishes, it is logged to the tracking server named by `MLFLOW_TRACKING_URI` with its
//! name, parameters (hyperparameters, base model, data hashes), the metric history of every
//! logged step and epoch (from metrics.jsonl) and the final test metrics, the model folder
//! and run summary as artifacts, and, when the model was promoted, a new version of the
//! registered model `MLFLOW_MODEL_NAME`. A tracking server that fails is retried with
//! back-off, then skipped with a warning: tracking never fails training.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::runlog::RunSummary;

/// Where and under which names to track.
#[derive(Debug, Clone)]
pub struct MlflowSettings {
    pub uri: String,
    pub experiment: String,
    pub model_name: String,
    pub token: Option<String>,
}

/// A finished run, as tracking sees it.
pub struct FinishedRun<'a> {
    pub summary: &'a RunSummary,
    /// metrics.jsonl: one line per logged step and per evaluation.
    pub run_log: &'a Path,
    /// The version folder (models/<run-id>/), uploaded as the `model` artifact.
    pub model_dir: &'a Path,
    /// Extra parameters (the data hashes, the promotion policy).
    pub params: Vec<(String, String)>,
    pub promoted: bool,
}

/// What was logged: the MLflow run id and the registered version, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracked {
    pub run_id: String,
    pub model_version: Option<String>,
}

/// Logs `run`; on failure warns and returns `None`.
pub fn log_run(settings: &MlflowSettings, run: &FinishedRun) -> Option<Tracked> {
    let client = Client::new(settings);
    match client.log(run) {
        Ok(t) => {
            tracing::info!(mlflow_run = %t.run_id, model_version = ?t.model_version, "logged to MLflow at {}", settings.uri);
            Some(t)
        }
        Err(e) => {
            tracing::warn!(
                "MLflow tracking at {} failed, training is unaffected: {e:#}",
                settings.uri
            );
            None
        }
    }
}

/// Requests per second the server may need: a few retries with back-off.
const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_secs(2),
    Duration::from_secs(5),
];
/// MLflow's per-request limits for log-batch.
const MAX_METRICS: usize = 1000;
const MAX_PARAMS: usize = 100;
const MAX_PARAM_CHARS: usize = 6000;

/// A request to the tracking server.
enum Request {
    Get,
    /// A JSON body.
    Post(String),
    /// An artifact upload: the file's bytes.
    Put(PathBuf),
}

impl Request {
    fn method(&self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post(_) => "POST",
            Self::Put(_) => "PUT",
        }
    }
}

struct Client<'a> {
    settings: &'a MlflowSettings,
    agent: ureq::Agent,
}

impl<'a> Client<'a> {
    fn new(settings: &'a MlflowSettings) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build();
        Self {
            settings,
            agent: config.into(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.settings.uri.trim_end_matches('/'))
    }

    /// One request with retries on transport errors, 429 and 5xx; the answer's JSON, or the
    /// error MLflow gave (its `error_code` first).
    fn call(&self, path: &str, request: Request) -> Result<Value> {
        let mut attempt = 0;
        loop {
            match self.once(path, &request) {
                Ok((status, text)) if status < 300 => {
                    return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
                }
                Ok((status, text)) if status != 429 && status < 500 => {
                    bail!(
                        "{} {path}: HTTP {status}: {}",
                        request.method(),
                        text.trim()
                    );
                }
                outcome => {
                    let why = match outcome {
                        Ok((status, text)) => format!("HTTP {status}: {}", text.trim()),
                        Err(e) => format!("{e:#}"),
                    };
                    let method = request.method();
                    let Some(delay) = RETRY_DELAYS.get(attempt) else {
                        bail!(
                            "{method} {path}: {why} (after {} retries)",
                            RETRY_DELAYS.len()
                        );
                    };
                    tracing::debug!("{method} {path}: {why}; retrying in {delay:?}");
                    std::thread::sleep(*delay);
                    attempt += 1;
                }
            }
        }
    }

    fn once(&self, path: &str, request: &Request) -> Result<(u16, String)> {
        let url = self.url(path);
        let token = self.settings.token.as_deref();
        let response = match request {
            Request::Get => authorize(self.agent.get(&url), token).call(),
            Request::Post(json) => authorize(self.agent.post(&url), token)
                .header("Content-Type", "application/json")
                .send(json.as_str()),
            Request::Put(file) => {
                // Streamed from the file, its length as Content-Length: model weights need
                // not fit in memory a second time.
                let body = std::fs::File::open(file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                authorize(self.agent.put(&url), token)
                    .header("Content-Type", "application/octet-stream")
                    .send(body)
            }
        };
        let mut response = response.with_context(|| format!("cannot reach {url}"))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        Ok((status, text))
    }

    fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.call(path, Request::Post(body.to_string()))
    }

    fn log(&self, run: &FinishedRun) -> Result<Tracked> {
        let experiment = self.experiment_id()?;
        let summary = run.summary;
        let created = self.post(
            "api/2.0/mlflow/runs/create",
            json!({
                "experiment_id": experiment,
                "run_name": summary.run_id,
                "start_time": millis(&summary.started_at),
                "tags": [
                    {"key": "sentiment_rs.promoted", "value": run.promoted.to_string()},
                    {"key": "mlflow.source.name", "value": "sentiment-rs train"},
                ],
            }),
        )?;
        let info = &created["run"]["info"];
        let run_id = info["run_id"]
            .as_str()
            .context("runs/create gave no run_id")?;
        let artifact_uri = info["artifact_uri"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let outcome = self.log_contents(run, run_id, &artifact_uri);
        let status = if outcome.is_ok() {
            "FINISHED"
        } else {
            "FAILED"
        };
        self.post(
            "api/2.0/mlflow/runs/update",
            json!({"run_id": run_id, "status": status, "end_time": millis(&summary.finished_at)}),
        )?;
        let model_version = outcome?;
        Ok(Tracked {
            run_id: run_id.to_string(),
            model_version,
        })
    }

    /// Parameters, metrics, artifacts and the registered version of one created run.
    fn log_contents(
        &self,
        run: &FinishedRun,
        run_id: &str,
        artifacts: &str,
    ) -> Result<Option<String>> {
        let params = params(run);
        for chunk in params.chunks(MAX_PARAMS) {
            let params: Vec<Value> = chunk
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
            self.post(
                "api/2.0/mlflow/runs/log-batch",
                json!({"run_id": run_id, "params": params}),
            )?;
        }
        let metrics = metrics(run)?;
        for chunk in metrics.chunks(MAX_METRICS) {
            self.post(
                "api/2.0/mlflow/runs/log-batch",
                json!({"run_id": run_id, "metrics": chunk}),
            )?;
        }
        self.upload_dir(artifacts, run.model_dir, "model")?;
        if !run.promoted {
            return Ok(None);
        }
        self.register(run_id, &format!("{artifacts}/model"))
            .map(Some)
    }

    fn experiment_id(&self) -> Result<String> {
        let name = &self.settings.experiment;
        let query = format!(
            "api/2.0/mlflow/experiments/get-by-name?experiment_name={}",
            encode(name)
        );
        match self.call(&query, Request::Get) {
            Ok(v) => v["experiment"]["experiment_id"]
                .as_str()
                .map(str::to_string)
                .context("get-by-name gave no experiment_id"),
            Err(e) if e.to_string().contains("RESOURCE_DOES_NOT_EXIST") => {
                let v = self.post("api/2.0/mlflow/experiments/create", json!({"name": name}))?;
                v["experiment_id"]
                    .as_str()
                    .map(str::to_string)
                    .context("experiments/create gave no experiment_id")
            }
            Err(e) => Err(e),
        }
    }

    /// Uploads every file of `dir` under `<artifacts>/<under>/` through the server's
    /// artifact proxy (`mlflow server`'s default).
    fn upload_dir(&self, artifacts: &str, dir: &Path, under: &str) -> Result<()> {
        let Some(root) = artifacts.strip_prefix("mlflow-artifacts:") else {
            bail!(
                "the run's artifact store is {artifacts}, which the REST API cannot write: start \
                 the server with artifact serving (mlflow server --serve-artifacts, the default)"
            );
        };
        let root = root.trim_start_matches('/');
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for file in files {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .context("a file name")?;
            let path = format!(
                "api/2.0/mlflow-artifacts/artifacts/{root}/{under}/{}",
                encode(name)
            );
            self.call(&path, Request::Put(file.clone()))?;
        }
        Ok(())
    }

    /// A new version of the registered model (created on first use) from `source`.
    fn register(&self, run_id: &str, source: &str) -> Result<String> {
        let name = &self.settings.model_name;
        match self.post(
            "api/2.0/mlflow/registered-models/create",
            json!({"name": name}),
        ) {
            Ok(_) => {}
            Err(e) if e.to_string().contains("RESOURCE_ALREADY_EXISTS") => {}
            Err(e) => return Err(e),
        }
        let v = self.post(
            "api/2.0/mlflow/model-versions/create",
            json!({"name": name, "source": source, "run_id": run_id,
                   "description": "promoted into model_output by sentiment-rs train"}),
        )?;
        v["model_version"]["version"]
            .as_str()
            .map(str::to_string)
            .context("model-versions/create gave no version")
    }
}

/// `r` with the bearer token, when there is one.
fn authorize<B>(r: ureq::RequestBuilder<B>, token: Option<&str>) -> ureq::RequestBuilder<B> {
    match token {
        Some(t) => r.header("Authorization", &format!("Bearer {t}")),
        None => r,
    }
}

/// Every hyperparameter, the base model, the data sizes, and the run's extra parameters,
/// as MLflow's string parameters.
fn params(run: &FinishedRun) -> Vec<(String, String)> {
    let s = run.summary;
    // One value per key: MLflow refuses a batch that names a parameter twice.
    let mut out = std::collections::BTreeMap::new();
    if let Ok(Value::Object(h)) = serde_json::to_value(&s.hyperparameters) {
        for (k, v) in h {
            let v = match v {
                Value::String(s) => s,
                Value::Null => String::new(),
                other => other.to_string(),
            };
            out.insert(k, v);
        }
    }
    let facts = [
        ("base_model", s.base_model.id.clone()),
        (
            "base_model_revision",
            s.base_model.revision.clone().unwrap_or_default(),
        ),
        ("model_type", s.base_model.model_type.clone()),
        ("train_rows", s.data.train_rows.to_string()),
        ("validation_rows", s.data.eval_rows.to_string()),
        ("test_rows", s.data.test_rows.to_string()),
    ];
    out.extend(facts.map(|(k, v)| (k.to_string(), v)));
    out.extend(run.params.iter().cloned());
    out.into_iter()
        .map(|(k, mut v)| {
            v.truncate(MAX_PARAM_CHARS);
            (k, v)
        })
        .collect()
}

/// The metric history: each logged step's loss, lr, grad norm and speed, each epoch's
/// validation metrics (`val_`), and the kept model's test metrics (`test_`).
fn metrics(run: &FinishedRun) -> Result<Vec<Value>> {
    let now = millis(&run.summary.finished_at);
    let metric = |key: &str, value: f64, step: u64| json!({"key": key, "value": value, "timestamp": now, "step": step});
    let mut out = Vec::new();
    let text = std::fs::read_to_string(run.run_log)
        .with_context(|| format!("cannot read {}", run.run_log.display()))?;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: Value = serde_json::from_str(line)?;
        let step = r["step"].as_u64().unwrap_or(0);
        let (keys, prefix): (&[&str], &str) = match r["type"].as_str() {
            Some("train") => (&["loss", "lr", "grad_norm", "examples_per_s"], ""),
            Some("eval") => (&EVAL_KEYS, "val_"),
            _ => continue,
        };
        for k in keys {
            if let Some(v) = r[*k].as_f64().filter(|v| v.is_finite()) {
                out.push(metric(&format!("{prefix}{k}"), v, step));
            }
        }
    }
    if let Some(test) = &run.summary.test {
        let t = serde_json::to_value(&test.overall)?;
        for k in EVAL_KEYS {
            if let Some(v) = t[k].as_f64().filter(|v| v.is_finite()) {
                out.push(metric(&format!("test_{k}"), v, run.summary.optimizer_steps));
            }
        }
    }
    Ok(out)
}

const EVAL_KEYS: [&str; 6] = [
    "accuracy",
    "balanced_accuracy",
    "f1_score",
    "macro_f1",
    "loss",
    "ece",
];

/// Milliseconds since the epoch of an RFC 3339 time (now, if it does not parse).
fn millis(rfc3339: &str) -> u64 {
    let t = humantime::parse_rfc3339_weak(rfc3339).unwrap_or_else(|_| SystemTime::now());
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Percent-encodes what a URL path or query value cannot hold as is.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
