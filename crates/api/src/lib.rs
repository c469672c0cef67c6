//! The sentiment api and the batch command, layered as Text Embeddings Inference is:
//! transport -> inference facade -> backend, each with its own typed errors.
//!
//! - [`http`]: routes, request parsing, auth, logs and metrics per request, OpenAPI, shutdown;
//!   it only translates requests and errors.
//! - [`infer`]: the facade that tokenises, queues, batches on the model thread and answers.
//! - [`model`]: loading (retried until a model is there), warm-up, readiness.
//! - [`monitor`]: the prediction log, feedback, the live window and drift scores.
//! - [`metrics`], [`config`], [`training_log`] (`GET /training`).
//! - [`batch`]: `batch_predict`, a CSV or Parquet table in, the table with predictions out;
//!   [`batch::shard`]: one worker's slice of it, and the merge of every worker's part.

#![forbid(unsafe_code)]

pub mod batch;
pub mod config;
pub mod http;
pub mod infer;
pub mod metrics;
pub mod model;
pub mod monitor;
pub mod training_log;

pub use config::Args;
