//! The run's record once it is done: metrics.json, run_summary.json, and the resume state
//! removed.

use std::path::Path;

use anyhow::{Context, Result};
use classifier::model_dir::Head;
use classifier::results;

use super::{Outcome, Run, now};
use crate::resume::{self, TrainState};
use crate::runlog::{BaseModel, DataStats, MetricsFile, Outputs, RunSummary, Versions};

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
        let selection = format!(
            "epoch {best_epoch} of {}: the best macro F1 on {} ({} rows)",
            args.epochs, data.validation_from, data.eval_rows
        );
        classifier::model_dir::atomic::write_json(
            &args.results_dir.join(results::METRICS_FILE),
            &MetricsFile {
                eval: last.test.clone(),
                epoch: best_epoch,
                labels: self.labels(),
                split: format!(
                    "test ({} of {} rows), evaluated once, on the kept model",
                    data.test_rows, data.test_rows_available
                ),
                selection: selection.clone(),
                validation: last.validation,
                calibration: last.calibration.clone(),
                model_dir: args.output_dir.clone(),
            },
        )?;

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
                model_dir: args.output_dir.clone(),
                metrics: args.results_dir.join(results::METRICS_FILE),
                run_log: run_log.to_path_buf(),
            },
        };
        classifier::model_dir::atomic::write_json(
            &args.results_dir.join(results::RUN_SUMMARY_FILE),
            &summary,
        )?;
        if resume::exists(&self.ckpt_dir) {
            let _ = std::fs::remove_dir_all(&self.ckpt_dir);
        }
        Ok(Outcome::Completed(Box::new(summary)))
    }
}
