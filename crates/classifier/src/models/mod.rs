//! Model architectures, one file each, mirroring the Hugging Face checkpoint layout, built
//! from the shared transformer pieces in [`layers`] and [`head`] into one
//! [`SequenceClassifier`], with [`ModelConfig`] (tagged on `model_type`) choosing the file.

pub mod bert;
pub mod config;
pub mod deberta_v2;
pub mod distilbert;
pub mod electra;
pub mod head;
pub mod layers;
pub mod roberta;
pub mod sequence_classifier;
pub mod trainable;

pub use config::ModelConfig;
pub use head::Pooling;
pub use layers::Mode;
pub use sequence_classifier::SequenceClassifier;
pub use trainable::{Trainable, random_tensors};
