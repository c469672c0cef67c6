//! Tiny models for tests and examples: a small WordPiece vocabulary and a randomly
//! initialised DistilBERT of a few layers, written as an ordinary model folder. Hermetic:
//! nothing is downloaded.

use std::collections::BTreeSet;
use std::path::Path;

use crate::error::Result;
use crate::model_dir::{SaveRequest, save};
use crate::models::ModelConfig;
use crate::models::distilbert::Config;
use crate::models::random_tensors;
use crate::text::pipeline::Pipeline;
use crate::text::tokenizer::{SpecialTokens, TextTokenizer};

/// Dimensions of a tiny model.
#[derive(Debug, Clone, Copy)]
pub struct TinySize {
    pub dim: usize,
    pub layers: usize,
    pub heads: usize,
    pub hidden: usize,
    pub max_positions: usize,
}

impl Default for TinySize {
    fn default() -> Self {
        Self {
            dim: 32,
            layers: 2,
            heads: 4,
            hidden: 64,
            max_positions: 128,
        }
    }
}

/// A vocabulary of the special tokens, single characters (as word starts and `##`
/// continuations) and every lower-cased word of `texts`.
pub fn vocab_for(texts: &[&str]) -> Vec<String> {
    let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut chars = BTreeSet::new();
    let mut words = BTreeSet::new();
    for t in texts {
        for w in t.to_lowercase().split(|c: char| !c.is_alphanumeric()) {
            if !w.is_empty() {
                chars.extend(w.chars());
                words.insert(w.to_string());
            }
        }
        chars.extend(t.chars().filter(|c| c.is_ascii_punctuation()));
    }
    for c in &chars {
        vocab.push(c.to_string());
        if c.is_alphanumeric() {
            vocab.push(format!("##{c}"));
        }
    }
    vocab.extend(words.into_iter().filter(|w| w.chars().count() > 1));
    vocab.dedup();
    vocab
}

/// Writes a randomly initialised DistilBERT classifier (labels negative/positive) with a
/// WordPiece tokenizer over `vocab` into `dir`.
pub fn write_tiny_model(dir: &Path, vocab: &[String], size: TinySize, seed: u64) -> Result<()> {
    let refs: Vec<&str> = vocab.iter().map(String::as_str).collect();
    let tokenizer = TextTokenizer::from_vocab(&refs, true, SpecialTokens::default())?;
    let mut config = Config {
        vocab_size: vocab.len(),
        max_position_embeddings: size.max_positions,
        n_layers: size.layers,
        n_heads: size.heads,
        dim: size.dim,
        hidden_dim: size.hidden,
        ..Config::default()
    };
    config.set_labels(&["negative".to_string(), "positive".to_string()]);
    let config = ModelConfig::DistilBert(config);
    let tensors = random_tensors(&config, seed)?;
    save(
        dir,
        &SaveRequest {
            config: &config,
            tensors: &tensors,
            tokenizer: &tokenizer,
            pipeline: &Pipeline::default(),
        },
    )
}
