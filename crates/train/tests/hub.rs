//! `train` as users start it, with the base model given as a Hub id: downloaded through a
//! Hub stand-in (`hub-mock`, `HF_ENDPOINT`) into an empty cache, then trained offline from
//! that cache; a revision pins the files; a wrong token and a missing repository fail with
//! their clear errors, and so does a server failing mid-download.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use classifier::dataset::{Example, write_examples};
use classifier::testing::{TinySize, vocab_for, write_tiny_model};
use hub_mock::{HubMock, Options, commit_of, run_isolated};

const TOKEN: &str = "hf_test_token";
const REPO: &str = "some-org/tiny-distilbert";

fn examples(n: usize, offset: usize) -> Vec<Example> {
    (0..n)
        .map(|i| Example {
            text: if i % 2 == 0 {
                format!("a great film {}", i + offset)
            } else {
                format!("an awful film {}", i + offset)
            },
            label: 1 - i % 2,
            source: "hub".into(),
        })
        .collect()
}

/// The mock's folder with two revisions of the model (different weights), and the data.
fn setup(root: &Path) -> PathBuf {
    let all: Vec<Example> = examples(60, 0);
    let texts: Vec<&str> = all.iter().map(|e| e.text.as_str()).collect();
    let vocab = vocab_for(&texts);
    for (revision, seed) in [("main", 1), ("v1", 2)] {
        let dir = root.join("hub/models").join(REPO).join(revision);
        write_tiny_model(&dir, &vocab, TinySize::default(), seed).unwrap();
    }
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_examples(&data.join("train.csv"), &all[..40]).unwrap();
    write_examples(&data.join("validation.csv"), &all[40..50]).unwrap();
    write_examples(&data.join("test.csv"), &all[50..]).unwrap();
    data
}

fn train(root: &Path, model: &str, env: &[(&str, &str)], extra: &[&str]) -> Output {
    let out = root.join("out");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_train"));
    cmd.args(["--base-model", model, "--epochs", "1", "--batch-size", "8"])
        .args([
            "--grad-accum",
            "1",
            "--train-samples",
            "0",
            "--eval-samples",
            "0",
        ])
        .arg("--data-dir")
        .arg(root.join("data"))
        .arg("--output-dir")
        .arg(out.join("model_output"))
        .arg("--results-dir")
        .arg(out.join("results"))
        .args(extra);
    run_isolated(cmd, &root.join("hf-home"), env)
}

/// The mock over `root/hub`, asking for [`TOKEN`].
fn start_mock(root: &Path) -> HubMock {
    let options = Options {
        token: Some(TOKEN.into()),
        ..Default::default()
    };
    HubMock::start(&root.join("hub"), options).unwrap()
}

fn revision_used(root: &Path) -> String {
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("out/results/run_summary.json")).unwrap(),
    )
    .unwrap();
    summary["base_model"]["revision"]
        .as_str()
        .unwrap()
        .to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_hub_id_downloads_into_an_empty_cache_then_trains_offline() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    setup(root);
    let mock = start_mock(root);
    let online = [("HF_ENDPOINT", mock.url.as_str()), ("HF_TOKEN", TOKEN)];
    let o = train(root, REPO, &online, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(revision_used(root), commit_of("models", REPO, "main"));
    let cached = root.join("hf-home/hub/models--some-org--tiny-distilbert");
    assert!(
        cached.join("refs/main").is_file(),
        "the cache holds the download"
    );

    // A revision pins what is fetched.
    let o = train(root, REPO, &online, &["--revision", "v1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(revision_used(root), commit_of("models", REPO, "v1"));

    // With the Hub gone, the cache alone serves the second run.
    drop(mock);
    let o = train(root, REPO, &[("HF_HUB_OFFLINE", "1")], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(revision_used(root), commit_of("models", REPO, "main"));
}

#[test]
fn a_wrong_token_a_missing_repo_and_a_failing_server_say_what_happened() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    setup(root);
    let mock = start_mock(root);
    let url = mock.url.as_str();
    let o = train(
        root,
        REPO,
        &[("HF_ENDPOINT", url), ("HF_TOKEN", "hf_wrong")],
        &[],
    );
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains(&format!("cannot get model `{REPO}`"))
            && err.contains("HTTP 401")
            && err.contains("HF_TOKEN"),
        "{err}"
    );

    let o = train(
        root,
        "some-org/no-such-model",
        &[("HF_ENDPOINT", url), ("HF_TOKEN", TOKEN)],
        &[],
    );
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("some-org/no-such-model") && err.contains("HTTP 404"),
        "{err}"
    );

    mock.fail_downloads(true);
    let o = train(
        root,
        REPO,
        &[("HF_ENDPOINT", url), ("HF_TOKEN", TOKEN)],
        &[],
    );
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains(&format!("cannot get model `{REPO}`"))
            && err.contains("HTTP 500")
            && err.contains("local model folder"),
        "{err}"
    );
    assert!(
        !root.join("out/model_output").exists(),
        "nothing is trained from a failed download"
    );
}
