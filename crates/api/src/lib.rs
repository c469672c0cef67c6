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

/// Sets up logging to stderr: human-readable, or JSON when `LOG_FORMAT=json`.
pub fn init_logging() {
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        subscriber.json().init();
    } else {
        subscriber.init();
    }
}
