//! `GET /training`: the latest training run's summary and step/epoch records, read from the
//! results folder that `train` writes; `GET /models`: the model versions it kept.

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

/// The versions under `models` (each folder's version.json, oldest first), marking the one
/// whose model_version is `serving`.
pub fn versions(models: &Path, serving: Option<&str>) -> api_types::ModelVersions {
    use classifier::results::versions::{REGISTRY_FILE, VERSION_FILE};
    let registry = read_json(&models.join(REGISTRY_FILE)).unwrap_or_default();
    let promoted_ever: Vec<&str> = registry["promotions"]
        .as_array()
        .map(|p| p.iter().filter_map(|p| p["id"].as_str()).collect())
        .unwrap_or_default();
    let mut versions: Vec<api_types::ModelVersion> = std::fs::read_dir(models)
        .into_iter()
        .flatten()
        .filter_map(|e| read_json(&e.ok()?.path().join(VERSION_FILE)))
        .filter_map(|v| serde_json::from_value::<api_types::ModelVersion>(v).ok())
        .map(|mut v| {
            v.was_promoted = promoted_ever.contains(&v.id.as_str());
            v.serving = serving == Some(v.model_version.as_str());
            v
        })
        .collect();
    versions.sort_by(|a, b| a.id.cmp(&b.id));
    api_types::ModelVersions {
        models_dir: models.display().to_string(),
        promoted: registry["serving"].as_str().map(str::to_string),
        serving_model_version: serving.map(str::to_string),
        versions,
    }
}
