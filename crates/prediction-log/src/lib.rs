//! The prediction log: every prediction the api serves, and the corrections users send for
//! them, in SQLite (one file, zero set-up) or PostgreSQL (several api replicas), through one
//! sqlx pool with embedded migrations.
//!
//! - [`Store`]: the database: connect (and migrate), insert, feedback, retention, and the
//!   reads behind monitoring and retraining.
//! - [`Logger`]: the writer the api uses: rows go into a bounded buffer and are inserted in
//!   batches by a background task, so a slow or unreachable database never slows or fails a
//!   request; what does not fit is dropped and counted.
//! - [`read_corrections`]: the corrected rows as labelled examples, for `preprocess`.

mod row;
mod store;
mod writer;

pub use row::{Correction, Corrections, FeedbackOutcome, Logged, MonitorRow, Row, Source};
pub use store::{LogError, Store, check_url, hide_password, read_corrections};
pub use writer::{LogMetrics, LogOptions, Logger, now_ms};
