//! `batch_predict` on generated CSVs: quoting, newlines in fields, empty texts, extra
//! columns, order, and clear errors before any work.

use std::path::Path;
use std::process::Command;

use classifier::Classifier;
use classifier::testing::{TinySize, vocab_for, write_tiny_model};

const WORDS: [&str; 10] = [
    "great", "awful", "film", "plot", "acting", "loved", "boring", "music", "story", "ending",
];

fn model(dir: &Path) -> std::path::PathBuf {
    let m = dir.join("model_output");
    write_tiny_model(&m, &vocab_for(&WORDS), TinySize::default(), 5).unwrap();
    m
}

/// `rows` rows: id, text (with commas, quotes, newlines; every 7th empty, every 11th row
/// cut short before its text), and an extra column.
fn write_input(path: &Path, rows: usize) {
    let mut w = csv::WriterBuilder::new()
        .flexible(true)
        .from_path(path)
        .unwrap();
    w.write_record(["id", "text", "note"]).unwrap();
    for i in 0..rows {
        let text = if i % 7 == 0 {
            String::new()
        } else {
            format!(
                "{}, \"{}\"\nline two {i}",
                WORDS[i % 10],
                WORDS[(i * 3) % 10]
            )
        };
        if i % 11 == 0 {
            w.write_record([i.to_string()]).unwrap();
        } else {
            w.write_record([i.to_string(), text, format!("note {i}")])
                .unwrap();
        }
    }
    w.flush().unwrap();
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_batch_predict"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// Runs batch_predict and fails the test, with its stderr, unless it succeeds.
fn run_ok(args: &[&str]) -> std::process::Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn every_row_and_column_comes_back_in_order_with_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let model = model(dir.path());
    let input = dir.path().join("in.csv");
    let rows = 5000;
    write_input(&input, rows);
    let output = dir.path().join("out/predictions.csv");
    let out = run_ok(&[
        input.to_str().unwrap(),
        output.to_str().unwrap(),
        "--model-path",
        model.to_str().unwrap(),
        "--probabilities",
        "--chunk-rows",
        "700",
    ]);
    let summary = String::from_utf8_lossy(&out.stdout);
    let empty = (0..rows).filter(|i| i % 7 == 0 || i % 11 == 0).count();
    assert!(summary.contains(&format!("{rows} rows")), "{summary}");
    assert!(
        summary.contains(&format!("{empty} without text")),
        "{summary}"
    );

    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(&output)
        .unwrap();
    let headers: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(
        headers,
        [
            "id",
            "text",
            "note",
            "sentiment",
            "confidence",
            "prob_negative",
            "prob_positive"
        ]
    );
    let clf = Classifier::load_dir(&model).unwrap();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), rows);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r[0], i.to_string(), "row order");
        assert_eq!(r.len(), 7);
        if i % 7 == 0 || i % 11 == 0 {
            assert_eq!((&r[3], &r[4]), ("", ""), "row {i} has no text");
        } else {
            assert!(
                r[1].contains('\n') && r[1].contains('"'),
                "text kept verbatim"
            );
            assert_eq!(&r[2], format!("note {i}"));
            let confidence: f32 = r[4].parse().unwrap();
            let p: Vec<f32> = [&r[5], &r[6]].iter().map(|x| x.parse().unwrap()).collect();
            assert!((p[0] + p[1] - 1.0).abs() < 1e-5);
            assert!((confidence - p[0].max(p[1])).abs() < 1e-6);
            if i % 97 == 1 {
                let direct = &clf.predict(&[&r[1]]).unwrap()[0];
                assert_eq!(&r[3], clf.labels()[direct.class].as_str());
                assert!((direct.confidence() - confidence).abs() < 1e-5);
            }
        }
    }
    // Nothing but the result is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path().join("out")).unwrap().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn a_missing_text_column_fails_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "id,review\n1,great\n").unwrap();
    let output = dir.path().join("out.csv");
    // No model folder at all: the column check must come first.
    let out = run(&[
        input.to_str().unwrap(),
        output.to_str().unwrap(),
        "--model-path",
        "/nonexistent",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no `text` column")
            && err.contains("id, review")
            && err.contains("--text-column"),
        "{err}"
    );
    assert!(!output.exists());

    let out = run(&["/no/such.csv", output.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("cannot open /no/such.csv"),
        "{err}"
    );
}

#[test]
fn another_text_column_and_a_failed_run_keeps_the_old_output() {
    let dir = tempfile::tempdir().unwrap();
    let model = model(dir.path());
    let input = dir.path().join("in.csv");
    write_input(&input, 50);
    let data =
        std::fs::read_to_string(&input)
            .unwrap()
            .replacen("id,text,note", "id,review,note", 1);
    std::fs::write(&input, data).unwrap();
    let output = dir.path().join("out.csv");
    std::fs::write(&output, "previous result\n").unwrap();
    let out = run(&[
        input.to_str().unwrap(),
        output.to_str().unwrap(),
        "--model-path",
        "/nonexistent",
        "--text-column",
        "review",
    ]);
    assert!(!out.status.success());
    assert_eq!(
        std::fs::read_to_string(&output).unwrap(),
        "previous result\n"
    );
    run_ok(&[
        input.to_str().unwrap(),
        output.to_str().unwrap(),
        "--model-path",
        model.to_str().unwrap(),
        "--text-column",
        "review",
    ]);
    let text = std::fs::read_to_string(&output).unwrap();
    assert!(text.starts_with("id,review,note,sentiment,confidence\n"));
}

fn classifier_fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../classifier/tests/fixtures")
        .join(name)
}

#[derive(serde::Deserialize)]
struct ExpectedClassifier {
    texts: Vec<String>,
    labels: Vec<String>,
    probabilities: Vec<Vec<f32>>,
}

/// batch_predict run by `run` with `--model-path MODEL` on the texts of `expected` gives
/// transformers' probabilities (one `prob_<label>` column per class) and labels.
fn assert_transformers_outputs(
    expected: &str,
    model: &str,
    run: impl FnOnce(&[&str]) -> std::process::Output,
) {
    let e: ExpectedClassifier =
        serde_json::from_str(&std::fs::read_to_string(classifier_fixture(expected)).unwrap())
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    let mut w = csv::Writer::from_path(&input).unwrap();
    w.write_record(["text"]).unwrap();
    for t in &e.texts {
        w.write_record([t]).unwrap();
    }
    w.flush().unwrap();
    let output = dir.path().join("out.csv");
    let (i, o) = (input.to_str().unwrap(), output.to_str().unwrap());
    let out = run(&[i, o, "--model-path", model, "--probabilities"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{model}: {stderr}");
    let mut reader = csv::Reader::from_path(&output).unwrap();
    let columns: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    let probs: Vec<String> = e.labels.iter().map(|l| format!("prob_{l}")).collect();
    assert_eq!(
        columns[3..],
        probs,
        "one column per label of the checkpoint"
    );
    let mut checked = 0;
    let rows = reader.records().map(Result::unwrap);
    for (r, (text, expected)) in rows.zip(e.texts.iter().zip(&e.probabilities)) {
        if text.is_empty() {
            assert_eq!(&r[1], "", "a row without text stays unpredicted");
            continue;
        }
        let ours: Vec<f32> = (3..3 + e.labels.len())
            .map(|i| r[i].parse().unwrap())
            .collect();
        for (a, b) in ours.iter().zip(expected) {
            assert!(
                (a - b).abs() < 2e-5,
                "{model} {text:?}: ours {ours:?}, transformers {expected:?}"
            );
        }
        let best = (0..expected.len())
            .max_by(|&a, &b| expected[a].total_cmp(&expected[b]))
            .unwrap();
        assert_eq!(&r[1], e.labels[best], "{text:?}");
        checked += 1;
    }
    assert_eq!(checked, e.texts.iter().filter(|t| !t.is_empty()).count());
}

#[test]
fn fine_tuned_classifiers_of_every_family_give_transformers_probabilities_and_labels() {
    for family in [
        "bert-classifier",
        "roberta-classifier",
        "xlm-roberta-classifier",
        "camembert-classifier",
        "electra-classifier",
        "deberta-v3-classifier",
        "deberta-v2-classifier",
        "deberta-v3-spm-classifier",
    ] {
        let model = classifier_fixture(&format!("tiny-{family}"));
        assert_transformers_outputs(
            &format!("expected-{family}.json"),
            model.to_str().unwrap(),
            run,
        );
    }
}

/// `MODEL_PATH=owner/name` as users serve a Hub model: fetched through a Hub stand-in into
/// an empty cache, then served again offline from that cache: a RoBERTa as cardiffnlp's,
/// and a DeBERTa-v3 whose tokenizer is only `spm.model`, as microsoft/deberta-v3-base's.
#[test]
fn a_hub_id_is_served_with_its_own_labels_online_then_offline() {
    let root = tempfile::tempdir().unwrap();
    let repos = [
        ("cardiff-test/tiny-roberta-sentiment", "roberta-classifier"),
        (
            "microsoft-test/tiny-deberta-v3-spm",
            "deberta-v3-spm-classifier",
        ),
    ];
    for (repo, family) in repos {
        let dest = root.path().join("hub/models").join(repo).join("main");
        std::fs::create_dir_all(&dest).unwrap();
        for f in std::fs::read_dir(classifier_fixture(&format!("tiny-{family}"))).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, dest.join(f.file_name().unwrap())).unwrap();
        }
    }
    let mock = hub_mock::HubMock::start(&root.path().join("hub"), Default::default()).unwrap();
    let hf_home = root.path().join("hf-home");
    let with_env = |env: &[(&str, &str)], args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_batch_predict"));
        cmd.args(args);
        hub_mock::run_isolated(cmd, &hf_home, env)
    };
    for (repo, family) in repos {
        let expected = format!("expected-{family}.json");
        assert_transformers_outputs(&expected, repo, |a| {
            with_env(&[("HF_ENDPOINT", &mock.url)], a)
        });
    }
    drop(mock);
    for (repo, family) in repos {
        let expected = format!("expected-{family}.json");
        assert_transformers_outputs(&expected, repo, |a| with_env(&[("HF_HUB_OFFLINE", "1")], a));
    }
    let input = root.path().join("in.csv");
    std::fs::write(&input, "text\ngreat film\n").unwrap();
    let (i, o) = (input.to_str().unwrap(), root.path().join("out.csv"));
    let args = [i, o.to_str().unwrap(), "--model-path", "nobody/nothing"];
    let out = with_env(&[("HF_HUB_OFFLINE", "1")], &args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("nobody/nothing"),
        "{err}"
    );
    assert!(err.contains("HF_HUB_OFFLINE") && !o.exists(), "{err}");
}

#[test]
fn a_bare_encoder_is_refused_instead_of_predicting_with_a_random_head() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "text\ngreat film\n").unwrap();
    let output = dir.path().join("out.csv");
    let encoder = classifier_fixture("tiny-bert");
    let out = run(&[
        input.to_str().unwrap(),
        output.to_str().unwrap(),
        "--model-path",
        encoder.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no classification head") && err.contains("train --base-model"),
        "{err}"
    );
    assert!(!output.exists(), "nothing is written");
}

/// A job split into shards (as Kubernetes Indexed Job pods or Swarm tasks run it) and merged
/// gives byte for byte the single run's file; a rerun shard replaces only its part; merge
/// refuses a missing part and a part cut from another input.
#[test]
fn sharded_runs_merge_into_the_single_run_and_merge_refuses_broken_sets() {
    let dir = tempfile::tempdir().unwrap();
    let model = model(dir.path());
    let m = model.to_str().unwrap();
    let input = dir.path().join("in.csv");
    write_input(&input, 23);
    let single = dir.path().join("single.csv");
    let i = input.to_str().unwrap();
    run_ok(&[
        i,
        single.to_str().unwrap(),
        "--model-path",
        m,
        "--chunk-rows",
        "4",
    ]);
    let parts = dir.path().join("parts");
    let p = parts.to_str().unwrap();
    for shard in ["0/3", "1/3", "2/3"] {
        run_ok(&[
            i,
            p,
            "--model-path",
            m,
            "--shard",
            shard,
            "--chunk-rows",
            "4",
        ]);
    }
    // Kubernetes' way of naming the shard: SHARD_COUNT and JOB_COMPLETION_INDEX.
    let part1 = parts.join("part-1-of-3.csv");
    let before = std::fs::read(&part1).unwrap();
    std::fs::remove_file(&part1).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_batch_predict"))
        .args([i, p, "--model-path", m])
        .env("SHARD_COUNT", "3")
        .env("JOB_COMPLETION_INDEX", "1")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&part1).unwrap(),
        before,
        "a rerun shard writes the same part"
    );

    let merged = dir.path().join("merged.csv");
    let o = merged.to_str().unwrap();
    let out = run_ok(&["merge", p, o]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("23 rows"));
    assert_eq!(
        std::fs::read(&merged).unwrap(),
        std::fs::read(&single).unwrap()
    );

    std::fs::rename(&part1, dir.path().join("aside.csv")).unwrap();
    let out = run(&["merge", p, o]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("part-1-of-3.csv"),
        "{err}"
    );
    std::fs::rename(dir.path().join("aside.csv"), &part1).unwrap();

    let other = dir.path().join("other.csv");
    write_input(&other, 30);
    let o2 = other.to_str().unwrap();
    run_ok(&[o2, p, "--model-path", m, "--shard", "2/3"]);
    let out = run(&["merge", p, o]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("foreign"), "{err}");
    assert_eq!(
        std::fs::read(&merged).unwrap(),
        std::fs::read(&single).unwrap()
    );
}

mod parquet_and_folders {
    //! Parquet in and out, and inputs of several files (a folder or glob), whole and sharded.

    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Int64Type};
    use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::{WORDS, model, run, run_ok};

    /// Rows `from..to`: id (int64), text (utf8: every 7th null, every 5th blank), and a
    /// score (int64), written in small row groups.
    fn write_parquet(path: &Path, from: usize, to: usize) {
        let ids: Int64Array = (from..to).map(|i| Some(i as i64)).collect();
        let texts: StringArray = (from..to)
            .map(|i| match i {
                _ if i % 7 == 0 => None,
                _ if i % 5 == 0 => Some("  ".to_string()),
                _ => Some(format!("{} {}", WORDS[i % 10], WORDS[(i * 3) % 10])),
            })
            .collect();
        let score: Int64Array = (from..to).map(|i| Some((i * 2) as i64)).collect();
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(ids) as ArrayRef),
            ("text", Arc::new(texts) as ArrayRef),
            ("score", Arc::new(score) as ArrayRef),
        ])
        .unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(9))
            .build();
        let mut w = ArrowWriter::try_new(
            std::fs::File::create(path).unwrap(),
            batch.schema(),
            Some(props),
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    fn read_parquet(path: &Path) -> RecordBatch {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap()
    }

    fn s(p: &Path) -> &str {
        p.to_str().unwrap()
    }

    /// The same texts through a CSV run, for the labels and confidences Parquet must match.
    fn csv_twin(dir: &Path, model: &Path, rows: usize) -> Vec<csv::StringRecord> {
        let input = dir.join("twin.csv");
        let mut w = csv::Writer::from_path(&input).unwrap();
        w.write_record(["id", "text"]).unwrap();
        let texts = read_parquet(&dir.join("in.parquet"));
        let texts = texts.column(1).as_string::<i32>();
        for i in 0..rows {
            w.write_record([i.to_string(), texts.value(i).to_string()])
                .unwrap();
        }
        w.flush().unwrap();
        let out = dir.join("twin-out.csv");
        run_ok(&[s(&input), s(&out), "--model-path", s(model)]);
        csv::Reader::from_path(&out)
            .unwrap()
            .records()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn parquet_keeps_every_column_and_type_and_predicts_as_csv_does() {
        let dir = tempfile::tempdir().unwrap();
        let model = model(dir.path());
        let input = dir.path().join("in.parquet");
        write_parquet(&input, 0, 100);
        let output = dir.path().join("out.parquet");
        let out = run_ok(&[
            s(&input),
            s(&output),
            "--model-path",
            s(&model),
            "--probabilities",
            "--chunk-rows",
            "16",
        ]);
        let blank = (0..100).filter(|i| i % 7 == 0 || i % 5 == 0).count();
        let summary = String::from_utf8_lossy(&out.stdout);
        assert!(
            summary.contains(&format!("{blank} without text")),
            "{summary}"
        );

        let got = read_parquet(&output);
        let names: Vec<&str> = got
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(
            names,
            [
                "id",
                "text",
                "score",
                "sentiment",
                "confidence",
                "prob_negative",
                "prob_positive"
            ]
        );
        let ids = got.column(0).as_primitive::<Int64Type>();
        assert_eq!(ids.values().to_vec(), (0..100).collect::<Vec<i64>>());
        assert_eq!(got.column(2).as_primitive::<Int64Type>().value(9), 18);
        let labels = got.column(3).as_string::<i32>();
        let confidence = got.column(4).as_primitive::<Float32Type>();
        let twin = csv_twin(dir.path(), &model, 100);
        for (i, row) in twin.iter().enumerate() {
            if i % 7 == 0 || i % 5 == 0 {
                assert!(
                    labels.is_null(i) && confidence.is_null(i),
                    "row {i} has no text"
                );
                continue;
            }
            assert_eq!(labels.value(i), &row[2], "row {i}");
            let c: f32 = row[3].parse().unwrap();
            assert!((confidence.value(i) - c).abs() < 1e-6, "row {i}");
        }

        let err = run(&[
            s(&input),
            s(&dir.path().join("out.csv")),
            "--model-path",
            s(&model),
        ]);
        let msg = String::from_utf8_lossy(&err.stderr);
        assert!(!err.status.success() && msg.contains(".parquet"), "{msg}");
        let err = run(&[
            s(&input),
            s(&output),
            "--model-path",
            s(&model),
            "--text-column",
            "score",
        ]);
        let msg = String::from_utf8_lossy(&err.stderr);
        assert!(!err.status.success() && msg.contains("not text"), "{msg}");
    }

    /// Runs every shard of `input` into `parts`, merges them into `merged`.
    fn shard_and_merge(input: &str, model: &Path, parts: &Path, merged: &Path, n: usize) {
        for i in 0..n {
            let shard = format!("{i}/{n}");
            run_ok(&[
                input,
                s(parts),
                "--model-path",
                s(model),
                "--shard",
                &shard,
                "--chunk-rows",
                "4",
            ]);
        }
        run_ok(&["merge", s(parts), s(merged)]);
    }

    #[test]
    fn sharded_parquet_rows_merge_into_the_single_run() {
        let dir = tempfile::tempdir().unwrap();
        let model = model(dir.path());
        let input = dir.path().join("in.parquet");
        write_parquet(&input, 0, 41);
        let single = dir.path().join("single.parquet");
        run_ok(&[s(&input), s(&single), "--model-path", s(&model)]);
        let merged = dir.path().join("merged.parquet");
        shard_and_merge(s(&input), &model, &dir.path().join("parts"), &merged, 3);
        assert_eq!(read_parquet(&merged), read_parquet(&single));
    }

    /// Files of uneven sizes (one empty) as a folder and as a glob: the whole run reads them
    /// in name order; shards take whole files (more shards than files too) and merge back.
    #[test]
    fn a_folder_or_glob_of_parts_is_read_in_order_and_sharded_by_file() {
        let dir = tempfile::tempdir().unwrap();
        let model = model(dir.path());
        let folder = dir.path().join("in");
        std::fs::create_dir(&folder).unwrap();
        let bounds = [(0, 13), (13, 13), (13, 40), (40, 45), (45, 60)];
        for (k, (from, to)) in bounds.iter().enumerate() {
            write_parquet(&folder.join(format!("part-{k:02}.parquet")), *from, *to);
        }
        std::fs::write(folder.join("_SUCCESS"), "").unwrap();
        let single = dir.path().join("single.parquet");
        run_ok(&[s(&folder), s(&single), "--model-path", s(&model)]);
        let whole = read_parquet(&single);
        let ids = whole.column(0).as_primitive::<Int64Type>();
        assert_eq!(ids.values().to_vec(), (0..60).collect::<Vec<i64>>());

        for n in [2, 3, 7] {
            let parts: PathBuf = dir.path().join(format!("parts-{n}"));
            let merged = dir.path().join(format!("merged-{n}.parquet"));
            let glob = format!("{}/part-*.parquet", folder.display());
            shard_and_merge(&glob, &model, &parts, &merged, n);
            assert_eq!(read_parquet(&merged), whole, "{n} shards");
        }
        // A part whose manifest lists other files than its shard's is refused.
        let parts = dir.path().join("parts-2");
        let manifest = parts.join("part-1-of-2.json");
        let text = std::fs::read_to_string(&manifest).unwrap();
        std::fs::write(&manifest, text.replace("\"index\": 3", "\"index\": 2")).unwrap();
        let out = run(&["merge", s(&parts), s(&dir.path().join("bad.parquet"))]);
        let msg = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && msg.contains("rerun that shard"),
            "{msg}"
        );
    }

    /// CSV files as one input: rows in name order under one header (a header-only file in
    /// between), sharded by file and merged byte for byte; a file with other columns refused.
    #[test]
    fn a_folder_of_csv_files_is_one_table_whole_or_sharded() {
        let dir = tempfile::tempdir().unwrap();
        let model = model(dir.path());
        let folder = dir.path().join("in");
        std::fs::create_dir(&folder).unwrap();
        super::write_input(&folder.join("a.csv"), 17);
        super::write_input(&folder.join("b.csv"), 0);
        super::write_input(&folder.join("c.csv"), 9);
        let single = dir.path().join("single.csv");
        let out = run_ok(&[
            s(&folder),
            s(&single),
            "--model-path",
            s(&model),
            "--chunk-rows",
            "5",
        ]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("26 rows"));
        let ids: Vec<String> = csv::ReaderBuilder::new()
            .flexible(true)
            .from_path(&single)
            .unwrap()
            .records()
            .map(|r| r.unwrap()[0].to_string())
            .collect();
        let want: Vec<String> = (0..17).chain(0..9).map(|i| i.to_string()).collect();
        assert_eq!(ids, want);
        let merged = dir.path().join("merged.csv");
        shard_and_merge(s(&folder), &model, &dir.path().join("parts"), &merged, 2);
        assert_eq!(
            std::fs::read(&merged).unwrap(),
            std::fs::read(&single).unwrap()
        );

        std::fs::write(folder.join("d.csv"), "id,review\n1,great\n").unwrap();
        let out = run(&[s(&folder), s(&single), "--model-path", s(&model)]);
        let msg = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && msg.contains("d.csv has other columns"),
            "{msg}"
        );
    }
}
