//! The sentiment classifier's core: a transformer sequence classifier on candle that loads,
//! runs, trains and saves Hugging Face model folders.
//!
//! - [`models`]: the architectures, one file each (`distilbert`, `electra`, `roberta` for RoBERTa,
//!   XLM-RoBERTa and CamemBERT, and `bert` converted on load), built from shared transformer
//!   layers over the `kernels` crate's differentiable operations.
//! - [`text`]: from raw text to token ids (cleaning, tokenizer, pipeline), identically at
//!   training and serving time.
//! - [`model_dir`]: model folders (local or Hub): their file names, read, written, swapped in.
//! - [`inference`]: a loaded model classifying any number of texts in bounded batches.
//! - [`dataset`]: the processed `text,label,source` CSV files; [`results`]: the results folder.
//! - [`metrics`]: accuracy, precision, recall, F1 and the confusion matrix.
//! - [`calibration`]: temperature scaling, expected calibration error, reliability bins.
//! - [`runtime`]: CPU threads and peak memory.
//! - `testing` (feature `testing`): tiny random model folders for other crates' tests.
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

pub mod calibration;
pub mod dataset;
pub mod error;
pub mod inference;
pub mod metrics;
pub mod model_dir;
pub mod models;
pub mod results;
pub mod runtime;
#[cfg(feature = "testing")]
pub mod testing;
pub mod text;

pub use error::{Error, Result};
pub use inference::{BatchLimits, Classifier, LongText, LongTextPolicy, Prediction};
pub use kernels::{MatmulPrecision, Precision, set_matmul_precision};
pub use metrics::ClassificationMetrics;
pub use model_dir::{LoadOptions, ModelFiles, PoolingChoice};
pub use models::{Mode, ModelConfig, Pooling, SequenceClassifier};
pub use text::cleaning::Cleaning;
pub use text::pipeline::Pipeline;
pub use text::tokenizer::{Encoded, Read, TextTokenizer, Truncation};
