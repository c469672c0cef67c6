//! The served model's life cycle: loading (retried while the folder is missing or broken),
//! warm-up, and the queue and thread that serve it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api_types::{Info, Limits};
use classifier::{BatchLimits, Classifier, runtime};
use tokio::sync::oneshot;

use crate::batching::{Entry, Queue, spawn_worker};
use crate::config::Args;
use crate::metrics::Metrics;

/// A loaded, warmed-up model with its queue.
pub struct Loaded {
    pub classifier: Arc<Classifier>,
    pub queue: Arc<Queue>,
    pub info: Info,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        self.queue.close();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// Where the model stands.
pub enum ModelState {
    Loading,
    /// Not loadable (yet); the message says why and what to do.
    Unavailable(String),
    Ready(Arc<Loaded>),
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Records kept from a run log: enough for any chart, bounded for a huge log.
const MAX_RECORDS: usize = 20_000;

/// The latest run under `results`: run_summary.json and its runs/<id>/metrics.jsonl (or the
/// newest run folder when there is no summary yet, e.g. while training).
pub fn training_log(results: &Path) -> api_types::TrainingLog {
    let summary = read_json(&results.join(classifier::results::RUN_SUMMARY_FILE));
    let runs = results.join(classifier::results::RUNS_DIR);
    let run_dir = summary
        .as_ref()
        .and_then(|s| s["run_id"].as_str())
        .map(|id| runs.join(id))
        .filter(|d| d.is_dir())
        .or_else(|| {
            let mut dirs: Vec<_> = std::fs::read_dir(&runs)
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect();
            dirs.sort();
            dirs.pop()
        });
    let records = run_dir
        .and_then(|d| std::fs::read_to_string(d.join(classifier::results::RUN_LOG_FILE)).ok())
        .map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .take(MAX_RECORDS)
                .collect()
        })
        .unwrap_or_default();
    api_types::TrainingLog { summary, records }
}

/// What /info reports about `args` before any model is loaded.
pub fn limits(args: &Args) -> Limits {
    Limits {
        max_inputs: args.max_inputs,
        max_body_bytes: args.max_body_bytes,
        max_batch_size: args.max_batch_size,
        max_batch_tokens: args.max_batch_tokens,
        max_queue: args.max_queue,
    }
}

/// Loads the model folder, starts its thread and checks one prediction end to end.
/// Blocking: run it off the async runtime.
pub fn load(args: &Args, metrics: &Metrics) -> Result<Loaded, String> {
    let dir = &args.model_path;
    if !dir.join(classifier::model_dir::CONFIG_FILE).is_file() {
        return Err(format!(
            "no model in {}: run `docker compose up trainer` (or `train`) first, or point MODEL_PATH at a model folder",
            dir.display()
        ));
    }
    let started = Instant::now();
    let classifier = Classifier::load_dir(dir)
        .and_then(|c| {
            c.with_limits(BatchLimits {
                max_batch_size: args.max_batch_size,
                max_batch_tokens: args.max_batch_tokens,
            })
        })
        .and_then(|c| c.with_precision(args.precision))
        .map(|c| c.with_long_text(args.long_text.policy()))
        .map_err(|e| format!("cannot load the model: {e}"))?;
    runtime::release_free_memory();
    let classifier = Arc::new(classifier);
    let queue = Arc::new(Queue::new(args.max_queue, metrics.clone()));
    let worker = spawn_worker(classifier.clone(), queue.clone(), metrics.clone());

    let config = classifier.config();
    let info = Info {
        version: env!("CARGO_PKG_VERSION").into(),
        model_path: dir.display().to_string(),
        ready: true,
        labels: classifier.labels().to_vec(),
        max_length: classifier.pipeline().max_length,
        truncation: classifier.pipeline().truncation.to_string(),
        precision: classifier.precision().to_string(),
        pooling: config.pooling.to_string(),
        long_text: classifier.long_text().mode.to_string(),
        temperature: Some(classifier.pipeline().temperature),
        base_model: config
            .extra
            .get("_name_or_path")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        model_type: Some(config.model_type.clone()),
        parameters: Some(
            config
                .parameter_shapes()
                .iter()
                .map(|(_, s)| s.iter().product::<usize>())
                .sum(),
        ),
        cleaning: serde_json::to_value(&classifier.pipeline().cleaning).ok(),
        training_metrics: read_json(&args.results_dir.join(classifier::results::METRICS_FILE)),
        limits: limits(args),
    };
    let loaded = Loaded {
        classifier,
        queue,
        info,
        worker: Some(worker),
    };

    // Warm-up through the real path: tokenizer, queue, model thread.
    let ids = loaded
        .classifier
        .encode(&["warm-up"])
        .map_err(|e| format!("warm-up tokenization failed: {e}"))?;
    let (tx, rx) = oneshot::channel();
    loaded
        .queue
        .push_all(vec![Entry {
            ids: ids.into_iter().next().expect("one text"),
            enqueued: Instant::now(),
            respond: tx,
        }])
        .map_err(|_| "warm-up could not be queued".to_string())?;
    match rx.blocking_recv() {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(format!("warm-up prediction failed: {e}")),
        Err(_) => return Err("warm-up prediction got no answer".into()),
    }
    tracing::info!(
        model = %dir.display(),
        labels = ?loaded.info.labels,
        seconds = started.elapsed().as_secs_f64(),
        "model loaded and warmed up"
    );
    Ok(loaded)
}

/// Keeps trying to load until it works, publishing each outcome through `publish`.
pub async fn load_until_ready(
    args: Args,
    metrics: Metrics,
    publish: impl Fn(ModelState) + Send + 'static,
) {
    let mut last_error = String::new();
    loop {
        let (a, m) = (args.clone(), metrics.clone());
        let outcome = tokio::task::spawn_blocking(move || load(&a, &m))
            .await
            .unwrap_or_else(|e| Err(format!("the loader crashed: {e}")));
        match outcome {
            Ok(loaded) => {
                publish(ModelState::Ready(Arc::new(loaded)));
                return;
            }
            Err(e) => {
                if e != last_error {
                    tracing::error!("{e} (retrying every {}s)", args.model_retry_seconds);
                    last_error = e.clone();
                }
                publish(ModelState::Unavailable(e));
            }
        }
        tokio::time::sleep(Duration::from_secs(args.model_retry_seconds.max(1))).await;
    }
}
