//! `preprocess` end to end on small generated inputs of every format.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use clap::Parser;
use classifier::dataset::{Example, read_examples};
use preprocess::{Args, run};

fn args(out: &Path, extra: &[&str]) -> Args {
    let mut argv = vec![
        "preprocess".to_string(),
        "--output-dir".into(),
        out.display().to_string(),
        // No tokenizer here: the length report falls back to word counts.
        "--tokenizer".into(),
        out.join("no-tokenizer").display().to_string(),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    Args::parse_from(argv)
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// 100 distinct reviews of 20 movies, 60% positive.
fn reviews_csv(path: &Path) {
    let mut s = String::from("review,stars,movie\n");
    for i in 0..100 {
        let (text, stars) = if i % 5 < 3 {
            (format!("\"A fine, moving film, number {i}!\""), 5)
        } else {
            (format!("dull film number {i}"), 1)
        };
        s.push_str(&format!("{text},{stars},m{}\n", i % 20));
    }
    write(path, &s);
}

#[test]
fn csv_jsonl_and_folders_merge_with_per_source_counts() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    let csv = raw.join("reviews.csv");
    reviews_csv(&csv);
    // JSONL: one malformed line, one unmapped label (2 = neutral), one duplicate, one
    // conflicting duplicate pair, one text that cleans to nothing.
    write(
        &raw.join("tweets.jsonl"),
        concat!(
            "{\"t\": \"@bob I love this #phone\", \"y\": 4}\n",
            "{\"t\": \"meh whatever\", \"y\": 2}\n",
            "not json at all\n",
            "{\"t\": \"@bob I love this #phone\", \"y\": 4}\n",
            "{\"t\": \"same words\", \"y\": 0}\n",
            "{\"t\": \"Same   words\", \"y\": 4}\n",
            "{\"t\": \"http://t.co/x @only\", \"y\": 0}\n",
            "{\"t\": \"worst service ever\", \"y\": 0}\n",
            "{\"t\": \"great battery\", \"y\": 4}\n",
        ),
    );
    for (split, label, n) in [
        ("train", "pos", 3),
        ("train", "neg", 3),
        ("test", "pos", 2),
        ("test", "neg", 2),
    ] {
        for i in 0..n {
            write(
                &raw.join(format!("acl/{split}/{label}/{i}_7.txt")),
                &format!("{label} review {split} {i}<br /><br />the end"),
            );
        }
    }
    let out = dir.path().join("processed");
    let report = run(&args(
        &out,
        &[
            "--source",
            &format!(
                "{},name=rt,text=review,label=stars,labels=1|2/4|5,group=movie",
                csv.display()
            ),
            "--source",
            &format!(
                "{},name=tweets,text=t,label=y,labels=0/4",
                raw.join("tweets.jsonl").display()
            ),
            "--source",
            &raw.join("acl").display().to_string(),
            "--small-test-size",
            "5",
        ],
    ))
    .unwrap();

    let by_name: HashMap<_, _> = report
        .sources
        .iter()
        .map(|s| (s.name.as_str(), s))
        .collect();
    let tw = by_name["tweets"];
    assert_eq!(tw.rows_read, 9);
    assert_eq!(tw.malformed.values().map(|p| p.count).sum::<u64>(), 1);
    assert_eq!(tw.malformed.values().next().unwrap().first, ["line 3"]);
    assert_eq!(tw.unmapped_labels.get("2"), Some(&1));
    assert_eq!(tw.empty_after_cleaning.count, 1);
    assert_eq!(
        tw.duplicates_removed, 2,
        "the exact copy and the conflicting copy"
    );
    assert_eq!(tw.conflicting_duplicates_removed, 1);
    assert_eq!(tw.kept, 3);
    let acl = by_name["acl"];
    assert_eq!((acl.kept, acl.split), (10, "source"));
    assert_eq!(by_name["rt"].kept, 100);

    let train = read_examples(&out.join("train.csv")).unwrap();
    let validation = read_examples(&out.join("validation.csv")).unwrap();
    let test = read_examples(&out.join("test.csv")).unwrap();
    assert_eq!(train.len() + validation.len() + test.len(), 113);
    assert_eq!(report.validation.rows, validation.len());
    assert!(!validation.is_empty());
    assert_eq!(read_examples(&out.join("small_test.csv")).unwrap().len(), 5);
    // Cleaning: mention and '#' gone, <br /> gone, lowercased.
    assert!(
        train
            .iter()
            .chain(&test)
            .any(|e| e.text == "i love this phone" && e.label == 1)
    );
    assert!(train.iter().chain(&test).all(|e| !e.text.contains("<br")));
    // The folder's own split is kept.
    assert_eq!(test.iter().filter(|e| e.source == "acl").count(), 4);
    // Grouped: a movie's reviews are all on one side.
    let movie = |e: &Example| {
        e.text
            .split_whitespace()
            .last()
            .unwrap()
            .trim_end_matches('!')
            .parse::<usize>()
            .unwrap()
            % 20
    };
    let movies = |side: &[Example]| -> std::collections::HashSet<usize> {
        side.iter()
            .filter(|e| e.source == "rt")
            .map(movie)
            .collect()
    };
    let (tr, va, te) = (movies(&train), movies(&validation), movies(&test));
    assert!(!va.is_empty() && !te.is_empty());
    assert!(tr.is_disjoint(&te) && tr.is_disjoint(&va) && va.is_disjoint(&te));
    // Texts are on exactly one side.
    let texts = |side: &[Example]| -> std::collections::HashSet<String> {
        side.iter().map(|e| e.text.clone()).collect()
    };
    assert!(texts(&train).is_disjoint(&texts(&validation)));
    assert!(texts(&validation).is_disjoint(&texts(&test)));
    assert!(out.join("cleaning.json").is_file() && out.join("report.json").is_file());
}

#[test]
fn same_seed_same_split_other_seed_other_split() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("r.csv");
    reviews_csv(&csv);
    let spec = format!("{},text=review,label=stars,labels=1/5", csv.display());
    let split = |seed: &str, out: &str| {
        let out = dir.path().join(out);
        run(&args(&out, &["--source", &spec, "--seed", seed])).unwrap();
        read_examples(&out.join("test.csv")).unwrap()
    };
    let a = split("1", "a");
    assert_eq!(a, split("1", "b"));
    let validation = read_examples(&dir.path().join("a/validation.csv")).unwrap();
    assert_eq!(validation.len(), 8, "a tenth of the 80 non-test rows");
    assert_eq!(
        validation.iter().filter(|e| e.label == 1).count(),
        5,
        "stratified: 60% of 8, rounded"
    );
    assert_ne!(a, split("2", "c"));
    assert_eq!(a.len(), 20);
    assert_eq!(
        a.iter().filter(|e| e.label == 1).count(),
        12,
        "stratified: 60% positive"
    );
}

#[test]
fn tsv_and_parquet_sources() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = dir.path().join("a.tsv");
    let mut s = String::from("text\tlabel\n");
    for i in 0..20 {
        s.push_str(&format!(
            "tab text {i}\t{}\n",
            ["negative", "positive"][i % 2]
        ));
    }
    write(&tsv, &s);

    let pq = dir.path().join("b.parquet");
    {
        use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
        let texts: Vec<String> = (0..20).map(|i| format!("parquet text {i}")).collect();
        let batch = RecordBatch::try_from_iter([
            ("text", Arc::new(StringArray::from(texts)) as ArrayRef),
            (
                "label",
                Arc::new(Int64Array::from_iter_values((0..20).map(|i| i % 2))),
            ),
        ])
        .unwrap();
        let file = std::fs::File::create(&pq).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
    let out = dir.path().join("out");
    let report = run(&args(
        &out,
        &[
            "--source",
            &format!("{},labels=negative/positive", tsv.display()),
            "--source",
            &pq.display().to_string(),
        ],
    ))
    .unwrap();
    assert_eq!(report.rows_kept, 40);
    assert_eq!(report.test.rows, 8);
    assert_eq!((report.train.rows, report.validation.rows), (28, 4));
}

#[test]
fn malformed_rows_are_counted_or_stop_a_strict_run() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("bad.csv");
    // Line 3 has a field too many; line 6 is not UTF-8.
    std::fs::write(
        &csv,
        b"text,label\ngood,1\nextra,1,field\nfine,0\nok,1\n\"bad\xff\",0\nmeh,0\n",
    )
    .unwrap();
    let spec = csv.display().to_string();
    let lenient = run(&args(
        &dir.path().join("a"),
        &["--source", &spec, "--test-size", "0.5"],
    ))
    .unwrap();
    let malformed = &lenient.sources[0].malformed;
    let lines: Vec<&str> = malformed
        .values()
        .flat_map(|p| p.first.iter().map(String::as_str))
        .collect();
    assert_eq!(lines.len(), 2, "{malformed:?}");
    assert!(lines.contains(&"line 3"), "{malformed:?}");
    assert_eq!(lenient.rows_kept, 4);

    let strict = run(&args(
        &dir.path().join("b"),
        &["--source", &spec, "--strict"],
    ))
    .unwrap_err();
    let msg = format!("{strict:#}");
    assert!(
        msg.contains("bad.csv") && msg.contains("line 3") && msg.contains("--strict"),
        "{msg}"
    );
}

#[test]
fn missing_column_is_named_with_the_columns_there_are() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("r.csv");
    write(&csv, "review,label\nx,1\n");
    let err = run(&args(
        &dir.path().join("o"),
        &["--source", &csv.display().to_string()],
    ))
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("no text column `text`") && msg.contains("review, label"),
        "{msg}"
    );
}

#[test]
fn offline_hub_dataset_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_preprocess"))
        .args(["--source", "imdb", "--output-dir"])
        .arg(dir.path().join("o"))
        .env("HF_HOME", dir.path().join("hf"))
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stanfordnlp/imdb") && err.contains("--source data/raw"),
        "{err}"
    );
}

/// A prediction log as the api writes it: 30 predictions, 13 corrected (one of them logged
/// without its text).
fn prediction_log(path: &Path) {
    use prediction_log::{Row, Source, Store};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = Store::connect(path.to_str().unwrap()).await.unwrap();
        let rows: Vec<Row> = (0..30)
            .map(|i| {
                let text = format!("served review number {i}, with words");
                Row {
                    id: Row::new_id(),
                    created_at: i,
                    model_version: "v1".into(),
                    source: Source::Ui,
                    text_hash: Row::hash_text(&text),
                    text_chars: 30,
                    text: (i != 0).then_some(text),
                    tokens: 8,
                    unknown_tokens: 0,
                    over_max_length: false,
                    label: "positive".into(),
                    confidence: 0.8,
                    probabilities: "{}".into(),
                    latency_ms: 1.0,
                }
            })
            .collect();
        store.insert(&rows).await.unwrap();
        for (i, r) in rows.iter().enumerate().take(13) {
            let label = ["negative", "positive"][i % 2];
            store.add_feedback(&r.id, label, i as i64).await.unwrap();
        }
    });
}

#[test]
fn corrected_predictions_from_the_log_become_labelled_rows() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("results/predictions.db");
    prediction_log(&log);
    let out = dir.path().join("out");
    let report = run(&args(
        &out,
        &[
            "--source",
            &log.display().to_string(),
            "--test-size",
            "0.25",
        ],
    ))
    .unwrap();
    let source = &report.sources[0];
    assert_eq!(source.name, "feedback");
    assert_eq!(
        source.rows_read, 12,
        "the correction without a text is skipped"
    );
    assert_eq!(report.rows_kept, 12);
    let mut all = Vec::new();
    for file in ["train.csv", "validation.csv", "test.csv"] {
        all.extend(read_examples(&out.join(file)).unwrap());
    }
    assert_eq!(all.len(), 12);
    assert!(all.iter().all(|e| e.source == "feedback"));
    // Rows 1..=12: odd ones corrected to positive, even ones to negative.
    let negative = all.iter().filter(|e| e.label == 0).count();
    assert_eq!(negative, 6);
    for e in &all {
        let n: usize = e
            .text
            .split(' ')
            .nth(3)
            .unwrap()
            .trim_end_matches(',')
            .parse()
            .unwrap();
        assert_eq!(e.label, n % 2, "{}", e.text);
    }
    // A missing file is an error that names it, not an empty source.
    let missing = dir.path().join("nope.db");
    let err = run(&args(
        &dir.path().join("o2"),
        &["--source", &missing.display().to_string()],
    ))
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("no prediction log at"),
        "{err:#}"
    );
}
