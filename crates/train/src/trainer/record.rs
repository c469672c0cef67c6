//! The run's record once it is done: metrics.json, run_summary.json, the version registered
//! (and promoted, or not), and the resume state removed.

use std::path::Path;

use anyhow::{Context, Result};
use classifier::dataset::{TEST_FILE, TRAIN_FILE, VALIDATION_FILE};
use classifier::model_dir::Head;
use classifier::results;

use super::evaluation::Final;
use super::{Outcome, Run, now};
use crate::registry::{self, Models, VersionInfo};
use crate::resume::{self, TrainState};
use crate::runlog::{BaseModel, DataStats, MetricsFile, Outputs, RunSummary, Versions};
use crate::tracking;

/// The data report `preprocess` writes beside the splits.
const REPORT_FILE: &str = "report.json";

impl Run<'_> {
    /// After the last epoch: calibration and the one test evaluation, then metrics.json and
    /// run_summary.json; the resume checkpoint is no longer needed.
    pub(super) fn finish(
        &self,
        state: &TrainState,
        mut data: DataStats,
        run_log: &Path,
        wall_time_s: f64,
    ) -> Result<Outcome> {
        let args = self.args;
        let best_epoch = state.best_epoch.context("no epoch was evaluated")?;
        let last = self.final_evaluation(&mut data)?;
        let new_f1 = last.validation.overall.macro_f1;
        let selection = format!(
            "epoch {best_epoch} of {}: the best macro F1 on {} ({} rows)",
            args.epochs, data.validation_from, data.eval_rows
        );
        self.write_metrics(&last, best_epoch, &selection, &data)?;
        // Held from the comparison to the promotion, so that two trainers cannot both
        // promote against the same serving model.
        let models = Models::open(&args.models_dir(), &args.output_dir)?;
        let (promote, reason) = registry::decide(args.promote, new_f1, self.serving_macro_f1()?);

        let summary = RunSummary {
            run_id: state.run_id.clone(),
            status: "completed".into(),
            started_at: state.started_at.clone(),
            finished_at: now(),
            base_model: BaseModel {
                id: self.base.source.id.clone(),
                revision: self.base.source.revision.clone(),
                model_type: self.base.original_model_type.clone(),
                head: match &self.base.head {
                    Head::Loaded => "loaded".into(),
                    Head::Fresh(why) => format!("fresh: {why}"),
                },
                parameters: self.model.params.iter().map(|(_, v)| v.elem_count()).sum(),
            },
            hyperparameters: self.hyper.clone(),
            data,
            epochs: state.history.clone(),
            best_epoch: state.best_epoch,
            selection,
            test: Some(last.test),
            calibration: Some(last.calibration),
            wall_time_s,
            train_time_s: state.train_seconds,
            train_examples_per_s: state.examples_seen as f64 / state.train_seconds.max(1e-9),
            optimizer_steps: state.optimizer_step,
            peak_rss_mb: classifier::runtime::peak_rss_bytes().map(|b| b as f64 / 1048576.0),
            threads: rayon::current_num_threads(),
            matmul_precision: kernels::gemm::matmul_precision(),
            resumed: state.resumed,
            versions: Versions::default(),
            outputs: Outputs {
                model_dir: self.model_dir.clone(),
                metrics: args.results_dir.join(results::METRICS_FILE),
                run_log: run_log.to_path_buf(),
                promoted: Some(promote),
                promotion: Some(reason.clone()),
                served_dir: Some(args.output_dir.clone()),
            },
        };
        classifier::model_dir::atomic::write_json(
            &args.results_dir.join(results::RUN_SUMMARY_FILE),
            &summary,
        )?;
        let version = self.register(&models, &summary, new_f1, (promote, &reason))?;
        drop(models);
        self.track(&summary, &version, run_log, promote);
        if resume::exists(&self.ckpt_dir) {
            let _ = std::fs::remove_dir_all(&self.ckpt_dir);
        }
        Ok(Outcome::Completed(Box::new(summary)))
    }

    /// Logs the finished run to MLflow when a tracking server is set (never fails).
    fn track(&self, summary: &RunSummary, version: &VersionInfo, run_log: &Path, promoted: bool) {
        let Some(mlflow) = self.args.mlflow() else {
            return;
        };
        let mut params: Vec<(String, String)> = version
            .data_hashes
            .iter()
            .map(|(file, hash)| (format!("data_hash.{file}"), hash.clone()))
            .collect();
        params.push(("promote".into(), self.args.promote.to_string()));
        params.push(("model_version".into(), version.model_version.clone()));
        tracking::log_run(
            &mlflow,
            &tracking::FinishedRun {
                summary,
                run_log,
                model_dir: &self.model_dir,
                params,
                promoted,
            },
        );
    }

    /// results/metrics.json: the kept model's one test evaluation, with how it was chosen.
    fn write_metrics(
        &self,
        last: &Final,
        epoch: usize,
        selection: &str,
        data: &DataStats,
    ) -> Result<()> {
        Ok(classifier::model_dir::atomic::write_json(
            &self.args.results_dir.join(results::METRICS_FILE),
            &MetricsFile {
                eval: last.test.clone(),
                epoch,
                labels: self.labels(),
                split: format!(
                    "test ({} of {} rows), evaluated once, on the kept model",
                    data.test_rows, data.test_rows_available
                ),
                selection: selection.to_string(),
                validation: last.validation.clone(),
                calibration: last.calibration.clone(),
                model_dir: self.model_dir.clone(),
            },
        )?)
    }

    /// Records the finished version (its version.json, and the run's metrics, summary and
    /// data report beside the model), promotes it if so decided, and prunes old versions.
    fn register(
        &self,
        models: &Models,
        summary: &RunSummary,
        validation_macro_f1: f64,
        (promote, reason): (bool, &str),
    ) -> Result<VersionInfo> {
        let args = self.args;
        let mut data_hashes = std::collections::BTreeMap::new();
        for name in [TRAIN_FILE, VALIDATION_FILE, TEST_FILE] {
            let path = args.data_dir.join(name);
            if path.is_file() {
                data_hashes.insert(name.to_string(), registry::file_hash(&path)?);
            }
        }
        let copies = [
            args.results_dir.join(results::METRICS_FILE),
            args.results_dir.join(results::RUN_SUMMARY_FILE),
            args.data_dir.join(REPORT_FILE),
        ];
        for from in copies.iter().filter(|p| p.is_file()) {
            let to = self.model_dir.join(from.file_name().expect("a file name"));
            std::fs::copy(from, &to).with_context(|| format!("cannot copy {}", from.display()))?;
        }
        let test = summary.test.as_ref().map(|t| &t.overall);
        let version = VersionInfo {
            id: summary.run_id.clone(),
            created_at: summary.finished_at.clone(),
            base_model: summary.base_model.id.clone(),
            labels: self.labels(),
            validation_macro_f1,
            test_macro_f1: test.map(|t| t.macro_f1),
            test_accuracy: test.map(|t| t.accuracy),
            model_version: classifier::model_dir::content_version(&self.model_dir)?,
            data_hashes,
        };
        models.add(&version)?;
        if promote {
            models.promote(&summary.run_id, reason)?;
            tracing::info!(
                "promoted {} into {}: {reason}",
                summary.run_id,
                args.output_dir.display()
            );
        } else {
            tracing::info!(
                "kept {} without promoting it: {reason}",
                self.model_dir.display()
            );
        }
        for id in models.prune(args.keep_models, &summary.run_id)? {
            tracing::info!("removed version {id} (--keep-models {})", args.keep_models);
        }
        Ok(version)
    }
}
