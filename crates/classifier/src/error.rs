//! The library's one error type. Every variant names what went wrong, where (a file, a hub
//! id, an input), and, where there is one, how to fix it.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file of a model folder is missing, unreadable or malformed.
    #[error("{}: {problem}", path.display())]
    Artifact { path: PathBuf, problem: String },

    /// A Hugging Face Hub id could not be resolved (offline, unknown id, no access).
    #[error(
        "cannot get model `{id}` from the Hugging Face Hub: {reason}. Hub cache: {}. \
         If this machine is offline, pass a local model folder instead (a directory with \
         config.json, model.safetensors or pytorch_model.bin, and tokenizer.json or vocab.txt), \
         or fill the cache on a connected machine and set HF_HUB_OFFLINE=1",
        cache.display()
    )]
    Hub {
        id: String,
        cache: PathBuf,
        reason: String,
    },

    /// Bad caller input (settings, texts); the message says which and why.
    #[error("{0}")]
    Input(String),

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl Error {
    pub fn artifact(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::Artifact {
            path: path.into(),
            problem: problem.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
