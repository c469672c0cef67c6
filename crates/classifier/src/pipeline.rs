//! How raw text becomes model input, saved beside the weights (`pipeline.json`) so serving
//! prepares text exactly as training did.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cleaning::Cleaning;
use crate::error::{Error, Result};
use crate::tokenizer::Truncation;

pub const PIPELINE_FILE: &str = "pipeline.json";

/// The default token budget per text, `[CLS]` and `[SEP]` included.
pub const DEFAULT_MAX_LENGTH: usize = 256;

/// Cleaning, truncation and length limit of a model. A model folder without `pipeline.json`
/// (any plain Hugging Face checkpoint) gets the defaults: no cleaning, head truncation at
/// [`DEFAULT_MAX_LENGTH`] tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Pipeline {
    pub cleaning: Cleaning,
    pub max_length: usize,
    pub truncation: Truncation,
}

impl Default for Pipeline {
    fn default() -> Self {
        Self {
            cleaning: Cleaning::none(),
            max_length: DEFAULT_MAX_LENGTH,
            truncation: Truncation::Head,
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
        serde_json::from_str(&text)
            .map_err(|e| Error::artifact(&path, format!("not a valid pipeline file: {e}")))
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(PIPELINE_FILE);
        let mut bytes = serde_json::to_vec_pretty(self).expect("serializable");
        bytes.push(b'\n');
        std::fs::write(&path, bytes).map_err(|e| Error::io(path, e))
    }
}
