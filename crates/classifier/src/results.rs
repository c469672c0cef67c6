//! The results folder that `train` writes and the api and ui read: its file names, in one
//! place for the writer and the readers.
//!
//! ```text
//! results/
//!   metrics.json          the final run's validation and test metrics
//!   run_summary.json      the final run's settings, data, timings and selection
//!   runs/<run id>/metrics.jsonl   one record per logged step and per epoch
//!   checkpoint/           the resume state of an unfinished run
//! ```

use std::path::{Path, PathBuf};

pub const METRICS_FILE: &str = "metrics.json";
pub const RUN_SUMMARY_FILE: &str = "run_summary.json";
/// The folder of every run's log, one sub-folder per run id.
pub const RUNS_DIR: &str = "runs";
/// A run's log inside its folder under [`RUNS_DIR`].
pub const RUN_LOG_FILE: &str = "metrics.jsonl";
/// The resume state of an unfinished run.
pub const CHECKPOINT_DIR: &str = "checkpoint";

/// The folder of run `run_id` under `results`.
pub fn run_dir(results: &Path, run_id: &str) -> PathBuf {
    results.join(RUNS_DIR).join(run_id)
}

/// The model versions `train` keeps (`models/<run-id>/`, each with its [`VERSION_FILE`],
/// and [`REGISTRY_FILE`]) and the api lists: their file names, and where they live.
pub mod versions {
    use std::path::{Path, PathBuf};

    /// A version's record inside its folder.
    pub const VERSION_FILE: &str = "version.json";
    /// The serving version and every promotion, in the models folder.
    pub const REGISTRY_FILE: &str = "registry.json";

    /// The models folder: `explicit` when given, else `models` beside the served folder.
    pub fn models_dir(explicit: Option<&Path>, served: &Path) -> PathBuf {
        explicit
            .map(Path::to_path_buf)
            .unwrap_or_else(|| served.parent().unwrap_or(Path::new("")).join("models"))
    }
}
