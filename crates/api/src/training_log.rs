//! `GET /training`: the latest training run's summary and step/epoch records, read from the
//! results folder that `train` writes.

use std::path::Path;

/// A JSON file's value; `None` when it is missing or malformed.
pub fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Records kept from a run log: enough for any chart, bounded for a huge log.
const MAX_RECORDS: usize = 20_000;

/// The latest run under `results`: run_summary.json and its runs/<id>/metrics.jsonl (or the
/// newest run folder when there is no summary yet, e.g. while training).
pub fn read(results: &Path) -> api_types::TrainingLog {
    let summary = read_json(&results.join(classifier::results::RUN_SUMMARY_FILE));
    let runs = results.join(classifier::results::RUNS_DIR);
    let run_dir = summary
        .as_ref()
        .and_then(|s| s["run_id"].as_str())
        .map(|id| runs.join(id))
        .filter(|d| d.is_dir())
        .or_else(|| {
            let mut dirs: Vec<_> = std::fs::read_dir(&runs)
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect();
            dirs.sort();
            dirs.pop()
        });
    let records = run_dir
        .and_then(|d| std::fs::read_to_string(d.join(classifier::results::RUN_LOG_FILE)).ok())
        .map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .take(MAX_RECORDS)
                .collect()
        })
        .unwrap_or_default();
    api_types::TrainingLog { summary, records }
}
