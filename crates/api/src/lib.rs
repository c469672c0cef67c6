//! The sentiment api and the batch command.
//!
//! - [`server`]: routes, validation, auth, logs and metrics per request, OpenAPI, shutdown.
//! - [`batching`]: the bounded queue and the model thread that batches concurrent requests.
//! - [`model`]: loading (retried until a model is there), warm-up, readiness.
//! - [`error`]: every failure as a status code and an `{error, error_type}` body.
//! - [`metrics`], [`docs`], [`config`].
//! - [`batch`]: `batch_predict`, a CSV in, the CSV with predictions out.

pub mod batch;
pub mod batching;
pub mod config;
pub mod docs;
pub mod error;
pub mod metrics;
pub mod model;
pub mod server;

pub use config::Args;
