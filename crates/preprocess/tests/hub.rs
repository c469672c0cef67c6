//! `preprocess --source ORG/NAME` as users run it: a Hub data set's parquet files listed and
//! downloaded through a Hub stand-in (`hub-mock`, `HF_ENDPOINT`) into an empty cache, then read
//! again offline from that cache; an unknown data set fails clearly.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use hub_mock::{HubMock, Options, run_isolated};

/// A data set laid out as stanfordnlp/imdb is: plain_text/{train,test,unsupervised}-*.parquet.
fn write_dataset(dir: &Path) {
    for (split, n) in [("train", 40), ("test", 20), ("unsupervised", 10)] {
        let texts: Vec<String> = (0..n)
            .map(|i| match (split, i % 2) {
                ("unsupervised", _) => format!("unlabelled review {i}"),
                (_, 0) => format!("a dull {split} film, number {i}"),
                _ => format!("a wonderful {split} film, number {i}"),
            })
            .collect();
        let labels = Int64Array::from_iter_values(
            (0..n).map(|i| if split == "unsupervised" { -1 } else { i % 2 }),
        );
        let batch = RecordBatch::try_from_iter([
            ("text", Arc::new(StringArray::from(texts)) as ArrayRef),
            ("label", Arc::new(labels) as ArrayRef),
        ])
        .unwrap();
        let path = dir.join(format!("plain_text/{split}-00000-of-00001.parquet"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let file = std::fs::File::create(&path).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
    std::fs::write(dir.join("README.md"), "---\nlicense: other\n---\n").unwrap();
}

fn preprocess(root: &Path, source: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_preprocess"));
    cmd.args(["--source", source, "--tokenizer", "./none"])
        .arg("--output-dir")
        .arg(root.join("processed"));
    run_isolated(cmd, &root.join("hf-home"), env)
}

fn rows(path: &Path) -> usize {
    classifier::dataset::read_examples(path).unwrap().len()
}

#[test]
fn a_hub_data_set_downloads_then_reads_offline_from_the_cache() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    for id in ["some-org/imdb-tiny", "stanfordnlp/imdb"] {
        write_dataset(&root.join("hub/datasets").join(id).join("main"));
    }
    let mock = HubMock::start(&root.join("hub"), Options::default()).unwrap();
    for source in ["some-org/imdb-tiny", "imdb"] {
        let o = preprocess(root, source, &[("HF_ENDPOINT", &mock.url)]);
        assert!(
            o.status.success(),
            "{source}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let processed = root.join("processed");
        assert_eq!(
            rows(&processed.join("test.csv")),
            20,
            "the data set's own test split"
        );
        assert_eq!(
            rows(&processed.join("train.csv")) + rows(&processed.join("validation.csv")),
            40,
            "train split only: the unsupervised rows are not labelled"
        );
    }
    drop(mock);
    std::fs::remove_dir_all(root.join("processed")).unwrap();
    let o = preprocess(root, "some-org/imdb-tiny", &[("HF_HUB_OFFLINE", "1")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(rows(&root.join("processed/test.csv")), 20);
}

#[test]
fn an_unknown_hub_data_set_says_what_to_do() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    std::fs::create_dir_all(root.join("hub/datasets")).unwrap();
    let mock = HubMock::start(&root.join("hub"), Options::default()).unwrap();
    let o = preprocess(root, "some-org/missing", &[("HF_ENDPOINT", &mock.url)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("cannot get data set `some-org/missing`")
            && err.contains("HTTP 404")
            && err.contains("--source data/raw/reviews.csv"),
        "{err}"
    );
}
