//! Model architectures, one file each, mirroring the Hugging Face checkpoint layout.

pub mod bert;
pub mod distilbert;
pub mod trainable;

pub use trainable::{Trainable, random_tensors};
