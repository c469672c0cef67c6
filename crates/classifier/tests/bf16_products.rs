//! bf16 products (`set_matmul_precision`) bound the logits' error. Its own test binary: the
//! precision is process-wide, and this must not change what the other tests compute.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use classifier::models::distilbert::Config;
use classifier::models::random_tensors;
use classifier::models::{Mode, ModelConfig, SequenceClassifier};
use classifier::{MatmulPrecision, set_matmul_precision};

/// Random DistilBERT, RoBERTa and DeBERTa-v3 models wide enough that their products take
/// the bf16 path (small ones stay f32), on a vocabulary of 200. DeBERTa adds its relative-
/// position products, which run head by head.
fn models() -> Vec<SequenceClassifier> {
    let mut distilbert = Config::default();
    (distilbert.vocab_size, distilbert.dim, distilbert.hidden_dim) = (200, 128, 512);
    (distilbert.n_layers, distilbert.n_heads) = (2, 4);
    let roberta = serde_json::from_value(serde_json::json!({
        "vocab_size": 200, "hidden_size": 128, "intermediate_size": 512,
        "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 66,
        "type_vocab_size": 1, "layer_norm_eps": 1e-5,
    }))
    .unwrap();
    let deberta = serde_json::from_value(serde_json::json!({
        "vocab_size": 200, "hidden_size": 128, "intermediate_size": 512,
        "num_hidden_layers": 2, "num_attention_heads": 4, "relative_attention": true,
        "position_buckets": 16, "max_relative_positions": 64, "norm_rel_ebd": "layer_norm",
        "share_att_key": true, "pos_att_type": "p2c|c2p", "position_biased_input": false,
        "pooler_hidden_size": 128,
    }))
    .unwrap();
    [
        ModelConfig::DistilBert(distilbert),
        ModelConfig::Roberta(roberta),
        ModelConfig::DebertaV2(deberta),
    ]
    .iter()
    .map(|cfg| {
        let tensors: HashMap<String, Tensor> =
            random_tensors(cfg, 7).unwrap().into_iter().collect();
        let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        SequenceClassifier::load(vb, cfg).unwrap()
    })
    .collect()
}

#[test]
fn bf16_logits_stay_close_to_f32() {
    for model in models() {
        check_bf16(&model);
    }
}

fn check_bf16(model: &SequenceClassifier) {
    let (batch, seq) = (4, 48);
    let ids: Vec<u32> = (0..batch * seq).map(|i| (i * 37 % 200) as u32).collect();
    let ids = Tensor::from_vec(ids, (batch, seq), &Device::Cpu).unwrap();
    // The last sequence is half padding.
    let mask: Vec<u32> = (0..batch * seq)
        .map(|i| u32::from(i / seq < batch - 1 || i % seq < seq / 2))
        .collect();
    let mask = Tensor::from_vec(mask, (batch, seq), &Device::Cpu).unwrap();
    let logits = |m: &SequenceClassifier| -> Vec<f32> {
        let l = m.forward(&ids, &mask, Mode::Eval).unwrap();
        l.flatten_all().unwrap().to_vec1().unwrap()
    };

    assert_eq!(
        set_matmul_precision(MatmulPrecision::F32),
        MatmulPrecision::F32
    );
    let exact = logits(model);
    let got = set_matmul_precision(MatmulPrecision::Bf16);
    if got != MatmulPrecision::Bf16 {
        assert_eq!(
            got,
            MatmulPrecision::F32,
            "where bf16 products do not pay, they stay f32"
        );
        assert_eq!(logits(model), exact);
        let why = kernels::gemm::bf16_fallback_reason().unwrap_or_default();
        eprintln!("bf16 products run in f32 here ({why}): only the fallback was checked");
        return;
    }
    let reduced = logits(model);
    set_matmul_precision(MatmulPrecision::F32);
    let spread = exact.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = exact
        .iter()
        .zip(&reduced)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(err > 0.0, "bf16 must actually change the products");
    // bf16 keeps 8 bits of mantissa; through two layers of this random model the logits
    // moved by 0.2% of their spread (measured).
    assert!(
        err <= 0.01 * spread.max(1e-3),
        "bf16 logits off by {err} (f32 logits up to {spread})"
    );
    assert_eq!(logits(model), exact, "back to f32, bit for bit");
}
