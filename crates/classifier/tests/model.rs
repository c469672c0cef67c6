//! The model core against `transformers` (committed fixtures from
//! `tests/fixtures/make_fixtures.py`): parity, training, saving, and bad model folders.

// Every family against transformers; a module of this binary rather than a test binary of
// its own, since each one links the whole model stack again (CI time).
#[path = "model/families.rs"]
mod families;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Tensor};
use classifier::model_dir::{self, Head, SaveRequest};
use classifier::models::Mode;
use classifier::{
    Classifier, LoadOptions, ModelFiles, Pipeline, Pooling, PoolingChoice, Truncation,
};
use kernels::Kernels;
use serde::Deserialize;

#[derive(Deserialize)]
struct Expected {
    texts: Vec<String>,
    input_ids: Vec<Vec<u32>>,
    attention_mask: Vec<Vec<u32>>,
    distilbert_logits: Vec<Vec<f32>>,
    bert_first_token_hidden: Vec<Vec<f32>>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn expected() -> Expected {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn load(name: &str, opts: &LoadOptions) -> ModelFiles {
    ModelFiles::load(fixtures().join(name).to_str().unwrap(), opts).unwrap()
}

fn hf_batch(e: &Expected) -> (Tensor, Tensor) {
    let (b, s) = (e.input_ids.len(), e.input_ids[0].len());
    let ids = Tensor::from_vec(e.input_ids.concat(), (b, s), &Device::Cpu).unwrap();
    let mask = Tensor::from_vec(e.attention_mask.concat(), (b, s), &Device::Cpu).unwrap();
    (ids, mask)
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Our token ids equal transformers' for every fixture text, padding removed.
fn assert_same_tokens(ids: &[Vec<u32>], e: &Expected) {
    for (i, (ours, (theirs, mask))) in ids
        .iter()
        .zip(e.input_ids.iter().zip(&e.attention_mask))
        .enumerate()
    {
        let n = mask.iter().filter(|m| **m == 1).count();
        assert_eq!(ours, &theirs[..n], "tokens of text {i}: {:?}", e.texts[i]);
    }
}

#[test]
fn distilbert_logits_match_transformers() {
    let e = expected();
    let ckpt = load("tiny-distilbert", &LoadOptions::default());
    assert_eq!(ckpt.head, Head::Loaded);
    let clf = Classifier::from_model_files(ckpt).unwrap();
    assert_eq!(clf.labels(), ["negative", "positive"]);

    let texts: Vec<&str> = e.texts.iter().map(String::as_str).collect();
    assert_same_tokens(&clf.encode(&texts).unwrap(), &e);

    let (ids, mask) = hf_batch(&e);
    for kernels in [Kernels::Fused, Kernels::Reference] {
        let model = clf.model().clone().with_kernels(kernels);
        let logits = model.forward(&ids, &mask, Mode::Eval).unwrap();
        let diff = max_abs_diff(&logits.to_vec2().unwrap(), &e.distilbert_logits);
        assert!(diff < 1e-4, "{kernels:?}: max |logit difference| {diff}");
    }
}

#[test]
fn bert_checkpoint_converts_exactly() {
    let e = expected();
    let ckpt = load("tiny-bert", &LoadOptions::default());
    assert_eq!(ckpt.original_model_type, "bert");
    assert!(
        matches!(ckpt.head, Head::Fresh(_)),
        "BERT has no DistilBERT head"
    );
    let texts: Vec<&str> = e.texts.iter().map(String::as_str).collect();
    // tiny-bert has only vocab.txt: the WordPiece pipeline we build must tokenize alike.
    let ids = ckpt
        .tokenizer
        .encode_batch(&texts, 64, Truncation::Head)
        .unwrap();
    assert_same_tokens(&ids, &e);

    let model = ckpt.model().unwrap();
    let (ids, mask) = hf_batch(&e);
    let hidden = model.encode(&ids, &mask, Mode::Eval).unwrap();
    let first = hidden.i((.., 0)).unwrap().to_vec2::<f32>().unwrap();
    let diff = max_abs_diff(&first, &e.bert_first_token_hidden);
    assert!(diff < 1e-4, "max |hidden difference| {diff}");
}

#[test]
fn serving_a_bare_encoder_is_an_error_not_a_random_head() {
    let dir = fixtures().join("tiny-bert");
    for err in [
        Classifier::load_dir(&dir).unwrap_err().to_string(),
        Classifier::load(dir.to_str().unwrap())
            .unwrap_err()
            .to_string(),
    ] {
        assert!(
            err.contains("no classification head") && err.contains("train --base-model"),
            "{err}"
        );
    }
    // Asking a fine-tuned model for other labels while serving is refused the same way.
    let opts = LoadOptions {
        labels: Some(vec!["a".into(), "b".into(), "c".into()]),
        ..LoadOptions::serving()
    };
    let err = ModelFiles::load(fixtures().join("tiny-distilbert").to_str().unwrap(), &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("2 classes, 3 are wanted"), "{err}");
}

#[test]
fn fresh_head_is_seeded() {
    let opts = |seed| LoadOptions {
        seed,
        ..Default::default()
    };
    let a = load("tiny-bert", &opts(1));
    let b = load("tiny-bert", &opts(1));
    let c = load("tiny-bert", &opts(2));
    let w = |c: &ModelFiles| {
        c.tensors["classifier.weight"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert_eq!(w(&a), w(&b));
    assert_ne!(w(&a), w(&c));
    let std = {
        let v = w(&a);
        (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt()
    };
    assert!(
        (0.01..0.04).contains(&std),
        "normal(0, 0.02) init, got std {std}"
    );
}

#[test]
fn relabelling_keeps_a_head_of_the_same_size_and_replaces_a_mismatched_one() {
    let same = load(
        "tiny-distilbert",
        &LoadOptions {
            labels: Some(vec!["bad".into(), "good".into()]),
            ..Default::default()
        },
    );
    assert_eq!(same.head, Head::Loaded);
    assert_eq!(same.config.labels().unwrap(), ["bad", "good"]);
    let three = load(
        "tiny-distilbert",
        &LoadOptions {
            labels: Some(vec!["neg".into(), "neutral".into(), "pos".into()]),
            ..Default::default()
        },
    );
    assert!(matches!(three.head, Head::Fresh(_)));
    assert_eq!(three.tensors["classifier.weight"].dims(), [3, 32]);
}

#[test]
fn every_weight_gets_a_finite_nonzero_gradient() {
    assert_every_weight_gets_a_gradient(load("tiny-distilbert", &LoadOptions::default()));
    let mean = load(
        "tiny-bert",
        &LoadOptions {
            pooling: PoolingChoice::Exactly(Pooling::Mean),
            ..Default::default()
        },
    );
    assert_eq!(mean.config.pooling(), Pooling::Mean);
    assert_every_weight_gets_a_gradient(mean);
}

fn assert_every_weight_gets_a_gradient(ckpt: ModelFiles) {
    let trainable = ckpt.trainable().unwrap();
    let e = expected();
    let (ids, mask) = hf_batch(&e);
    let logits = trainable
        .model
        .forward(&ids, &mask, Mode::Train { seed: 3 })
        .unwrap();
    let labels = Tensor::from_vec(
        (0..e.texts.len() as u32).map(|i| i % 2).collect::<Vec<_>>(),
        e.texts.len(),
        &Device::Cpu,
    )
    .unwrap();
    let loss = kernels::cross_entropy(&logits, &labels).unwrap();
    let grads = loss.backward().unwrap();
    assert_eq!(trainable.params.len(), ckpt.config.parameter_shapes().len());
    for (name, var) in &trainable.params {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let g = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(
            g.iter().all(|x| x.is_finite()),
            "{name}: non-finite gradient"
        );
        assert!(g.iter().any(|x| *x != 0.0), "{name}: all-zero gradient");
    }
}

#[test]
fn dropout_only_in_train_mode_and_reproducible() {
    let ckpt = load("tiny-distilbert", &LoadOptions::default());
    let model = ckpt.model().unwrap();
    let (ids, mask) = hf_batch(&expected());
    let run = |mode| {
        model
            .forward(&ids, &mask, mode)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
    };
    assert_eq!(run(Mode::Eval), run(Mode::Eval));
    let t1 = run(Mode::Train { seed: 1 });
    assert_eq!(t1, run(Mode::Train { seed: 1 }));
    assert_ne!(t1, run(Mode::Train { seed: 2 }));
    assert!(max_abs_diff(&t1, &run(Mode::Eval)) > 1e-3);
}

#[test]
fn save_then_load_gives_identical_logits() {
    let ckpt = load("tiny-bert", &LoadOptions::default());
    let e = expected();
    let texts: Vec<&str> = e.texts.iter().map(String::as_str).collect();
    let before = Classifier::from_model_files(load("tiny-bert", &LoadOptions::default()))
        .unwrap()
        .predict(&texts)
        .unwrap();

    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("model_output");
    let tensors: Vec<(String, Tensor)> = ckpt.tensors.clone().into_iter().collect();
    let pipeline = Pipeline {
        max_length: 48,
        truncation: Truncation::HeadTail,
        ..Pipeline::default()
    };
    model_dir::save(
        &dir,
        &SaveRequest {
            config: &ckpt.config,
            tensors: &tensors,
            tokenizer: &ckpt.tokenizer,
            pipeline: &pipeline,
        },
    )
    .unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "special_tokens_map.json",
        "pipeline.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} not saved");
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "distilbert");
    assert_eq!(
        config["architectures"][0],
        "DistilBertForSequenceClassification"
    );
    assert!(
        config.get("pooling").is_none(),
        "a first-token config must stay exactly what transformers writes"
    );

    let reloaded = Classifier::load_dir(&dir).unwrap();
    assert_eq!(reloaded.pipeline(), &pipeline);
    let after = reloaded.predict(&texts).unwrap();
    assert_eq!(
        before, after,
        "a saved model must predict exactly as before"
    );
}

/// `x @ w^T + b` for the head's checks, independent of the model's kernels.
fn affine(x: &Tensor, tensors: &std::collections::HashMap<String, Tensor>, name: &str) -> Tensor {
    x.matmul(&tensors[&format!("{name}.weight")].t().unwrap())
        .unwrap()
        .broadcast_add(&tensors[&format!("{name}.bias")])
        .unwrap()
}

#[test]
fn mean_pooling_follows_sentence_transformers_and_ignores_padding() {
    let (_t, dir) = broken_copy("tiny-bert", |d| {
        std::fs::create_dir(d.join("1_Pooling")).unwrap();
        std::fs::write(
            d.join("1_Pooling/config.json"),
            r#"{"word_embedding_dimension": 32, "pooling_mode_cls_token": false,
                "pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": false}"#,
        )
        .unwrap();
    });
    let path = dir.to_str().unwrap();
    assert_eq!(
        ModelFiles::load(path, &LoadOptions::default())
            .unwrap()
            .config
            .pooling(),
        Pooling::Cls,
        "unless asked, a fresh head reads the first token, as transformers'"
    );
    let auto = LoadOptions {
        pooling: PoolingChoice::Auto,
        ..Default::default()
    };
    let ckpt = ModelFiles::load(path, &auto).unwrap();
    assert_eq!(ckpt.config.pooling(), Pooling::Mean);
    let asked = LoadOptions {
        pooling: PoolingChoice::Exactly(Pooling::Cls),
        ..Default::default()
    };
    assert_eq!(
        ModelFiles::load(path, &asked).unwrap().config.pooling(),
        Pooling::Cls,
        "an explicit choice overrides the folder's"
    );

    // The head reads the mean of each text's own tokens: padding must not count.
    let e = expected();
    let (ids, mask) = hf_batch(&e);
    let model = ckpt.model().unwrap();
    let logits = model.forward(&ids, &mask, Mode::Eval).unwrap();
    let hidden = model.encode(&ids, &mask, Mode::Eval).unwrap();
    let lengths: Vec<usize> = e
        .attention_mask
        .iter()
        .map(|m| m.iter().sum::<u32>() as usize)
        .collect();
    assert!(
        lengths.iter().any(|n| *n < ids.dim(1).unwrap()),
        "the fixture batch must contain padding for this test to mean anything"
    );
    let means: Vec<Tensor> = lengths
        .iter()
        .enumerate()
        .map(|(i, n)| hidden.i((i, ..*n)).unwrap().mean_keepdim(0).unwrap())
        .collect();
    let pooled = Tensor::cat(&means, 0).unwrap();
    let expected_logits = affine(
        &affine(&pooled, &ckpt.tensors, "pre_classifier")
            .relu()
            .unwrap(),
        &ckpt.tensors,
        "classifier",
    );
    let diff = max_abs_diff(
        &logits.to_vec2().unwrap(),
        &expected_logits.to_vec2().unwrap(),
    );
    assert!(diff < 1e-5, "max |logit difference| {diff}");

    // Saved, the choice travels in config.json and the loaded head keeps it.
    let out = tempfile::tempdir().unwrap();
    let saved = out.path().join("model_output");
    let tensors: Vec<(String, Tensor)> = ckpt.tensors.clone().into_iter().collect();
    model_dir::save(
        &saved,
        &SaveRequest {
            config: &ckpt.config,
            tensors: &tensors,
            tokenizer: &ckpt.tokenizer,
            pipeline: &Pipeline::default(),
        },
    )
    .unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(saved.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["pooling"], "mean");
    let saved = saved.to_str().unwrap();
    let reloaded = ModelFiles::load(saved, &LoadOptions::default()).unwrap();
    assert_eq!(reloaded.head, Head::Loaded);
    assert_eq!(
        reloaded.config.pooling(),
        Pooling::Mean,
        "a loaded head keeps its own"
    );
    let again = reloaded
        .model()
        .unwrap()
        .forward(&ids, &mask, Mode::Eval)
        .unwrap();
    assert_eq!(
        logits.to_vec2::<f32>().unwrap(),
        again.to_vec2::<f32>().unwrap()
    );
    let err = ModelFiles::load(saved, &asked).unwrap_err().to_string();
    assert!(
        err.contains("trained on mean pooling") && err.contains("cls"),
        "{err}"
    );
}

#[test]
fn batched_predictions_equal_one_at_a_time() {
    let e = expected();
    let clf = Classifier::from_model_files(load("tiny-distilbert", &LoadOptions::default()))
        .unwrap()
        .with_limits(classifier::BatchLimits {
            max_batch_size: 4,
            max_batch_tokens: 64,
        })
        .unwrap();
    let texts: Vec<&str> = e.texts.iter().map(String::as_str).collect();
    let together = clf.predict(&texts).unwrap();
    for (i, t) in texts.iter().enumerate() {
        let alone = &clf.predict(&[t]).unwrap()[0];
        assert_eq!(alone.class, together[i].class);
        for (a, b) in alone.probabilities.iter().zip(&together[i].probabilities) {
            assert!((a - b).abs() < 1e-5, "text {i}: {a} vs {b}");
        }
    }
}

#[test]
fn long_batches_run_in_chunks_with_the_same_logits() {
    // 20 x 64 tokens is over the 1024 an inference chunk holds: the model runs 16, then 4.
    let clf =
        Classifier::from_model_files(load("tiny-distilbert", &LoadOptions::default())).unwrap();
    let (batch, seq) = (20usize, 64usize);
    let ids: Vec<u32> = (0..batch * seq).map(|i| (i * 7 % 130) as u32 + 5).collect();
    let mask: Vec<u32> = (0..batch * seq)
        .map(|i| u32::from(i % seq < seq - (i / seq) % 9))
        .collect();
    let ids = Tensor::from_vec(ids, (batch, seq), &Device::Cpu).unwrap();
    let mask = Tensor::from_vec(mask, (batch, seq), &Device::Cpu).unwrap();
    let together = clf
        .model()
        .forward(&ids, &mask, Mode::Eval)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert_eq!(together.len(), batch);
    for (i, row) in together.iter().enumerate() {
        let alone = clf
            .model()
            .forward(
                &ids.narrow(0, i, 1).unwrap(),
                &mask.narrow(0, i, 1).unwrap(),
                Mode::Eval,
            )
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (a, b) in alone[0].iter().zip(row) {
            assert!((a - b).abs() < 1e-5, "sequence {i}: {a} vs {b}");
        }
    }
}

/// Copies a fixture folder so a test can break it.
fn broken_copy(name: &str, edit: impl FnOnce(&Path)) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(name);
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(fixtures().join(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    edit(&dir);
    (tmp, dir)
}

fn load_err(dir: &Path) -> String {
    ModelFiles::load(dir.to_str().unwrap(), &LoadOptions::default())
        .unwrap_err()
        .to_string()
}

fn rewrite_weights(dir: &Path, edit: impl FnOnce(&mut std::collections::HashMap<String, Tensor>)) {
    let path = dir.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, &path).unwrap();
}

#[test]
fn missing_config_is_named() {
    let (_t, dir) = broken_copy("tiny-distilbert", |d| {
        std::fs::remove_file(d.join("config.json")).unwrap()
    });
    let err = load_err(&dir);
    assert!(
        err.contains("config.json") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn missing_tensor_is_named_with_its_file() {
    let (_t, dir) = broken_copy("tiny-distilbert", |d| {
        rewrite_weights(d, |t| {
            t.remove("distilbert.transformer.layer.1.ffn.lin2.weight");
        })
    });
    let err = load_err(&dir);
    assert!(err.contains("model.safetensors"), "{err}");
    assert!(
        err.contains("missing tensor `distilbert.transformer.layer.1.ffn.lin2.weight`"),
        "{err}"
    );
}

#[test]
fn misshapen_tensor_is_named_with_both_shapes() {
    let (_t, dir) = broken_copy("tiny-distilbert", |d| {
        rewrite_weights(d, |t| {
            t.insert(
                "distilbert.transformer.layer.0.attention.q_lin.weight".into(),
                Tensor::zeros((32, 31), DType::F32, &Device::Cpu).unwrap(),
            );
        })
    });
    let err = load_err(&dir);
    assert!(err.contains("model.safetensors"), "{err}");
    assert!(
        err.contains("q_lin.weight") && err.contains("[32, 31]") && err.contains("[32, 32]"),
        "{err}"
    );
}

#[test]
fn corrupt_weights_file_is_an_error_not_a_panic() {
    let (_t, dir) = broken_copy("tiny-distilbert", |d| {
        std::fs::write(d.join("model.safetensors"), b"not a safetensors file").unwrap()
    });
    let err = load_err(&dir);
    assert!(
        err.contains("model.safetensors") && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn unknown_model_type_is_named() {
    let (_t, dir) = broken_copy("tiny-distilbert", |d| {
        let p = d.join("config.json");
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, text.replace("\"distilbert\"", "\"gpt2\"")).unwrap();
    });
    let err = load_err(&dir);
    assert!(
        err.contains("config.json") && err.contains("model_type `gpt2`"),
        "{err}"
    );
}

#[test]
fn empty_vocab_is_named() {
    let (_t, dir) = broken_copy("tiny-bert", |d| {
        std::fs::write(d.join("vocab.txt"), "").unwrap()
    });
    let err = load_err(&dir);
    assert!(err.contains("vocab.txt") && err.contains("empty"), "{err}");
}

/// The fused kernels (our own backward passes) against candle's autograd over the
/// reference kernels: same logits and same gradient for every parameter, with dropout on
/// and padding in the batch.
#[test]
fn fused_kernels_match_reference_forward_and_backward() {
    let ckpt = load("tiny-distilbert", &LoadOptions::default());
    let e = expected();
    let (ids, mask) = hf_batch(&e);
    let labels: Vec<u32> = (0..e.texts.len() as u32).map(|i| i % 2).collect();
    assert_kernels_train_alike(&ckpt, (&ids, &mask), &labels, "tiny-distilbert");
}

/// Trains one pass (dropout on, seed 9) of `ckpt` on the batch with the reference and the
/// fused kernels, and asserts the same logits (1e-5) and gradients: each parameter's error
/// within 1e-4 of its largest gradient plus 1e-6 of the largest overall (the key bias's
/// gradient is zero in exact arithmetic, since softmax ignores a per-row shift, so both
/// sides hold only rounding noise there).
fn assert_kernels_train_alike(
    ckpt: &ModelFiles,
    (ids, mask): (&Tensor, &Tensor),
    labels: &[u32],
    what: &str,
) {
    let labels = Tensor::from_vec(labels.to_vec(), labels.len(), &Device::Cpu).unwrap();
    let run = |k: Kernels| {
        let mut t = ckpt.trainable().unwrap();
        t.model = t.model.clone().with_kernels(k);
        let logits = t.model.forward(ids, mask, Mode::Train { seed: 9 }).unwrap();
        let grads = kernels::cross_entropy(&logits, &labels)
            .unwrap()
            .backward()
            .unwrap();
        let g: Vec<(String, Vec<f32>)> = t
            .params
            .iter()
            .map(|(n, v)| {
                let g = grads
                    .get(v.as_tensor())
                    .unwrap_or_else(|| panic!("{what} {k:?}: no gradient for {n}"));
                (n.clone(), g.flatten_all().unwrap().to_vec1().unwrap())
            })
            .collect();
        (logits.to_vec2::<f32>().unwrap(), g)
    };
    let (ref_logits, ref_grads) = run(Kernels::Reference);
    let (fused_logits, fused_grads) = run(Kernels::Fused);
    let diff = max_abs_diff(&ref_logits, &fused_logits);
    assert!(diff < 1e-5, "{what}: logits differ by {diff}");
    let global = ref_grads
        .iter()
        .flat_map(|(_, g)| g.iter())
        .fold(0f32, |m, x| m.max(x.abs()));
    for ((name, r), (_, f)) in ref_grads.iter().zip(&fused_grads) {
        let scale = r.iter().fold(0f32, |m, x| m.max(x.abs()));
        let err = r.iter().zip(f).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            err <= 1e-4 * scale + 1e-6 * global,
            "{what} {name}: gradient error {err} (largest gradient {scale}, overall {global})"
        );
    }
}

/// Int8 serving stays close to f32: every logit within 8% of the logits' spread (this random
/// 32-dim model has none of a trained model's averaging over wide layers: measured 6%), and
/// the same class wherever f32's margin is wider than that error.
#[test]
fn int8_logits_stay_close_to_f32() {
    use classifier::Precision;
    let e = expected();
    let texts: Vec<&str> = e.texts.iter().map(String::as_str).collect();
    let f32_clf =
        Classifier::from_model_files(load("tiny-distilbert", &LoadOptions::default())).unwrap();
    assert_eq!(f32_clf.precision(), Precision::F32);
    let exact = f32_clf.predict(&texts).unwrap();
    let int8_clf = f32_clf.with_precision(Precision::Int8).unwrap();
    assert_eq!(int8_clf.precision(), Precision::Int8);
    let quant = int8_clf.predict(&texts).unwrap();

    let logits = |p: &[classifier::Prediction]| -> Vec<Vec<f32>> {
        p.iter().map(|p| p.logits.clone()).collect()
    };
    let (exact_logits, quant_logits) = (logits(&exact), logits(&quant));
    let spread = exact_logits
        .iter()
        .flatten()
        .fold(0f32, |m, v| m.max(v.abs()));
    let err = max_abs_diff(&exact_logits, &quant_logits);
    assert!(err > 0.0, "int8 must actually run quantised");
    assert!(
        err <= 0.08 * spread.max(1.0),
        "int8 logits off by {err} (f32 logits up to {spread})"
    );
    for (i, (x, q)) in exact.iter().zip(&quant).enumerate() {
        let margin = (x.logits[0] - x.logits[1]).abs();
        if margin > 2.0 * err {
            assert_eq!(x.class, q.class, "text {i}: class changed under int8");
        }
    }
    // The reference kernels split the packed int8 Q/K/V product: same logits as fused.
    let (ids, mask) = hf_batch(&e);
    let int8_model = int8_clf.model();
    let fused = int8_model.forward(&ids, &mask, Mode::Eval).unwrap();
    let reference = int8_model
        .clone()
        .with_kernels(Kernels::Reference)
        .forward(&ids, &mask, Mode::Eval)
        .unwrap();
    // Only rounding differs (an activation on a quantisation boundary can land one step
    // apart), so the gap is a small share of int8's own error.
    let diff = max_abs_diff(&fused.to_vec2().unwrap(), &reference.to_vec2().unwrap());
    assert!(
        diff <= 0.25 * err,
        "int8 fused vs reference kernels differ by {diff} (int8 error {err})"
    );
    // The f32 weights are gone (one copy in memory): going back is a clear error.
    let err = int8_clf.with_precision(Precision::F32).unwrap_err();
    assert!(err.to_string().contains("load it again"), "{err}");
}

#[test]
fn int8_refuses_weights_being_trained() {
    let t = load("tiny-distilbert", &LoadOptions::default())
        .trainable()
        .unwrap();
    let err = t
        .model
        .clone()
        .with_precision(classifier::Precision::Int8)
        .unwrap_err();
    assert!(err.to_string().contains("for inference"), "{err}");
}

#[test]
fn long_texts_average_their_windows_and_short_ones_are_unchanged() {
    use classifier::{LongText, LongTextPolicy};
    let base =
        || Classifier::from_model_files(load("tiny-distilbert", &LoadOptions::default())).unwrap();
    let max_length = base().pipeline().max_length;
    let long: String = ["the plot was predictable", "i loved every minute", "dull"]
        .iter()
        .cycle()
        .take(3 * max_length / 4)
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let short = "great great great";
    let windows = base().with_long_text(LongTextPolicy {
        mode: LongText::Windows,
        stride: 0,
    });
    let truncate = base().with_long_text(LongTextPolicy {
        mode: LongText::Truncate,
        stride: 0,
    });
    assert_eq!(
        windows.predict(&[short]).unwrap(),
        truncate.predict(&[short]).unwrap(),
        "a text that fits is read exactly as before"
    );

    let parts = windows.encode_windows(&[&long]).unwrap().remove(0);
    assert!(parts.len() >= 3, "{} windows", parts.len());
    assert!(parts.iter().all(|w| w.len() <= max_length));
    let each = windows.predict_ids(&parts).unwrap();
    let classes = each[0].logits.len();
    let mean: Vec<f32> = (0..classes)
        .map(|c| each.iter().map(|p| p.logits[c]).sum::<f32>() / each.len() as f32)
        .collect();
    let got = windows.predict(&[&long]).unwrap().remove(0);
    for (a, b) in got.logits.iter().zip(&mean) {
        assert!(
            (a - b).abs() < 1e-5,
            "mean of the windows' logits: {:?} vs {mean:?}",
            got.logits
        );
    }
    assert_ne!(got, truncate.predict(&[&long]).unwrap().remove(0));
}

#[test]
fn the_pipeline_temperature_scales_probabilities_not_logits() {
    let ckpt = load("tiny-distilbert", &LoadOptions::default());
    let plain = Classifier::from_model_files(ckpt).unwrap();
    let p1 = plain.predict(&["not bad at all"]).unwrap().remove(0);
    let ckpt = load("tiny-distilbert", &LoadOptions::default());
    let model = ckpt.model().unwrap();
    let pipeline = Pipeline {
        temperature: 2.0,
        ..ckpt.pipeline.clone().unwrap_or_default()
    };
    let hot =
        Classifier::from_parts(model, ckpt.tokenizer, pipeline, ckpt.config, ckpt.source).unwrap();
    let p2 = hot.predict(&["not bad at all"]).unwrap().remove(0);
    assert_eq!(p1.logits, p2.logits);
    assert_eq!(p1.class, p2.class);
    let z = &p1.logits;
    let expected = 1.0 / (1.0 + ((z[0] - z[1]) / 2.0).exp());
    assert!((p2.probabilities[1] - expected).abs() < 1e-6);
}
