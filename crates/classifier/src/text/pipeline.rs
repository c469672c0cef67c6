//! How raw text becomes model input, saved beside the weights (`pipeline.json`) so serving
//! prepares text exactly as training did.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::cleaning::Cleaning;
use super::tokenizer::Truncation;
use crate::error::{Error, Result};

use crate::model_dir::PIPELINE_FILE;

/// The default token budget per text, `[CLS]` and `[SEP]` included.
pub const DEFAULT_MAX_LENGTH: usize = 256;

/// Cleaning, truncation, length limit and calibration of a model. A model folder without
/// `pipeline.json` (any plain Hugging Face checkpoint) gets the defaults: no cleaning, head
/// truncation at [`DEFAULT_MAX_LENGTH`] tokens, temperature 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Pipeline {
    pub cleaning: Cleaning,
    pub max_length: usize,
    pub truncation: Truncation,
    /// Probabilities are `softmax(logits / temperature)`: fitted on the validation split
    /// after training (Guo et al. 2017), so confidences are calibrated while the logits, and
    /// so transformers' outputs for the same weights, stay as they are. Folders written
    /// before calibration have 1.
    pub temperature: f32,
}

impl Default for Pipeline {
    fn default() -> Self {
        Self {
            cleaning: Cleaning::none(),
            max_length: DEFAULT_MAX_LENGTH,
            truncation: Truncation::Head,
            temperature: 1.0,
        }
    }
}

impl Pipeline {
    /// Reads `dir/pipeline.json`, or the defaults when the folder has none.
    pub fn load_or_default(dir: &Path) -> Result<Self> {
        let path = dir.join(PIPELINE_FILE);
        if !path.exists() {
            return Ok(Self::default());
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let pipeline: Self = serde_json::from_str(&text)
            .map_err(|e| Error::artifact(&path, format!("not a valid pipeline file: {e}")))?;
        if !(pipeline.temperature.is_finite() && pipeline.temperature > 0.0) {
            return Err(Error::artifact(
                &path,
                format!(
                    "temperature must be a positive number, got {}",
                    pipeline.temperature
                ),
            ));
        }
        Ok(pipeline)
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(PIPELINE_FILE);
        let mut bytes = serde_json::to_vec_pretty(self).expect("serializable");
        bytes.push(b'\n');
        std::fs::write(&path, bytes).map_err(|e| Error::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_from_before_calibration_has_temperature_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(PIPELINE_FILE),
            r#"{"cleaning": {"lowercase": true}, "max_length": 128, "truncation": "head-tail"}"#,
        )
        .unwrap();
        let p = Pipeline::load_or_default(dir.path()).unwrap();
        assert_eq!((p.max_length, p.temperature), (128, 1.0));
        std::fs::write(
            dir.path().join(PIPELINE_FILE),
            r#"{"max_length": 128, "temperature": 0}"#,
        )
        .unwrap();
        let err = Pipeline::load_or_default(dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("temperature must be a positive number"),
            "{err}"
        );
    }
}
