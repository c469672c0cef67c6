//! Model architectures, one file each, mirroring the Hugging Face checkpoint layout.

pub mod bert;
pub mod distilbert;
