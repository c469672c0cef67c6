//! Every model family against `transformers`: a fine-tuned `*ForSequenceClassification`
//! fixture per family (`tests/fixtures/make_fixtures.py`: random weights, the family's real
//! tokenizer type) gives transformers' token ids, logits and probabilities, in f32 and close
//! in int8; trains every weight; saves back as its own class; and without its head is never
//! served.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use classifier::model_dir::{self, Head, SaveRequest};
use classifier::models::Mode;
use classifier::{Classifier, LoadOptions, ModelFiles, Pipeline, Precision, Prediction};
use kernels::Kernels;
use serde::Deserialize;

use super::{assert_kernels_train_alike, max_abs_diff};

/// A fixture folder, its expected outputs, and what it must save back as.
struct Family {
    folder: &'static str,
    expected: &'static str,
    model_type: &'static str,
    architecture: &'static str,
    /// The encoder's name prefix in the checkpoint.
    prefix: &'static str,
    /// How far int8 logits may be from transformers', as a share of the largest logit.
    int8_bound: f32,
}

/// DistilBERT's int8 bound, which every fixture but one meets.
const INT8_BOUND: f32 = 0.08;
/// The bound of one fixture, the DeBERTa-v3 draw (the v2 and spm DeBERTa fixtures are at
/// 5.4% and 5.3%). Not a weaker family: on these 32-wide random models the int8
/// error depends on the draw of the weights far more than on the family. Eight draws of each
/// fixture (make_fixtures.py with its seeds changed) gave 2.9-9.9% of the largest logit for
/// BERT, 3.5-15.9% for RoBERTa and 3.1-13.7% for DeBERTa-v3; the committed v3 draw is 12%
/// (0.31 of 2.6), so a bound of 8% would fail some draws of every family. Keeping its query,
/// key and value projections in f32 (the ones its position scores multiply) still left 9%.
const DEBERTA_V3_DRAW_INT8_BOUND: f32 = 0.15;

const FAMILIES: [Family; 8] = [
    Family {
        folder: "tiny-bert-classifier",
        expected: "expected-bert-classifier.json",
        model_type: "bert",
        architecture: "BertForSequenceClassification",
        prefix: "bert",
        int8_bound: INT8_BOUND,
    },
    Family {
        folder: "tiny-roberta-classifier",
        expected: "expected-roberta-classifier.json",
        model_type: "roberta",
        architecture: "RobertaForSequenceClassification",
        prefix: "roberta",
        int8_bound: INT8_BOUND,
    },
    Family {
        folder: "tiny-xlm-roberta-classifier",
        expected: "expected-xlm-roberta-classifier.json",
        model_type: "xlm-roberta",
        architecture: "XLMRobertaForSequenceClassification",
        prefix: "roberta",
        int8_bound: INT8_BOUND,
    },
    Family {
        folder: "tiny-camembert-classifier",
        expected: "expected-camembert-classifier.json",
        model_type: "camembert",
        architecture: "CamembertForSequenceClassification",
        prefix: "roberta",
        int8_bound: INT8_BOUND,
    },
    Family {
        folder: "tiny-electra-classifier",
        expected: "expected-electra-classifier.json",
        model_type: "electra",
        architecture: "ElectraForSequenceClassification",
        prefix: "electra",
        int8_bound: INT8_BOUND,
    },
    Family {
        folder: "tiny-deberta-v3-classifier",
        expected: "expected-deberta-v3-classifier.json",
        model_type: "deberta-v2",
        architecture: "DebertaV2ForSequenceClassification",
        prefix: "deberta",
        int8_bound: DEBERTA_V3_DRAW_INT8_BOUND,
    },
    // Its tokenizer is only spm.model, as microsoft/deberta-v3-base ships it.
    Family {
        folder: "tiny-deberta-v3-spm-classifier",
        expected: "expected-deberta-v3-spm-classifier.json",
        model_type: "deberta-v2",
        architecture: "DebertaV2ForSequenceClassification",
        prefix: "deberta",
        int8_bound: INT8_BOUND,
    },
    Family {
        folder: "tiny-deberta-v2-classifier",
        expected: "expected-deberta-v2-classifier.json",
        model_type: "deberta-v2",
        architecture: "DebertaV2ForSequenceClassification",
        prefix: "deberta",
        int8_bound: INT8_BOUND,
    },
];

/// The families served, trained and saved in their own layout (all but BERT).
fn native() -> impl Iterator<Item = &'static Family> {
    FAMILIES.iter().filter(|f| f.model_type != "bert")
}

#[derive(Deserialize)]
struct Expected {
    texts: Vec<String>,
    input_ids: Vec<Vec<u32>>,
    attention_mask: Vec<Vec<u32>>,
    labels: Vec<String>,
    logits: Vec<Vec<f32>>,
    probabilities: Vec<Vec<f32>>,
}

impl Expected {
    fn texts(&self) -> Vec<&str> {
        self.texts.iter().map(String::as_str).collect()
    }

    /// What `clf` predicts for the texts, one `field` (logits or probabilities) per text.
    fn predicted(&self, clf: &Classifier, field: fn(Prediction) -> Vec<f32>) -> Vec<Vec<f32>> {
        clf.predict(&self.texts())
            .unwrap()
            .into_iter()
            .map(field)
            .collect()
    }

    /// `clf`'s token ids are transformers' for every text, padding removed.
    fn assert_same_tokens(&self, clf: &Classifier, name: &str) {
        let ours = clf
            .tokenizer()
            .encode_batch(&self.texts(), 64, Default::default());
        for (i, (ours, theirs)) in ours.unwrap().iter().zip(&self.input_ids).enumerate() {
            let n = self.attention_mask[i].iter().filter(|m| **m == 1).count();
            assert_eq!(ours, &theirs[..n], "{name}: tokens of {:?}", self.texts[i]);
        }
    }

    /// transformers' padded batch.
    fn batch(&self) -> (Tensor, Tensor) {
        let (b, s) = (self.input_ids.len(), self.input_ids[0].len());
        let ids = Tensor::from_vec(self.input_ids.concat(), (b, s), &Device::Cpu).unwrap();
        let mask = Tensor::from_vec(self.attention_mask.concat(), (b, s), &Device::Cpu).unwrap();
        (ids, mask)
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn expected(f: &Family) -> Expected {
    serde_json::from_str(&std::fs::read_to_string(fixture(f.expected)).unwrap()).unwrap()
}

/// Loaded for training as `train` does: the checkpoint's own head where it has one.
fn for_training(dir: &Path) -> ModelFiles {
    ModelFiles::load(dir.to_str().unwrap(), &LoadOptions::default()).unwrap()
}

fn served(f: &Family) -> Classifier {
    Classifier::load_dir(&fixture(f.folder)).unwrap_or_else(|e| panic!("{}: {e}", f.folder))
}

#[test]
fn tokens_logits_and_probabilities_match_transformers() {
    for f in &FAMILIES {
        let (e, clf) = (expected(f), served(f));
        assert_eq!(clf.labels(), e.labels, "{}: labels from id2label", f.folder);
        e.assert_same_tokens(&clf, f.folder);
        let (ids, mask) = e.batch();
        // As loaded, and as served: with its precision set (which keeps DeBERTa's projected
        // position table).
        let as_served = clf.model().clone().with_precision(Precision::F32).unwrap();
        for (model, how) in [(clf.model().clone(), "loaded"), (as_served, "served")] {
            for kernels in [Kernels::Fused, Kernels::Reference] {
                let model = model.clone().with_kernels(kernels);
                let logits = model.forward(&ids, &mask, Mode::Eval).unwrap();
                let diff = max_abs_diff(&logits.to_vec2().unwrap(), &e.logits);
                assert!(
                    diff < 1e-4,
                    "{} {how} {kernels:?}: |logit diff| {diff}",
                    f.folder
                );
            }
        }
        let probs: Vec<Vec<f32>> = e.predicted(&clf, |p| p.probabilities);
        let diff = max_abs_diff(&probs, &e.probabilities);
        assert!(diff < 1e-5, "{}: |probability diff| {diff}", f.folder);
    }
}

/// DistilBERT's int8 bound (every logit within 8% of the logits' spread), or the family's.
#[test]
fn int8_logits_stay_close_to_transformers() {
    for f in &FAMILIES {
        let e = expected(f);
        let clf = served(f).with_precision(Precision::Int8).unwrap();
        let logits: Vec<Vec<f32>> = e.predicted(&clf, |p| p.logits);
        let spread = e.logits.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
        let err = max_abs_diff(&logits, &e.logits);
        assert!(err > 0.0, "{}: int8 must actually run quantised", f.folder);
        assert!(
            err <= f.int8_bound * spread.max(1.0),
            "{}: int8 logits off by {err} (logits up to {spread})",
            f.folder
        );
    }
}

#[test]
fn every_weight_of_every_family_trains() {
    for f in &FAMILIES {
        let ckpt = for_training(&fixture(f.folder));
        let trainable = ckpt.trainable().unwrap();
        let e = expected(f);
        let (ids, mask) = e.batch();
        let logits = trainable
            .model
            .forward(&ids, &mask, Mode::Train { seed: 3 })
            .unwrap();
        let classes = e.labels.len() as u32;
        let labels: Vec<u32> = (0..e.texts.len() as u32).map(|i| i % classes).collect();
        let labels = Tensor::from_vec(labels, e.texts.len(), &Device::Cpu).unwrap();
        let grads = kernels::cross_entropy(&logits, &labels)
            .unwrap()
            .backward()
            .unwrap();
        assert_eq!(trainable.params.len(), ckpt.config.parameter_shapes().len());
        for (name, var) in &trainable.params {
            let g = grads.get(var.as_tensor()).unwrap_or_else(|| {
                panic!("{}: no gradient for {name}", f.folder);
            });
            let g = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(g.iter().all(|x| x.is_finite()), "{name}: non-finite");
            assert!(g.iter().any(|x| *x != 0.0), "{}: {name} all zero", f.folder);
        }
    }
}

/// The fused kernels (DeBERTa's attention with its position scores among them) give the
/// reference kernels' logits and gradients in training, dropout included.
#[test]
fn fused_and_reference_kernels_train_alike_in_every_family() {
    for f in &FAMILIES {
        let ckpt = for_training(&fixture(f.folder));
        let e = expected(f);
        let (ids, mask) = e.batch();
        let classes = e.labels.len() as u32;
        let labels: Vec<u32> = (0..e.texts.len() as u32).map(|i| i % classes).collect();
        assert_kernels_train_alike(&ckpt, (&ids, &mask), &labels, f.folder);
    }
}

#[test]
fn each_family_saves_back_as_its_own_class_with_the_same_logits() {
    for f in native() {
        let ckpt = for_training(&fixture(f.folder));
        assert_eq!(
            ckpt.head,
            Head::Loaded,
            "{}: a trained head is kept",
            f.folder
        );
        let e = expected(f);
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("model_output");
        let tensors: Vec<(String, Tensor)> = ckpt.tensors.clone().into_iter().collect();
        let request = SaveRequest {
            config: &ckpt.config,
            tensors: &tensors,
            tokenizer: &ckpt.tokenizer,
            pipeline: &Pipeline::default(),
        };
        model_dir::save(&dir, &request).unwrap();
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(config["model_type"], f.model_type);
        assert_eq!(config["architectures"][0], f.architecture);
        let original: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture(f.folder).join("config.json")).unwrap(),
        )
        .unwrap();
        for key in [
            "layer_norm_eps",
            "pad_token_id",
            "embedding_size",
            "hidden_size",
        ] {
            assert_eq!(config[key], original[key], "{}: {key} kept", f.folder);
        }
        assert!(config.get("pooling").is_none(), "{config}");
        // transformers' DebertaV2Tokenizer lower-cases when this says so: only WordPiece does.
        let tok_config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("tokenizer_config.json")).unwrap(),
        )
        .unwrap();
        let lower = f.model_type == "electra";
        assert_eq!(tok_config["do_lower_case"], lower, "{}", f.folder);
        let reloaded = Classifier::load_dir(&dir).unwrap();
        assert_eq!(reloaded.labels(), e.labels);
        let logits: Vec<Vec<f32>> = e.predicted(&reloaded, |p| p.logits);
        let diff = max_abs_diff(&logits, &e.logits);
        assert!(
            diff < 1e-4,
            "{}: |logit diff| after saving {diff}",
            f.folder
        );
    }
}

/// A copy of a fixture as a base encoder saved from `RobertaModel` (or `ElectraModel`,
/// `DebertaV2Model`): no encoder prefix, no head.
fn bare_encoder(f: &Family) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(f.folder)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, tmp.path().join(path.file_name().unwrap())).unwrap();
    }
    let weights = tmp.path().join("model.safetensors");
    let tensors: HashMap<String, Tensor> = candle_core::safetensors::load(&weights, &Device::Cpu)
        .unwrap()
        .into_iter()
        .filter(|(n, _)| !n.starts_with("classifier.") && !n.starts_with("pooler."))
        .map(|(n, t)| {
            (
                n.trim_start_matches(&format!("{}.", f.prefix)).to_string(),
                t,
            )
        })
        .collect();
    candle_core::safetensors::save(&tensors, &weights).unwrap();
    tmp
}

#[test]
fn a_bare_encoder_is_never_served_but_trains_with_a_fresh_head() {
    for f in native() {
        let tmp = bare_encoder(f);
        let err = Classifier::load_dir(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains("no classification head") && err.contains("random head"),
            "{}: {err}",
            f.folder
        );
        let ckpt = for_training(tmp.path());
        assert!(matches!(ckpt.head, Head::Fresh(_)), "{:?}", ckpt.head);
        let words = format!("{}.embeddings.word_embeddings.weight", f.prefix);
        assert!(ckpt.tensors.contains_key(&words), "{}", f.folder);
        for (head, _) in ckpt.config.head_parameter_shapes() {
            assert!(ckpt.tensors.contains_key(&head), "{}: {head}", f.folder);
        }
    }
}

/// BERT is the one family still converted to the DistilBERT layout for training: its tanh
/// pooler head has no such layout that transformers would read back alike.
#[test]
fn a_bert_classifier_is_fine_tuned_with_a_fresh_distilbert_head() {
    let ckpt = for_training(&fixture(FAMILIES[0].folder));
    assert!(matches!(ckpt.head, Head::Fresh(_)), "{:?}", ckpt.head);
    assert_eq!(
        ckpt.config.architecture(),
        "DistilBertForSequenceClassification"
    );
}

/// RoBERTa repositories from before tokenizer.json (cardiffnlp's among them) ship
/// `vocab.json` and `merges.txt`: built from those alone (taken here out of the fixture's
/// tokenizer.json), the tokenizer gives transformers' ids, and without merges.txt the error
/// names the missing file.
#[test]
fn a_roberta_folder_with_vocab_json_and_merges_txt_tokenizes_as_transformers() {
    let f = &FAMILIES[1];
    let tmp = tempfile::tempdir().unwrap();
    for name in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture(f.folder).join(name), tmp.path().join(name)).unwrap();
    }
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(f.folder).join("tokenizer.json")).unwrap(),
    )
    .unwrap();
    let vocab = serde_json::to_string(&json["model"]["vocab"]).unwrap();
    std::fs::write(tmp.path().join("vocab.json"), vocab).unwrap();
    let err = Classifier::load_dir(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("merges.txt"), "{err}");
    let mut merges = String::from("#version: 0.2\n");
    for pair in json["model"]["merges"].as_array().unwrap() {
        merges.push_str(&format!(
            "{} {}\n",
            pair[0].as_str().unwrap(),
            pair[1].as_str().unwrap()
        ));
    }
    std::fs::write(tmp.path().join("merges.txt"), merges).unwrap();

    let (e, clf) = (expected(f), Classifier::load_dir(tmp.path()).unwrap());
    e.assert_same_tokens(&clf, f.folder);
    let probs: Vec<Vec<f32>> = e.predicted(&clf, |p| p.probabilities);
    assert!(max_abs_diff(&probs, &e.probabilities) < 1e-5);
}
