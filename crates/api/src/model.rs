//! The served model's life cycle: loading (retried while the folder is missing or broken),
//! warm-up, and the queue and thread that serve it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api_types::{Info, Limits};
use classifier::model_dir::hub::{self, ModelSource};
use classifier::{BatchLimits, Classifier, runtime};
use monitoring::Reference;

use crate::config::Args;
use crate::infer::{Infer, InferError};
use crate::metrics::Metrics;
use crate::monitor::usable_reference;

/// A loaded, warmed-up model and what /info says about it.
pub struct Loaded {
    pub infer: Infer,
    pub info: Info,
    /// The model's training reference for drift scores (drift_reference.json), if it has one.
    pub reference: Option<Reference>,
}

/// Where the model stands.
pub enum ModelState {
    Loading,
    /// Not loadable (yet); the message says why and what to do.
    Unavailable(String),
    Ready(Arc<Loaded>),
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

/// Why no model could be served (yet): published on /health, retried.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "no model in {}: run `docker compose up trainer` (or `train`) first, or point MODEL_PATH at a model folder or a Hub id (owner/name)",
        .0.display()
    )]
    NoModel(PathBuf),
    #[error("cannot load the model: {0}")]
    Load(#[from] classifier::Error),
    #[error("warm-up prediction failed: {0}")]
    WarmUp(#[from] InferError),
    #[error("the loader crashed: {0}")]
    Crashed(String),
}

/// The model `path` names: a folder with a config.json, or, when no such path exists, a Hub
/// repository `owner/name` (fetched into the cache, or found there offline). `None` when
/// it is neither (a folder the trainer has yet to write).
pub fn model_source(path: &Path) -> Result<Option<ModelSource>, classifier::Error> {
    if path.join(classifier::model_dir::CONFIG_FILE).is_file() {
        return Ok(Some(ModelSource {
            id: path.display().to_string(),
            revision: None,
            path: path.to_path_buf(),
        }));
    }
    let name = path.to_string_lossy();
    if path.exists() || !hub::is_owned_hub_id(&name) {
        return Ok(None);
    }
    hub::resolve_model(&name, None).map(Some)
}

/// Loads the model (folder or Hub id), starts its thread and checks one prediction end to
/// end. Blocking: run it off the async runtime.
pub fn load(args: &Args, metrics: &Metrics) -> Result<Loaded, LoadError> {
    let dir = &args.model_path;
    let source = model_source(dir)?.ok_or_else(|| LoadError::NoModel(dir.clone()))?;
    let source_path = source.path.clone();
    let started = Instant::now();
    let classifier = Classifier::load_source(source)?
        .with_limits(BatchLimits {
            max_batch_size: args.max_batch_size,
            max_batch_tokens: args.max_batch_tokens,
        })?
        .with_precision(args.precision)?
        .with_long_text(args.long_text.policy());
    runtime::release_free_memory();
    let mut info = info(args, &classifier);
    info.model_version = Some(classifier::model_dir::content_version(&source_path)?);
    let reference = Reference::load(&source_path).unwrap_or_else(|e| {
        tracing::warn!("{e}");
        None
    });
    let reference = usable_reference(reference, classifier.labels());
    if reference.is_none() {
        tracing::info!(
            "the model has no drift reference ({}): /metrics shows no drift scores",
            monitoring::REFERENCE_FILE
        );
    }
    let infer = Infer::start(classifier, args.max_queue, metrics.clone());
    infer.warm_up()?;
    tracing::info!(
        model = %dir.display(),
        labels = ?info.labels,
        seconds = started.elapsed().as_secs_f64(),
        "model loaded and warmed up"
    );
    Ok(Loaded {
        infer,
        info,
        reference,
    })
}

/// What /info says about a loaded model.
fn info(args: &Args, classifier: &Classifier) -> Info {
    let (config, pipeline) = (classifier.config(), classifier.pipeline());
    let shapes = config.parameter_shapes();
    let metrics_file = args.results_dir.join(classifier::results::METRICS_FILE);
    Info {
        version: env!("CARGO_PKG_VERSION").into(),
        model_path: args.model_path.display().to_string(),
        ready: true,
        model_version: None,
        labels: classifier.labels().to_vec(),
        max_length: pipeline.max_length,
        truncation: pipeline.truncation.to_string(),
        precision: classifier.precision().to_string(),
        pooling: config.pooling().to_string(),
        long_text: classifier.long_text().mode.to_string(),
        temperature: Some(pipeline.temperature),
        base_model: config
            .extra()
            .get("_name_or_path")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        model_type: Some(config.model_type().to_string()),
        parameters: Some(
            shapes
                .iter()
                .map(|(_, s)| s.iter().product::<usize>())
                .sum(),
        ),
        cleaning: serde_json::to_value(&pipeline.cleaning).ok(),
        training_metrics: crate::training_log::read_json(&metrics_file),
        limits: limits(args),
    }
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
            .unwrap_or_else(|e| Err(LoadError::Crashed(e.to_string())))
            .map_err(|e| e.to_string());
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
