//! Evaluation: the validation split after every epoch (the best epoch saved), and after the
//! last, calibration and the kept model's one look at the test split.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use classifier::dataset::{Example, TEST_FILE, read_examples};
use classifier::model_dir::PIPELINE_FILE;
use classifier::model_dir::{self, SaveRequest};
use classifier::{Classifier, Pipeline, Prediction, Read, calibration};
use indicatif::ProgressBar;
use monitoring::{Observation, REFERENCE_FILE, Reference};

use super::{Run, class_balance};
use crate::data::stratified_sample;
use crate::evaluate::{self, Evaluation, score};
use crate::resume::TrainState;
use crate::runlog::{CalibrationReport, DataStats, EpochRecord, Record, RunLog};

/// Examples evaluated between checks for an interrupt.
pub(super) const EVAL_CHUNK: usize = 256;

/// Logs the kept model's one look at the test split, and what calibration did.
pub(super) fn log_final(test: &Evaluation, c: &CalibrationReport) {
    let m = &test.overall;
    tracing::info!(
        "kept model on {} test examples (first look): accuracy {:.4} balanced {:.4} f1 {:.4} macro_f1 {:.4}; temperature {:.3} (validation ECE {:.4} -> {:.4}, test ECE {:.4} -> {:.4})",
        m.examples,
        m.accuracy,
        m.balanced_accuracy,
        m.f1_score,
        m.macro_f1,
        c.temperature,
        c.validation_ece_before,
        c.validation_ece_after,
        c.test_ece_before,
        c.test_ece_after
    );
    for (source, s) in &test.per_source {
        tracing::info!(
            "  {source}: accuracy {:.4} balanced {:.4} f1 {:.4} ({} examples)",
            s.accuracy,
            s.balanced_accuracy,
            s.f1_score,
            s.examples
        );
    }
}

/// The kept model's calibration and its one evaluation on the test split.
pub(super) struct Final {
    pub(super) test: Evaluation,
    pub(super) validation: Evaluation,
    pub(super) calibration: CalibrationReport,
}

impl Run<'_> {
    pub(super) fn classifier(&self) -> Result<Classifier> {
        let model = self.model.frozen_model(&self.base.config)?;
        Ok(Classifier::from_parts(
            model,
            self.base.tokenizer.clone(),
            self.pipeline.clone(),
            self.base.config.clone(),
            self.base.source.clone(),
        )?)
    }

    /// Evaluates in chunks, giving up (None) if `stop` is set meanwhile.
    pub(super) fn evaluate(&self, stop: &AtomicBool) -> Result<Option<Evaluation>> {
        let clf = self.classifier()?;
        let mut preds = Vec::with_capacity(self.eval.len());
        for chunk in self.eval_ids.chunks(EVAL_CHUNK) {
            if stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            preds.extend(clf.predict_ids(chunk)?);
        }
        Ok(Some(score(&preds, &self.eval, &self.labels())))
    }

    /// Runs `f` with the weight average (if any) in the model instead of the training weights.
    pub(super) fn with_eval_weights<R>(&mut self, f: impl FnOnce(&Self) -> Result<R>) -> Result<R> {
        if let Some(ema) = self.ema.as_mut() {
            ema.swap(&self.model.params)?;
        }
        let out = f(self);
        if let Some(ema) = self.ema.as_mut() {
            ema.swap(&self.model.params)?;
        }
        out
    }

    pub(super) fn save_model(&self) -> Result<()> {
        model_dir::save(
            &self.model_dir,
            &SaveRequest {
                config: &self.base.config,
                tensors: &self.model.named_tensors(),
                tokenizer: &self.base.tokenizer,
                pipeline: &self.pipeline,
            },
        )
        .with_context(|| format!("saving the model to {}", self.model_dir.display()))
    }

    /// Logs and records the evaluation at the end of an epoch, and saves the model when it
    /// has the best validation macro F1 so far.
    pub(super) fn record_epoch(
        &mut self,
        state: &mut TrainState,
        log: &mut RunLog,
        progress: &ProgressBar,
        eval: Evaluation,
        train_loss: f64,
        eval_seconds: f64,
    ) -> Result<()> {
        // The epoch just finished, counted from 1 (the caller advances `state.epoch` after).
        let epoch = state.epoch + 1;
        let m = &eval.overall;
        progress.suspend(|| {
            tracing::info!(
                "epoch {} on {} validation examples: accuracy {:.4} balanced {:.4} f1 {:.4} macro_f1 {:.4} loss {:.4} ece {:.4} ({:.0}s)",
                epoch,
                m.examples,
                m.accuracy,
                m.balanced_accuracy,
                m.f1_score,
                m.macro_f1,
                m.loss.unwrap_or(f64::NAN),
                m.ece.unwrap_or(f64::NAN),
                eval_seconds
            );
            for (source, s) in &eval.per_source {
                tracing::info!("  {source}: accuracy {:.4} f1 {:.4} ({} examples)", s.accuracy, s.f1_score, s.examples);
            }
        });
        log.write(&Record::Eval {
            step: state.optimizer_step,
            epoch,
            metrics: eval.clone(),
        })?;
        let macro_f1 = eval.overall.macro_f1;
        state.history.push(EpochRecord {
            epoch,
            optimizer_steps: state.optimizer_step,
            train_loss,
            eval,
        });
        // Selection on validation only, by macro F1: label-symmetric, so class weights
        // or a skewed split cannot make a one-sided model look best.
        if state.best_f1.is_none_or(|best| macro_f1 > best) {
            state.best_f1 = Some(macro_f1);
            state.best_epoch = Some(epoch);
            self.with_eval_weights(Self::save_model)?;
            progress.suspend(|| {
                tracing::info!(
                    "epoch {} has the best validation macro F1 so far: saved {}",
                    epoch,
                    self.model_dir.display()
                )
            });
        }
        Ok(())
    }

    /// Loads the kept model back from the model folder (exactly what is served, long texts
    /// in windows as serving reads them), fits its confidence temperature on the validation
    /// split and stores it in pipeline.json, then reads the test split, for the first time,
    /// and evaluates the calibrated model on it once.
    pub(super) fn final_evaluation(&self, data: &mut DataStats) -> Result<Final> {
        let args = self.args;
        let clf = Classifier::load_dir(&self.model_dir).with_context(|| {
            format!("reloading the kept model from {}", self.model_dir.display())
        })?;
        let predict = |examples: &[Example]| predict_served(&clf, examples);
        let val_raw = predict(&self.eval)?;
        let logits: Vec<Vec<f32>> = val_raw.iter().map(|p| p.logits.clone()).collect();
        let labels: Vec<usize> = self.eval.iter().map(|e| e.label).collect();
        let t = calibration::fit_temperature(&logits, &labels);
        let pipeline = Pipeline {
            temperature: t,
            ..clf.pipeline().clone()
        };
        classifier::model_dir::atomic::write_json(&self.model_dir.join(PIPELINE_FILE), &pipeline)?;
        let at = |preds: &[Prediction], t: f32| -> Vec<Prediction> {
            preds
                .iter()
                .map(|p| Prediction::from_logits(p.logits.clone(), t))
                .collect()
        };

        let test_path = args.data_dir.join(TEST_FILE);
        let test_all = read_examples(&test_path)?;
        data.test_rows_available = test_all.len();
        let test = stratified_sample(test_all, args.test_samples, args.seed ^ 2);
        anyhow::ensure!(!test.is_empty(), "{} has no rows", test_path.display());
        data.test_rows = test.len();
        data.test_class_balance = class_balance(&test, self.labels().len());
        let test_raw = predict(&test)?;
        let (val_after, test_after) = (at(&val_raw, t), at(&test_raw, t));
        let source = format!("{} ({} rows)", data.validation_from, self.eval.len());
        write_reference(&clf, &self.eval, &val_after, source, &self.model_dir)?;
        let reliability = |preds: &[Prediction], examples: &[Example]| {
            let refs: Vec<&Prediction> = preds.iter().collect();
            let labels: Vec<usize> = examples.iter().map(|e| e.label).collect();
            evaluate::calibration(&refs, &labels)
        };
        let test_before = reliability(&test_raw, &test);
        let test_calibrated = reliability(&test_after, &test);
        let calibration = CalibrationReport {
            temperature: t,
            fitted_on: format!("{} ({} rows)", data.validation_from, self.eval.len()),
            validation_nll_before: calibration::nll(&logits, &labels, 1.0),
            validation_nll_after: calibration::nll(&logits, &labels, t.into()),
            validation_ece_before: reliability(&val_raw, &self.eval).ece,
            validation_ece_after: reliability(&val_after, &self.eval).ece,
            test_ece_before: test_before.ece,
            test_ece_after: test_calibrated.ece,
            test_reliability_before: test_before,
            test_reliability: test_calibrated,
        };
        let test_eval = score(&test_after, &test, &self.labels());
        let validation = score(&val_after, &self.eval, &self.labels());
        log_final(&test_eval, &calibration);
        Ok(Final {
            test: test_eval,
            validation,
            calibration,
        })
    }
}

/// The drift reference served traffic is compared with: the calibrated model's predictions
/// on the validation split (as served: long texts in windows), written beside the model.
fn write_reference(
    clf: &Classifier,
    examples: &[Example],
    preds: &[Prediction],
    source: String,
    dir: &std::path::Path,
) -> Result<()> {
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let max_length = clf.pipeline().max_length;
    let encoded = clf
        .tokenizer()
        .encode_read(&texts, max_length, Read::Windows { stride: 0 })?;
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let observations: Vec<Observation> = preds
        .iter()
        .zip(&encoded)
        .map(|(p, e)| Observation {
            label: p.class,
            confidence: p.confidence(),
            tokens: count(e.word_pieces),
            unknown: count(e.unknown),
            over_max_length: e.word_pieces + 2 > max_length,
        })
        .collect();
    let reference = Reference::new(clf.labels().to_vec(), source, &observations);
    model_dir::atomic::write_json(&dir.join(REFERENCE_FILE), &reference)?;
    Ok(())
}

/// A served model's predictions on processed examples (cleaned already, so tokenized as
/// training saw them; long texts in windows, as serving reads them).
fn predict_served(clf: &Classifier, examples: &[Example]) -> Result<Vec<Prediction>> {
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let windows = clf
        .tokenizer()
        .encode_windows(&texts, clf.pipeline().max_length, 0)?;
    Ok(clf.predict_windows(&windows)?)
}

impl Run<'_> {
    /// The serving model's (model_output/) macro F1 on this run's validation split, for the
    /// if-better promotion: `None` without a serving model, or with one for other labels.
    pub(super) fn serving_macro_f1(&self) -> Result<Option<f64>> {
        let serve = &self.args.output_dir;
        if !serve.join(model_dir::CONFIG_FILE).is_file() {
            return Ok(None);
        }
        let clf = match Classifier::load_dir(serve) {
            Ok(clf) => clf,
            Err(e) => {
                tracing::warn!(
                    "the serving model in {} does not load ({e}): not compared",
                    serve.display()
                );
                return Ok(None);
            }
        };
        if clf.labels() != self.labels().as_slice() {
            tracing::info!(
                "the serving model's labels ({}) are not this run's ({}): not compared",
                clf.labels().join("/"),
                self.labels().join("/")
            );
            return Ok(None);
        }
        let preds = predict_served(&clf, &self.eval)?;
        Ok(Some(
            score(&preds, &self.eval, &self.labels()).overall.macro_f1,
        ))
    }
}
