//! Model folders in Hugging Face layout: the names of their files (here, and nowhere else),
//! where a folder comes from ([`hub`]: local, or fetched from the Hub), reading one
//! ([`load`]), writing one ([`save`]) and swapping a folder in whole ([`atomic`]).
//!
//! ```text
//! model_output/
//!   config.json             transformers' config, labels in id2label (read first, written last)
//!   model.safetensors       the weights (pytorch_model.bin is read too)
//!   tokenizer.json | vocab.txt | vocab.json + merges.txt (RoBERTa's byte-level BPE)
//!     | spm.model (DeBERTa-v3's SentencePiece),
//!   tokenizer_config.json, special_tokens_map.json
//!   pipeline.json           how text is prepared: cleaning, truncation, max_length, temperature
//!   1_Pooling/config.json   a sentence-transformers encoder's pooling (read only)
//! ```

pub mod atomic;
pub mod hub;
pub mod load;
pub mod save;
pub mod version;

pub use hub::ModelSource;
pub use load::{Head, LoadOptions, ModelFiles, PoolingChoice, Purpose};
pub use save::{SaveRequest, save};
pub use version::content_version;

pub const CONFIG_FILE: &str = "config.json";
pub const SAFETENSORS_FILE: &str = "model.safetensors";
pub const PYTORCH_FILE: &str = "pytorch_model.bin";
pub const TOKENIZER_JSON_FILE: &str = "tokenizer.json";
pub const VOCAB_FILE: &str = "vocab.txt";
/// A byte-level BPE vocabulary (RoBERTa's, as older Hub repositories ship it) and its merges.
pub const BPE_VOCAB_FILE: &str = "vocab.json";
pub const MERGES_FILE: &str = "merges.txt";
/// A SentencePiece Unigram model, how DeBERTa-v3 repositories ship their tokenizer.
pub const SPM_FILE: &str = "spm.model";
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
pub const SPECIAL_TOKENS_MAP_FILE: &str = "special_tokens_map.json";
pub const PIPELINE_FILE: &str = "pipeline.json";
/// Where sentence-transformers keeps the pooling an encoder was trained with.
pub const SENTENCE_TRANSFORMERS_POOLING_FILE: &str = "1_Pooling/config.json";

/// Files a model folder may have; the first groups are required (one of each alternative).
pub const WEIGHT_FILES: [&str; 2] = [SAFETENSORS_FILE, PYTORCH_FILE];
pub const TOKENIZER_FILES: [&str; 4] = [TOKENIZER_JSON_FILE, VOCAB_FILE, BPE_VOCAB_FILE, SPM_FILE];
/// Fetched when present; `merges.txt` goes with `vocab.json`, which checks it is there.
pub const OPTIONAL_FILES: [&str; 5] = [
    MERGES_FILE,
    TOKENIZER_CONFIG_FILE,
    SPECIAL_TOKENS_MAP_FILE,
    PIPELINE_FILE,
    SENTENCE_TRANSFORMERS_POOLING_FILE,
];
