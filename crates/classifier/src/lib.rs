//! The sentiment classifier's core: a DistilBERT sequence classifier on candle that loads,
//! runs, trains and saves Hugging Face checkpoints.
//!
//! - [`models`]: the architectures (`distilbert`, and `bert` converted on load).
//! - [`ops`]: the differentiable tensor operations they are built from.
//! - [`tokenizer`], [`cleaning`], [`pipeline`]: from raw text to token ids, identically at
//!   training and serving time.
//! - [`hub`], [`checkpoint`], [`atomic`]: model folders (local or Hub), read and written.
//! - [`inference`]: a loaded model classifying any number of texts in bounded batches.
//! - [`dataset`]: the processed `text,label,source` CSV files.
//! - [`metrics`]: accuracy, precision, recall, F1 and the confusion matrix.
//! - [`calibration`]: temperature scaling, expected calibration error, reliability bins.
//! - [`runtime`]: CPU threads and peak memory.
//!
//! No HTTP and no command line here: the binaries build on this crate.
//!
//! ```no_run
//! let clf = classifier::Classifier::load("model_output")?;
//! let preds = clf.predict(&["A wonderful film.", "Dull and far too long."])?;
//! for p in preds {
//!     println!("{} {:.3}", clf.labels()[p.class], p.confidence());
//! }
//! # Ok::<(), classifier::Error>(())
//! ```

pub mod atomic;
pub mod calibration;
pub mod checkpoint;
pub mod cleaning;
pub mod dataset;
pub mod error;
pub mod hub;
pub mod inference;
pub mod metrics;
pub mod models;
pub mod ops;
pub mod pipeline;
pub mod results;
pub mod runtime;
pub mod testing;
pub mod tokenizer;

pub use checkpoint::{Checkpoint, LoadOptions, PoolingChoice};
pub use cleaning::Cleaning;
pub use error::{Error, Result};
pub use inference::{BatchLimits, Classifier, LongText, LongTextPolicy, Prediction};
pub use metrics::ClassificationMetrics;
pub use models::distilbert::{Config, DistilBertForSequenceClassification, Mode, Pooling};
pub use ops::{MatmulPrecision, Precision, set_matmul_precision};
pub use pipeline::Pipeline;
pub use tokenizer::{TextTokenizer, Truncation};
