//! Writing a model folder that transformers loads as its `*ForSequenceClassification`
//! (`DistilBertForSequenceClassification`, `RobertaForSequenceClassification`, ...), swapped
//! in whole.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor};

use super::{CONFIG_FILE, WEIGHT_FILES};
use crate::error::{Error, Result};
use crate::models::config::ModelConfig;
use crate::models::distilbert::HeadActivation;
use crate::text::pipeline::Pipeline;
use crate::text::tokenizer::TextTokenizer;

/// Everything that makes up a saved model folder.
pub struct SaveRequest<'a> {
    pub config: &'a ModelConfig,
    /// `(checkpoint name, tensor)` for every parameter.
    pub tensors: &'a [(String, Tensor)],
    pub tokenizer: &'a TextTokenizer,
    pub pipeline: &'a Pipeline,
}

/// Writes a model folder `transformers` loads as the config's `*ForSequenceClassification`:
/// config.json, model.safetensors, tokenizer files and pipeline.json, all at once.
pub fn save(dir: &Path, req: &SaveRequest) -> Result<()> {
    let mut config = req.config.clone();
    config.set_architectures();
    config
        .extra_mut()
        .insert("problem_type".into(), "single_label_classification".into());
    config
        .validate()
        .map_err(|e| Error::Input(format!("refusing to save: {e}")))?;
    if let ModelConfig::DistilBert(c) = &config
        && c.classifier_activation != HeadActivation::Relu
    {
        return Err(Error::Input(
            "refusing to save: a BERT classifier's tanh pooler head has no DistilBERT layout \
             (transformers would run it with ReLU)"
                .into(),
        ));
    }
    let expected: HashMap<String, Vec<usize>> = config.parameter_shapes().into_iter().collect();
    for (name, t) in req.tensors {
        match expected.get(name) {
            Some(shape) if shape.as_slice() == t.dims() => {}
            Some(shape) => {
                return Err(Error::Input(format!(
                    "refusing to save: tensor `{name}` has shape {:?}, config implies {shape:?}",
                    t.dims()
                )));
            }
            None => {
                return Err(Error::Input(format!(
                    "refusing to save: `{name}` is not a {} parameter",
                    config.architecture()
                )));
            }
        }
    }
    if req.tensors.len() != expected.len() {
        return Err(Error::Input(format!(
            "refusing to save: {} tensors given, the config needs {}",
            req.tensors.len(),
            expected.len()
        )));
    }
    super::atomic::replace_dir(dir, |tmp| {
        let path = tmp.join(CONFIG_FILE);
        let mut bytes = serde_json::to_vec_pretty(&config).expect("serializable");
        bytes.push(b'\n');
        std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
        let weights: HashMap<&str, Tensor> = req
            .tensors
            .iter()
            .map(|(n, t)| Ok((n.as_str(), t.to_dtype(DType::F32)?.contiguous()?)))
            .collect::<Result<_>>()?;
        let path = tmp.join(WEIGHT_FILES[0]);
        candle_core::safetensors::save(&weights, &path)
            .map_err(|e| Error::artifact(&path, format!("cannot write weights: {e}")))?;
        req.tokenizer
            .save(tmp, config.max_tokens(), config.tokenizer_class())?;
        req.pipeline.save(tmp)
    })
}
