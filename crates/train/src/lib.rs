//! Fine-tuning the DistilBERT sentiment classifier on the CPU.
//!
//! - [`optim`]: fused AdamW with gradient accumulation and clipping.
//! - [`schedule`]: linear warm-up and decay.

pub mod optim;
pub mod schedule;
