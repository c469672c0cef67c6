//! Reading a model folder in Hugging Face layout: DistilBERT, RoBERTa, XLM-RoBERTa,
//! CamemBERT, ELECTRA and DeBERTa-v2/v3 as they are, BERT converted on load; every tensor checked against the config;
//! the classification head kept, or (for training only) made fresh.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use super::hub::{self, ModelSource};
use super::{
    CONFIG_FILE, PIPELINE_FILE, SENTENCE_TRANSFORMERS_POOLING_FILE, TOKENIZER_FILES, WEIGHT_FILES,
};
use crate::error::{Error, Result};
use crate::models::bert;
use crate::models::config::ModelConfig;
use crate::models::distilbert::{ENCODER_PREFIX, HeadActivation, Pooling};
use crate::models::sequence_classifier::SequenceClassifier;
use crate::models::trainable::Trainable;
use crate::models::{deberta_v2, electra, roberta};
use crate::text::pipeline::Pipeline;
use crate::text::tokenizer::TextTokenizer;

/// The `model_type`s a folder may have, for error messages.
const SUPPORTED_MODEL_TYPES: &str =
    "distilbert, bert, roberta, xlm-roberta, camembert, electra and deberta-v2";

/// How a checkpoint is turned into a classifier.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Label names the classifier must have. When the checkpoint's head has a different
    /// number of classes, or no head at all, a fresh head is made; otherwise the labels are
    /// renamed. `None` keeps the checkpoint's labels.
    pub labels: Option<Vec<String>>,
    /// Seeds a fresh head's initialisation.
    pub seed: u64,
    /// Hub revision (branch, tag or commit); `main` when `None`.
    pub revision: Option<String>,
    /// Which pooling the head uses.
    pub pooling: PoolingChoice,
    /// Training (a fresh head where needed) or serving (the checkpoint's own head or an error).
    pub purpose: Purpose,
}

impl LoadOptions {
    /// For inference: the checkpoint's labels and head, nothing made up.
    pub fn serving() -> Self {
        Self {
            purpose: Purpose::Serve,
            ..Default::default()
        }
    }
}

/// What a checkpoint is loaded for, which decides what happens when it has no usable head.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Purpose {
    /// Fine-tuning: a missing or mismatched head is initialised afresh, and so is a BERT
    /// classifier's pooler head (it has no DistilBERT layout to be saved back in).
    #[default]
    Train,
    /// Inference: a fresh head would be random weights predicting noise, so a checkpoint
    /// without its own trained head is an error.
    Serve,
}

/// Which pooling a classifier's head uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PoolingChoice {
    /// A loaded head keeps the pooling it was trained with; a fresh head reads the first
    /// token.
    #[default]
    Keep,
    /// As `Keep`, but a fresh head follows a sentence-transformers folder's
    /// `1_Pooling/config.json` when it has one.
    Auto,
    /// This pooling; a loaded head trained with another one is an error.
    Exactly(Pooling),
}

/// Whether the classification head came from the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    Loaded,
    /// Initialised here, normal(0, initializer_range), for the given reason.
    Fresh(String),
}

/// A model folder's files, read and checked: every parameter of its
/// `*ForSequenceClassification`, f32, on the CPU, with its tokenizer and text pipeline. (The
/// trainer's resume state is another thing: `train::resume`.)
pub struct ModelFiles {
    pub config: ModelConfig,
    pub tensors: HashMap<String, Tensor>,
    pub tokenizer: TextTokenizer,
    /// `pipeline.json` of the folder, if it has one.
    pub pipeline: Option<Pipeline>,
    pub source: ModelSource,
    /// The `model_type` the checkpoint was stored as (`bert` for one converted to DistilBERT).
    pub original_model_type: String,
    pub head: Head,
}

impl std::fmt::Debug for ModelFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelFiles")
            .field("source", &self.source)
            .field("original_model_type", &self.original_model_type)
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

fn find(dir: &Path, names: &[&str]) -> Option<PathBuf> {
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::artifact(path, format!("not valid JSON: {e}")))
}

/// Reads every tensor of a safetensors or PyTorch weights file, as f32.
pub fn read_weights(path: &Path) -> Result<HashMap<String, Tensor>> {
    let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
    let raw: Vec<(String, Tensor)> = if is_safetensors {
        candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| Error::artifact(path, format!("cannot read safetensors weights: {e}")))?
            .into_iter()
            .collect()
    } else {
        candle_core::pickle::read_all(path)
            .map_err(|e| Error::artifact(path, format!("cannot read PyTorch weights: {e}")))?
    };
    raw.into_iter()
        .filter(|(_, t)| t.dtype().is_float())
        .map(|(name, t)| {
            let t = t
                .to_dtype(DType::F32)
                .map_err(|e| Error::artifact(path, format!("tensor {name}: {e}")))?;
            Ok((name, t))
        })
        .collect()
}

/// DistilBERT checkpoints name the encoder `distilbert.*` when saved from a task model and
/// leave the prefix out when saved from `DistilBertModel`; old ones call LayerNorm
/// parameters `gamma`/`beta`. Brings both to the task model's names.
fn normalize_distilbert_names(tensors: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    let prefixed = format!("{ENCODER_PREFIX}.");
    tensors
        .into_iter()
        .map(|(name, t)| {
            let name = name
                .strip_suffix(".gamma")
                .map(|n| format!("{n}.weight"))
                .or_else(|| name.strip_suffix(".beta").map(|n| format!("{n}.bias")))
                .unwrap_or(name);
            let name = if name.starts_with("embeddings.") || name.starts_with("transformer.") {
                format!("{prefixed}{name}")
            } else {
                name
            };
            (name, t)
        })
        .collect()
}

/// The pooling a sentence-transformers folder declares: mean or first token, `None` when the
/// folder has no such file or declares a pooling this head cannot do (max, weighted).
fn sentence_transformers_pooling(dir: &Path) -> Result<Option<Pooling>> {
    let path = dir.join(SENTENCE_TRANSFORMERS_POOLING_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let raw = read_json(&path)?;
    let on = |key: &str| raw.get(key).and_then(|v| v.as_bool()).unwrap_or(false);
    let modes = [
        "pooling_mode_cls_token",
        "pooling_mode_mean_tokens",
        "pooling_mode_max_tokens",
        "pooling_mode_mean_sqrt_len_tokens",
        "pooling_mode_weightedmean_tokens",
        "pooling_mode_lasttoken",
    ];
    let enabled: Vec<&str> = modes.into_iter().filter(|m| on(m)).collect();
    Ok(match enabled.as_slice() {
        ["pooling_mode_mean_tokens"] => Some(Pooling::Mean),
        ["pooling_mode_cls_token"] => Some(Pooling::Cls),
        other => {
            tracing::info!(
                file = %path.display(),
                modes = ?other,
                "the encoder's sentence-transformers pooling has no head equivalent; using the first token"
            );
            None
        }
    })
}

fn fresh_head(cfg: &ModelConfig, seed: u64) -> Result<HashMap<String, Tensor>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, cfg.initializer_range() as f32)
        .map_err(|e| Error::Input(format!("initializer_range: {e}")))?;
    cfg.head_parameter_shapes()
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = if name.ends_with(".bias") {
                vec![0.0; n]
            } else {
                (0..n).map(|_| normal.sample(&mut rng)).collect()
            };
            Ok((name, Tensor::from_vec(data, shape, &Device::Cpu)?))
        })
        .collect()
}

/// Why a head cannot be used as it is; the caller adds the file it concerns.
struct HeadProblem(String);

impl HeadProblem {
    fn at(self, path: &Path) -> Error {
        Error::artifact(path, self.0)
    }
}

/// Decides whether the checkpoint's head is kept, and sets the config's labels, pooling and
/// head activation to match.
fn choose_head(
    config: &mut ModelConfig,
    model_type: &str,
    tensors: &HashMap<String, Tensor>,
    opts: &LoadOptions,
    source: &ModelSource,
) -> std::result::Result<Head, HeadProblem> {
    let stored = config.labels().map_err(HeadProblem)?;
    let wanted = opts.labels.clone().unwrap_or_else(|| stored.clone());
    let has_head = config
        .head_parameter_shapes()
        .iter()
        .all(|(n, _)| tensors.contains_key(n));
    let bert_head = model_type == "bert" && has_head;
    let fresh_reason = if !has_head {
        Some("the checkpoint has no classification head (a base encoder)".to_string())
    } else if wanted.len() != stored.len() {
        Some(format!(
            "the checkpoint's head has {} classes, {} are wanted",
            stored.len(),
            wanted.len()
        ))
    } else if bert_head && opts.purpose == Purpose::Train {
        Some("a BERT classifier's pooler head cannot be saved in DistilBERT layout".into())
    } else {
        None
    };
    if let (Some(reason), Purpose::Serve) = (&fresh_reason, opts.purpose) {
        return Err(HeadProblem(format!(
            "cannot serve {}: {reason}, and serving never predicts with a random head. \
             Fine-tune it first (`train --base-model {}`) and serve the model_output folder \
             it writes, or point the model path at a fine-tuned *ForSequenceClassification \
             folder",
            source.id, source.id
        )));
    }
    config.set_labels(&wanted);
    config.set_architectures();
    let head = match fresh_reason {
        None => Head::Loaded,
        Some(reason) => Head::Fresh(reason),
    };
    if let ModelConfig::DistilBert(c) = config {
        c.classifier_activation = if head == Head::Loaded && bert_head {
            HeadActivation::Tanh
        } else {
            HeadActivation::Relu
        };
    }
    let pooling = match (&head, opts.pooling) {
        (Head::Loaded, PoolingChoice::Exactly(asked)) if asked != config.pooling() => {
            return Err(HeadProblem(format!(
                "its classification head was trained on {} pooling, so it cannot run with \
                 {asked} pooling; leave the pooling unset to keep the head's",
                config.pooling()
            )));
        }
        (Head::Loaded, _) => config.pooling(),
        (Head::Fresh(_), PoolingChoice::Exactly(asked)) => asked,
        (Head::Fresh(_), PoolingChoice::Keep) => Pooling::Cls,
        (Head::Fresh(_), PoolingChoice::Auto) => sentence_transformers_pooling(&source.path)
            .map_err(|e| HeadProblem(e.to_string()))?
            .unwrap_or(Pooling::Cls),
    };
    config.set_pooling(pooling);
    Ok(head)
}

/// The config and weights files of a model folder, or which one is missing.
fn required_files(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let config_path = dir.join(CONFIG_FILE);
    if !config_path.is_file() {
        return Err(Error::artifact(
            &config_path,
            "missing: a model folder needs config.json (with model.safetensors or \
             pytorch_model.bin, and tokenizer.json or vocab.txt)",
        ));
    }
    let weights_path = find(dir, &WEIGHT_FILES).ok_or_else(|| {
        Error::artifact(
            dir.join(WEIGHT_FILES[0]),
            "missing: the folder has neither model.safetensors nor pytorch_model.bin",
        )
    })?;
    Ok((config_path, weights_path))
}

/// config.json's `model_type`, once its `problem_type` is one this tool runs.
fn model_type(raw: &serde_json::Value, config_path: &Path) -> Result<String> {
    if let Some(kind) = raw.get("problem_type").and_then(|v| v.as_str())
        && kind != "single_label_classification"
    {
        return Err(Error::artifact(
            config_path,
            format!(
                "problem_type `{kind}` is not supported: this tool runs single-label \
                 classifiers (one softmax over the labels)"
            ),
        ));
    }
    Ok(raw
        .get("model_type")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string())
}

/// The config and tensors of a `model_type` folder (BERT converted to DistilBERT).
fn read_architecture(
    raw: serde_json::Value,
    model_type: &str,
    config_path: &Path,
    weights_path: &Path,
    source: &ModelSource,
) -> Result<(ModelConfig, HashMap<String, Tensor>)> {
    let parse_err = |e: serde_json::Error| {
        Error::artifact(config_path, format!("invalid {model_type} config: {e}"))
    };
    match model_type {
        "distilbert" => {
            let config = serde_json::from_value(raw).map_err(parse_err)?;
            let tensors = normalize_distilbert_names(read_weights(weights_path)?);
            Ok((ModelConfig::DistilBert(config), tensors))
        }
        "roberta" | "xlm-roberta" | "camembert" => {
            let config = serde_json::from_value(raw).map_err(parse_err)?;
            let tensors = roberta::normalize_names(read_weights(weights_path)?);
            Ok((config, tensors))
        }
        "electra" => {
            let config = serde_json::from_value(raw).map_err(parse_err)?;
            let tensors = electra::normalize_names(read_weights(weights_path)?);
            Ok((ModelConfig::Electra(config), tensors))
        }
        "deberta-v2" => {
            let config = serde_json::from_value(raw).map_err(parse_err)?;
            let tensors = deberta_v2::normalize_names(read_weights(weights_path)?);
            Ok((ModelConfig::DebertaV2(config), tensors))
        }
        "bert" => {
            let bert_cfg: bert::Config = serde_json::from_value(raw).map_err(parse_err)?;
            let config =
                bert::convert_config(&bert_cfg).map_err(|e| Error::artifact(config_path, e))?;
            let (tensors, dropped) = bert::convert_tensors(read_weights(weights_path)?, &config)
                .map_err(|e| Error::artifact(weights_path, e))?;
            tracing::info!(
                model = %source.id,
                dropped = ?dropped,
                "converted a BERT checkpoint to DistilBERT layout (token type 0 folded into positions)"
            );
            Ok((ModelConfig::DistilBert(config), tensors))
        }
        "" => Err(Error::artifact(
            config_path,
            format!("no model_type: expected \"model_type\": one of {SUPPORTED_MODEL_TYPES}"),
        )),
        other => Err(Error::artifact(
            config_path,
            format!(
                "model_type `{other}` is not supported: this tool loads {SUPPORTED_MODEL_TYPES} \
                 checkpoints (bert-base, MiniLM, TinyBERT, roberta-base, xlm-roberta-base, \
                 deberta-v3-base, ...)"
            ),
        )),
    }
}

/// Every parameter the config implies, present with its shape; anything else is dropped.
fn check_tensors(
    config: &ModelConfig,
    mut tensors: HashMap<String, Tensor>,
    weights_path: &Path,
) -> Result<HashMap<String, Tensor>> {
    let mut checked = HashMap::new();
    for (name, shape) in config.parameter_shapes() {
        let t = tensors
            .remove(&name)
            .ok_or_else(|| Error::artifact(weights_path, format!("missing tensor `{name}`")))?;
        if t.dims() != shape.as_slice() {
            return Err(Error::artifact(
                weights_path,
                format!(
                    "tensor `{name}` has shape {:?}, but config.json implies {shape:?}",
                    t.dims()
                ),
            ));
        }
        checked.insert(name, t);
    }
    if !tensors.is_empty() {
        let mut unused: Vec<_> = tensors.into_keys().collect();
        unused.sort();
        tracing::debug!(unused = ?unused, "tensors not used by the classifier");
    }
    Ok(checked)
}

/// Every token id the tokenizer can produce has a row in the embedding table.
fn check_vocab(tokenizer: &TextTokenizer, config: &ModelConfig, dir: &Path) -> Result<()> {
    if tokenizer.vocab_size() <= config.vocab_size() {
        return Ok(());
    }
    Err(Error::artifact(
        find(dir, &TOKENIZER_FILES).expect("the tokenizer loaded from one"),
        format!(
            "the tokenizer has {} tokens but the model's embedding table only {} rows",
            tokenizer.vocab_size(),
            config.vocab_size()
        ),
    ))
}

impl ModelFiles {
    /// Loads a local model folder or a Hugging Face Hub id.
    pub fn load(model: &str, opts: &LoadOptions) -> Result<Self> {
        let source = hub::resolve_model(model, opts.revision.as_deref())?;
        Self::from_source(source, opts)
    }

    /// Loads the files of an already resolved model folder.
    pub fn from_source(source: ModelSource, opts: &LoadOptions) -> Result<Self> {
        let dir = source.path.clone();
        let (config_path, weights_path) = required_files(&dir)?;
        let tokenizer = TextTokenizer::from_dir(&dir)?;
        let raw = read_json(&config_path)?;
        let model_type = model_type(&raw, &config_path)?;
        let (mut config, mut tensors) =
            read_architecture(raw, &model_type, &config_path, &weights_path, &source)?;
        config
            .validate()
            .map_err(|e| Error::artifact(&config_path, e))?;

        let head = choose_head(&mut config, &model_type, &tensors, opts, &source)
            .map_err(|e| e.at(&config_path))?;
        if let Head::Fresh(reason) = &head {
            tracing::info!(
                model = %source.id,
                labels = ?config.labels().unwrap_or_default(),
                seed = opts.seed,
                pooling = %config.pooling(),
                "initialising a fresh classification head: {reason}"
            );
            tensors.extend(fresh_head(&config, opts.seed)?);
        }
        let checked = check_tensors(&config, tensors, &weights_path)?;
        check_vocab(&tokenizer, &config, &dir)?;
        let pipeline = if dir.join(PIPELINE_FILE).is_file() {
            Some(Pipeline::load_or_default(&dir)?)
        } else {
            None
        };
        Ok(Self {
            config,
            tensors: checked,
            tokenizer,
            pipeline,
            source,
            original_model_type: model_type,
            head,
        })
    }

    /// A builder over the checked tensors.
    pub fn var_builder(&self) -> VarBuilder<'static> {
        VarBuilder::from_tensors(self.tensors.clone(), DType::F32, &Device::Cpu)
    }

    /// The model over trainable copies of these weights.
    pub fn trainable(&self) -> Result<Trainable> {
        Trainable::new(&self.config, &self.tensors)
    }

    /// The model over these (constant) weights, for inference.
    pub fn model(&self) -> Result<SequenceClassifier> {
        Ok(SequenceClassifier::load(self.var_builder(), &self.config)?)
    }
}
