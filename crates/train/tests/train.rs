//! The trainer end to end with tiny generated models: preprocess -> train -> model_output,
//! learning, accumulation, and resuming after SIGTERM / SIGKILL.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use clap::Parser;
use classifier::dataset::{Example, LABELS, read_examples, write_examples};
use classifier::models::Mode;
use classifier::models::Trainable;
use classifier::testing::{TinySize, vocab_for, write_tiny_model};
use classifier::{ClassificationMetrics, Classifier, LoadOptions, ModelFiles};
use train::optim::{AdamW, AdamWConfig};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A tiny model whose vocabulary covers `texts`.
fn tiny_model(dir: &Path, texts: &[&str], size: TinySize) -> PathBuf {
    let model = dir.join("tiny-base");
    write_tiny_model(&model, &vocab_for(texts), size, 11).unwrap();
    model
}

fn train_args(model: &Path, work: &Path, extra: &[&str]) -> train::Args {
    let mut argv: Vec<String> = vec![
        "train".into(),
        "--base-model".into(),
        model.display().to_string(),
        "--data-dir".into(),
        work.join("data").display().to_string(),
        "--output-dir".into(),
        work.join("model_output").display().to_string(),
        "--results-dir".into(),
        work.join("results").display().to_string(),
        "--train-samples".into(),
        "0".into(),
        "--eval-samples".into(),
        "0".into(),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    train::Args::parse_from(argv)
}

fn completed(outcome: train::Outcome) -> train::runlog::RunSummary {
    match outcome {
        train::Outcome::Completed(s) => *s,
        train::Outcome::Interrupted { .. } => panic!("the run was interrupted"),
    }
}

#[test]
fn preprocess_train_and_metrics_match_model_outputs_own_predictions() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let report = preprocess::run(&preprocess::Args::parse_from([
        "preprocess",
        "--source",
        &format!(
            "{},name=snippets,group=movie_name",
            fixtures().join("snippets.csv").display()
        ),
        "--source",
        &format!(
            "{},name=tweets,text=tweet,label=sentiment,labels=0/4",
            fixtures().join("tweets.jsonl").display()
        ),
        "--output-dir",
        &work.join("data").display().to_string(),
        "--tokenizer",
        "./none",
    ]))
    .unwrap();
    assert!(report.rows_kept > 250);
    let train_rows = read_examples(&work.join("data/train.csv")).unwrap();
    let texts: Vec<&str> = train_rows.iter().map(|e| e.text.as_str()).collect();
    let model = tiny_model(work, &texts, TinySize::default());

    let summary = completed(
        train::run(
            &train_args(
                &model,
                work,
                &[
                    "--epochs",
                    "2",
                    "--batch-size",
                    "8",
                    "--grad-accum",
                    "2",
                    "--lr",
                    "1e-3",
                ],
            ),
            &AtomicBool::new(false),
        )
        .unwrap(),
    );
    assert_eq!(summary.epochs.len(), 2);
    assert_eq!(summary.hyperparameters.effective_batch_size, 16);
    assert!(summary.data.train_sources.contains(&"tweets".to_string()));

    // Recompute the metrics from what model_output itself predicts on test.csv.
    let clf = Classifier::load_dir(&work.join("model_output")).unwrap();
    assert_eq!(clf.labels(), LABELS);
    assert_eq!(clf.pipeline().truncation, classifier::Truncation::HeadTail);
    let test = read_examples(&work.join("data/test.csv")).unwrap();
    let texts: Vec<&str> = test.iter().map(|e| e.text.as_str()).collect();
    let predicted: Vec<usize> = clf
        .predict(&texts)
        .unwrap()
        .iter()
        .map(|p| p.class)
        .collect();
    let truth: Vec<usize> = test.iter().map(|e| e.label).collect();
    let recomputed = ClassificationMetrics::compute(&truth, &predicted, 2, 1);

    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("results/metrics.json")).unwrap())
            .unwrap();
    for key in ["accuracy", "precision", "recall", "f1_score", "macro_f1"] {
        let (a, b) = (
            saved[key].as_f64().unwrap(),
            serde_json::to_value(&recomputed).unwrap()[key]
                .as_f64()
                .unwrap(),
        );
        assert!(
            (a - b).abs() < 1e-12,
            "{key}: metrics.json {a}, recomputed {b}"
        );
    }
    assert_eq!(
        saved["confusion_matrix"],
        serde_json::to_value(&recomputed.confusion_matrix).unwrap()
    );
    assert_eq!(saved["examples"].as_u64().unwrap() as usize, test.len());
    assert!(saved["per_source"]["tweets"]["accuracy"].is_f64());

    // The run log: train lines and one eval line per epoch.
    let log = std::fs::read_to_string(&summary.outputs.run_log).unwrap();
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.iter().filter(|r| r["type"] == "eval").count(), 2);
    let train_line = records.iter().find(|r| r["type"] == "train").unwrap();
    for key in ["step", "epoch", "loss", "lr", "grad_norm", "examples_per_s"] {
        assert!(train_line.get(key).is_some(), "metrics.jsonl lacks {key}");
    }
    let summary_file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(work.join("results/run_summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary_file["hyperparameters"]["batch_size"], 8);
    assert!(summary_file["peak_rss_mb"].as_f64().unwrap() > 0.0);
    assert!(
        !work.join("results/checkpoint").exists(),
        "a finished run leaves no checkpoint"
    );
}

/// Positive texts contain a positive cue word, negative ones a negative cue; the rest is
/// filler. A model that learns anything gets this right.
fn cue_task(n: usize, seed: u64) -> Vec<Example> {
    let pos = ["great", "wonderful", "superb", "loved"];
    let neg = ["awful", "boring", "terrible", "hated"];
    let filler = [
        "the", "film", "plot", "was", "actors", "scene", "and", "it", "story", "music",
    ];
    let mut state = seed | 1;
    let mut next = move |m: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % m as u64) as usize
    };
    (0..n)
        .map(|i| {
            let label = i % 2;
            let len = 4 + next(8);
            let mut words: Vec<&str> = (0..len).map(|_| filler[next(filler.len())]).collect();
            let cue = if label == 1 {
                pos[next(4)]
            } else {
                neg[next(4)]
            };
            let at = next(words.len() + 1);
            words.insert(at, cue);
            Example {
                text: words.join(" "),
                label,
                source: "cues".into(),
            }
        })
        .collect()
}

#[test]
fn the_model_learns_a_simple_task() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let data = work.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_examples(&data.join("train.csv"), &cue_task(320, 1)).unwrap();
    write_examples(&data.join("test.csv"), &cue_task(100, 2)).unwrap();
    let all: Vec<Example> = cue_task(320, 1);
    let texts: Vec<&str> = all.iter().map(|e| e.text.as_str()).collect();
    let model = tiny_model(work, &texts, TinySize::default());
    let summary = completed(
        train::run(
            &train_args(
                &model,
                work,
                &[
                    "--epochs",
                    "4",
                    "--batch-size",
                    "8",
                    "--grad-accum",
                    "1",
                    "--lr",
                    "2e-3",
                    "--log-every",
                    "5",
                ],
            ),
            &AtomicBool::new(false),
        )
        .unwrap(),
    );
    let first = &summary.epochs[0];
    let last = summary.epochs.last().unwrap();
    for e in &summary.epochs {
        println!(
            "epoch {} loss {:.4} accuracy {:.3}",
            e.epoch, e.train_loss, e.eval.overall.accuracy
        );
    }
    assert!(
        last.train_loss < 0.7 * first.train_loss,
        "training loss should fall: {} -> {}",
        first.train_loss,
        last.train_loss
    );
    assert!(
        last.eval.overall.accuracy > 0.9,
        "accuracy {}",
        last.eval.overall.accuracy
    );
    assert!(first.eval.overall.accuracy < last.eval.overall.accuracy);
    assert!(
        summary.data.validation_from.contains("no validation rows"),
        "a folder from an older preprocess gets a held-out share of train.csv: {}",
        summary.data.validation_from
    );
    assert_eq!(
        summary.data.eval_rows, 32,
        "a tenth of the 320 training rows"
    );
    assert_eq!(summary.data.train_rows, 288);
}

/// Trains on `data` (train, validation and test files already there) and returns the run's
/// summary with the bytes of the saved weights and pipeline.
fn train_on(
    work: &Path,
    model: &Path,
    epochs: &str,
    extra: &[&str],
) -> (train::runlog::RunSummary, Vec<u8>, String) {
    let mut flags = vec![
        "--epochs",
        epochs,
        "--batch-size",
        "8",
        "--lr",
        "2e-3",
        "--grad-accum",
        "1",
    ];
    flags.extend_from_slice(extra);
    let summary =
        completed(train::run(&train_args(model, work, &flags), &AtomicBool::new(false)).unwrap());
    let weights = std::fs::read(work.join("model_output/model.safetensors")).unwrap();
    let pipeline = std::fs::read_to_string(work.join("model_output/pipeline.json")).unwrap();
    (summary, weights, pipeline)
}

#[test]
fn the_test_split_decides_nothing_and_is_read_once_at_the_end() {
    let root = tempfile::tempdir().unwrap();
    let all = cue_task(260, 3);
    let texts: Vec<&str> = all.iter().map(|e| e.text.as_str()).collect();
    let model = tiny_model(root.path(), &texts, TinySize::default());
    let test = &all[200..];
    let flipped: Vec<Example> = test
        .iter()
        .map(|e| Example {
            label: 1 - e.label,
            ..e.clone()
        })
        .collect();
    let mut runs = Vec::new();
    for (name, test_rows) in [("a", test.to_vec()), ("b", flipped)] {
        let work = root.path().join(name);
        let data = work.join("data");
        std::fs::create_dir_all(&data).unwrap();
        write_examples(&data.join("train.csv"), &all[..160]).unwrap();
        write_examples(&data.join("validation.csv"), &all[160..200]).unwrap();
        write_examples(&data.join("test.csv"), &test_rows).unwrap();
        runs.push(train_on(&work, &model, "3", &[]));
    }
    let ((a, wa, pa), (b, wb, pb)) = (&runs[0], &runs[1]);
    assert_eq!(a.data.validation_from, "validation.csv");
    assert_eq!(
        a.best_epoch, b.best_epoch,
        "the kept epoch ignores test.csv"
    );
    assert_eq!(
        a.epochs, b.epochs,
        "every per-epoch evaluation is on validation"
    );
    assert!(wa == wb, "the kept weights ignore test.csv");
    assert_eq!(pa, pb, "the temperature is fitted on validation");
    let (ta, tb) = (a.test.as_ref().unwrap(), b.test.as_ref().unwrap());
    assert!(
        (ta.overall.accuracy + tb.overall.accuracy - 1.0).abs() < 1e-12,
        "flipped test labels flip the test accuracy: {} and {}",
        ta.overall.accuracy,
        tb.overall.accuracy
    );
    let calibration = a.calibration.as_ref().unwrap();
    assert!(calibration.temperature > 0.0);
    assert!(calibration.validation_nll_after <= calibration.validation_nll_before + 1e-9);
    let metrics: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.path().join("a/results/metrics.json")).unwrap(),
    )
    .unwrap();
    assert!(
        metrics["split"]
            .as_str()
            .unwrap()
            .starts_with("test (60 of 60 rows), evaluated once")
    );
    assert!(
        metrics["selection"]
            .as_str()
            .unwrap()
            .contains("validation.csv")
    );
    assert_eq!(
        metrics["calibration"]["test_reliability"]["bins"]
            .as_array()
            .unwrap()
            .len(),
        15
    );
    assert!(metrics["balanced_accuracy"].is_f64() && metrics["ece"].is_f64());
    let served = Classifier::load_dir(&root.path().join("a/model_output")).unwrap();
    assert_eq!(served.pipeline().temperature, calibration.temperature);
}

#[test]
fn balanced_class_weights_follow_the_label_counts() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    // 3 negatives for every positive: auto turns balancing on (75% > 55%).
    let all: Vec<Example> = cue_task(400, 4)
        .into_iter()
        .enumerate()
        .filter(|(i, e)| e.label == 0 || i % 3 == 0)
        .map(|(_, e)| e)
        .collect();
    let data = work.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_examples(&data.join("train.csv"), &all[..200]).unwrap();
    write_examples(&data.join("validation.csv"), &all[200..240]).unwrap();
    write_examples(&data.join("test.csv"), &all[240..]).unwrap();
    let texts: Vec<&str> = all.iter().map(|e| e.text.as_str()).collect();
    let model = tiny_model(work, &texts, TinySize::default());
    let (neg, pos) = {
        let pos = all[..200].iter().filter(|e| e.label == 1).count() as f64;
        (200.0 - pos, pos)
    };
    let (summary, _, _) = train_on(work, &model, "1", &[]);
    let w = summary
        .hyperparameters
        .class_weights
        .expect("auto balances a 3:1 split");
    assert!(
        (w[0] - 200.0 / (2.0 * neg)).abs() < 1e-12 && (w[1] - 200.0 / (2.0 * pos)).abs() < 1e-12,
        "{w:?}"
    );
    let (summary, _, _) = train_on(work, &model, "1", &["--class-weight", "none"]);
    assert_eq!(summary.hyperparameters.class_weights, None);
    let recall = &summary.test.unwrap().overall.recall_per_class;
    assert_eq!(recall.len(), 2, "per-class recall is reported");
}

/// One optimizer step over 4 micro-batches of 2 equals one over a batch of 8 (dropout off;
/// the micro-batches are padded differently, which the mask must make irrelevant).
#[test]
fn accumulating_four_micro_batches_equals_one_big_batch() {
    let work = tempfile::tempdir().unwrap();
    let data = cue_task(8, 5);
    let texts: Vec<&str> = data.iter().map(|e| e.text.as_str()).collect();
    let model_dir = tiny_model(work.path(), &texts, TinySize::default());
    let ckpt = ModelFiles::load(model_dir.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let ids = ckpt
        .tokenizer
        .encode_batch(&texts, 64, classifier::Truncation::Head)
        .unwrap();

    let step = |groups: &[&[usize]]| -> Vec<Vec<f32>> {
        let model = Trainable::new(&ckpt.config, &ckpt.tensors).unwrap();
        let mut opt = AdamW::new(model.params.clone(), AdamWConfig::default());
        for g in groups {
            let seqs: Vec<&[u32]> = g.iter().map(|&i| ids[i].as_slice()).collect();
            let b = ckpt.tokenizer.pad(&seqs, &Device::Cpu).unwrap();
            let labels = Tensor::from_vec(
                g.iter().map(|&i| data[i].label as u32).collect::<Vec<_>>(),
                g.len(),
                &Device::Cpu,
            )
            .unwrap();
            let logits = model
                .model
                .forward(&b.input_ids, &b.attention_mask, Mode::Eval)
                .unwrap();
            let loss = kernels::cross_entropy(&logits, &labels).unwrap();
            opt.accumulate(&loss.backward().unwrap(), g.len() as f64)
                .unwrap();
        }
        opt.step(1e-3).unwrap();
        model
            .params
            .iter()
            .map(|(_, v)| {
                v.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_dtype(DType::F32)
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            })
            .collect()
    };
    let big = step(&[&[0, 1, 2, 3, 4, 5, 6, 7]]);
    let small = step(&[&[0, 1], &[2, 3], &[4, 5], &[6, 7]]);
    let worst = big
        .iter()
        .flatten()
        .zip(small.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    // The two runs sum their products in different orders (over 8 examples at once, or 2 at
    // a time), and AdamW divides each gradient by its own size, so a weight whose gradient
    // is near zero can take a rounding difference into its step: about 1e-6 here, 0.1% of
    // the 1e-3 step. A wrong weighting of the micro-batches moves steps by a large part of it.
    assert!(worst < 1e-5, "max weight difference {worst}");
    let moved = big
        .iter()
        .flatten()
        .zip(ckpt.trainable().unwrap().params.iter().flat_map(|(_, v)| {
            v.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        }))
        .any(|(a, b)| (a - b).abs() > 1e-5);
    assert!(moved, "the step must change the weights");
}

fn spawn_train(model: &Path, work: &Path, resume: bool) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_train"));
    cmd.args(["--base-model", model.to_str().unwrap()])
        .arg("--data-dir")
        .arg(work.join("data"))
        .arg("--output-dir")
        .arg(work.join("model_output"))
        .arg("--results-dir")
        .arg(work.join("results"))
        .args([
            "--train-samples",
            "0",
            "--eval-samples",
            "0",
            "--epochs",
            "3",
            "--batch-size",
            "4",
            "--grad-accum",
            "2",
        ])
        .args([
            "--lr",
            "1e-3",
            "--checkpoint-every",
            "1",
            "--log-every",
            "1000",
            // The weight average and R-Drop must survive a resume too.
            "--ema-decay",
            "0.9",
            "--rdrop-alpha",
            "1",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if resume {
        cmd.arg("--resume");
    }
    cmd.spawn().unwrap()
}

fn wait_for(path: &Path, child: &mut std::process::Child) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before {} appeared",
            path.display()
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let mut w: Vec<(String, Vec<f32>)> =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)
            .unwrap()
            .into_iter()
            .map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1().unwrap()))
            .collect();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

/// SIGTERM: checkpoint and exit; SIGKILL: the last periodic checkpoint survives. Either way
/// `--resume` ends with exactly the weights (here a weight average) of an uninterrupted run,
/// and model_output is never seen half-written.
#[test]
fn interrupted_runs_resume_to_the_uninterrupted_result() {
    let root = tempfile::tempdir().unwrap();
    let data = cue_task(240, 9);
    let texts: Vec<&str> = data.iter().map(|e| e.text.as_str()).collect();
    let model = tiny_model(
        root.path(),
        &texts,
        TinySize {
            dim: 48,
            layers: 3,
            heads: 4,
            hidden: 96,
            max_positions: 64,
        },
    );
    let prepare = |name: &str| {
        let work = root.path().join(name);
        std::fs::create_dir_all(work.join("data")).unwrap();
        write_examples(&work.join("data/train.csv"), &data).unwrap();
        write_examples(&work.join("data/test.csv"), &cue_task(60, 10)).unwrap();
        work
    };

    let straight = prepare("straight");
    let status = spawn_train(&model, &straight, false).wait().unwrap();
    assert!(status.success());

    let broken = prepare("broken");
    let state = broken.join("results/checkpoint/state.json");
    // SIGTERM once the first checkpoint exists: a clean stop with a fresh checkpoint.
    let mut child = spawn_train(&model, &broken, false);
    wait_for(&state, &mut child);
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "SIGTERM saves a checkpoint and exits 130"
    );
    assert!(state.exists());
    assert!(!broken.join("results/run_summary.json").exists());

    // Resume, then SIGKILL after the next checkpoint lands: nothing can run on SIGKILL.
    let before = std::fs::read_to_string(&state).unwrap();
    let mut child = spawn_train(&model, &broken, true);
    let start = Instant::now();
    while std::fs::read_to_string(&state)
        .map(|s| s == before)
        .unwrap_or(true)
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before a new checkpoint"
        );
        assert!(start.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let out = broken.join("model_output");
    if out.exists() {
        // Whatever was there is complete: it loads.
        Classifier::load_dir(&out).unwrap();
    }

    let status = spawn_train(&model, &broken, true).wait().unwrap();
    assert!(status.success());
    assert_eq!(
        weights(&straight.join("model_output")),
        weights(&out),
        "resumed weights differ"
    );
    let metrics = |w: &Path| std::fs::read_to_string(w.join("results/metrics.json")).unwrap();
    let (a, b) = (metrics(&straight), metrics(&broken));
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.contains("model_dir"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&a), strip(&b));
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(broken.join("results/run_summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["resumed"], 2);
}

/// Three classes end to end on a RoBERTa (the committed parity fixture, BPE tokenizer):
/// preprocess keeps the neutral rows, the run trains and scores three classes, and the saved
/// folder is a RobertaForSequenceClassification with every class's probability.
#[test]
fn three_classes_train_on_roberta_with_a_three_by_three_confusion_matrix() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    preprocess::run(&preprocess::Args::parse_from([
        "preprocess",
        "--source",
        &format!(
            "{},name=tweets,label=sentiment",
            fixtures().join("tweets_3class.csv").display()
        ),
        "--label-map",
        "negative/neutral/positive",
        "--output-dir",
        &work.join("data").display().to_string(),
        "--tokenizer",
        "./none",
    ]))
    .unwrap();
    let three = ["negative", "neutral", "positive"];
    assert_eq!(
        classifier::dataset::read_labels(&work.join("data")).unwrap(),
        three
    );
    let roberta = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../classifier/tests/fixtures/tiny-roberta-classifier");
    let args = ["--epochs", "1", "--batch-size", "8", "--lr", "1e-3"];
    let summary =
        completed(train::run(&train_args(&roberta, work, &args), &AtomicBool::new(false)).unwrap());
    assert_eq!(summary.data.train_class_balance.len(), 3);
    assert!(summary.data.train_class_balance.iter().all(|&n| n > 0));

    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("results/metrics.json")).unwrap())
            .unwrap();
    assert_eq!(saved["labels"], serde_json::json!(three));
    let matrix: Vec<Vec<u64>> = serde_json::from_value(saved["confusion_matrix"].clone()).unwrap();
    assert_eq!((matrix.len(), matrix[0].len()), (3, 3));
    let test = read_examples(&work.join("data/test.csv")).unwrap();
    assert_eq!(matrix.iter().flatten().sum::<u64>(), test.len() as u64);

    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(work.join("model_output/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        config["architectures"][0],
        "RobertaForSequenceClassification"
    );
    let clf = Classifier::load_dir(&work.join("model_output")).unwrap();
    assert_eq!(clf.labels(), three);
    let p = &clf.predict(&["On the fence about it."]).unwrap()[0];
    assert_eq!(p.probabilities.len(), 3);
    assert!((p.probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-5);

    // The drift reference beside the model: the served model's predictions on validation.
    let reference = monitoring::Reference::load(&work.join("model_output"))
        .unwrap()
        .expect("train writes drift_reference.json");
    assert_eq!(reference.labels, three);
    let validation = read_examples(&work.join("data/validation.csv")).unwrap();
    let texts: Vec<&str> = validation.iter().map(|e| e.text.as_str()).collect();
    let mut counts = vec![0u64; 3];
    for p in clf.predict(&texts).unwrap() {
        counts[p.class] += 1;
    }
    assert_eq!(reference.profile.label_counts, counts);
    assert_eq!(reference.profile.length.total(), validation.len() as u64);
}

/// Every run lands in models/<run-id>/; the served folder takes a run only when it beats
/// the serving model on validation (a barely trained one is kept aside); `train models`
/// promotes by hand and rolls back; the keep bound removes the oldest unpromoted version.
#[test]
fn versions_promote_only_a_better_model_and_roll_back() {
    use train::registry::{Models, ModelsArgs};
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let data = work.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_examples(&data.join("train.csv"), &cue_task(240, 3)).unwrap();
    write_examples(&data.join("test.csv"), &cue_task(60, 4)).unwrap();
    let texts: Vec<String> = cue_task(240, 3).into_iter().map(|e| e.text).collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let model = tiny_model(work, &texts, TinySize::default());
    let served = || classifier::model_dir::content_version(&work.join("model_output")).unwrap();

    let (good, _, _) = train_on(work, &model, "3", &[]);
    assert_eq!(
        good.outputs.promoted,
        Some(true),
        "{:?}",
        good.outputs.promotion
    );
    let models = Models::open(&work.join("models"), &work.join("model_output")).unwrap();
    let good_version = models.list().unwrap()[0].clone();
    assert_eq!(good_version.id, good.run_id);
    assert_eq!(served(), good_version.model_version);
    assert!(
        work.join("models")
            .join(&good.run_id)
            .join("run_summary.json")
            .is_file()
    );
    assert_eq!(good_version.data_hashes.len(), 2, "train.csv and test.csv");
    drop(models);

    let weak = completed(
        train::run(
            &train_args(
                &model,
                work,
                &["--epochs", "1", "--lr", "1e-6", "--keep-models", "2"],
            ),
            &AtomicBool::new(false),
        )
        .unwrap(),
    );
    assert_eq!(
        weak.outputs.promoted,
        Some(false),
        "{:?}",
        weak.outputs.promotion
    );
    assert!(
        weak.outputs
            .promotion
            .as_deref()
            .unwrap()
            .contains("does not beat")
    );
    assert_eq!(
        served(),
        good_version.model_version,
        "the better model keeps serving"
    );

    let manage = |argv: &[&str]| {
        let mut full = vec!["train models", "--output-dir"];
        let out = work.join("model_output");
        full.push(out.to_str().unwrap());
        full.extend_from_slice(argv);
        ModelsArgs::parse_from(full).run().unwrap()
    };
    manage(&["promote", &weak.run_id]);
    assert_ne!(served(), good_version.model_version);
    let listing = manage(&["list"]);
    assert!(listing.contains(&format!("* {}", weak.run_id)), "{listing}");
    manage(&["rollback"]);
    assert_eq!(served(), good_version.model_version);

    // A third run, never promoted, with room for two: the weak one was promoted once, so it
    // stays; nothing older is unpromoted, so the bound is exceeded rather than the new run lost.
    let third = completed(
        train::run(
            &train_args(
                &model,
                work,
                &["--epochs", "1", "--promote", "never", "--keep-models", "2"],
            ),
            &AtomicBool::new(false),
        )
        .unwrap(),
    );
    assert_eq!(third.outputs.promoted, Some(false));
    assert!(work.join("models").join(&third.run_id).is_dir());
    assert_eq!(served(), good_version.model_version);
}
