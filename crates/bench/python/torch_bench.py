# PyTorch baseline for sentiment-bench (run by hand; not in CI). From the team's shared bench scripts.
"""PyTorch / HF transformers DistilBERT classifier bench (random init).
usage: python torch_bench.py <infer|train|gemm> <fp32|fp32_im|bf16> <batch> <seq> <warmup> <iters> [--nodropout]"""
import os, sys, time, statistics
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
import torch
torch.set_num_threads(THREADS)
from transformers import (DebertaV2Config, DebertaV2ForSequenceClassification, DistilBertConfig,
                          DistilBertForSequenceClassification, RobertaConfig,
                          RobertaForSequenceClassification)

mode, prec = sys.argv[1], sys.argv[2]
b, s, warm, iters = map(int, sys.argv[3:7])

if mode == "gemm":  # GEMM roofline anchor: n x n x n matmul
    n = s
    dt = torch.bfloat16 if prec == "bf16" else torch.float32
    A, B = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
    ts = []
    for i in range(warm + iters):
        t = time.perf_counter(); A @ B; e = time.perf_counter() - t
        if i >= warm: ts.append(e)
    m = statistics.median(ts)
    print(f"RESULT gemm {prec} n={n} median_ms={m*1e3:.2f} GFLOP/s={2*n**3/m/1e9:.1f}")
    sys.exit()

torch.manual_seed(0)
kw = dict(dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0) if "--nodropout" in sys.argv else {}
if os.environ.get("BENCH_ARCH") == "roberta":  # roberta-base's config.json
    cfg = RobertaConfig(num_labels=2, max_position_embeddings=514, type_vocab_size=1,
                        layer_norm_eps=1e-5)
    model = RobertaForSequenceClassification(cfg)
elif os.environ.get("BENCH_ARCH") == "deberta-v3":  # deberta-v3-base's config.json
    cfg = DebertaV2Config(num_labels=2, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                          intermediate_size=3072, relative_attention=True, position_buckets=256,
                          norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type="p2c|c2p",
                          position_biased_input=False, pooler_hidden_size=768)
    model = DebertaV2ForSequenceClassification(cfg)
else:
    cfg = DistilBertConfig(num_labels=2, **kw)  # defaults == distilbert-base-uncased architecture
    model = DistilBertForSequenceClassification(cfg)
nparams = sum(p.numel() for p in model.parameters())
ids = torch.randint(0, cfg.vocab_size, (b, s))
am = torch.ones(b, s, dtype=torch.long)
labels = torch.arange(b) % 2
print(f"torch={torch.__version__} threads={torch.get_num_threads()} params={nparams} "
      f"attn_impl={model.config._attn_implementation} mode={mode} prec={prec} b={b} s={s}", file=sys.stderr)
ac = torch.autocast("cpu", dtype=torch.bfloat16, enabled=(prec == "bf16"))
ts = []
if mode == "infer":
    model.eval()
    ctx = torch.no_grad if prec == "fp32" else torch.inference_mode
    with ctx(), ac:
        for i in range(warm + iters):
            t = time.perf_counter(); out = model(input_ids=ids, attention_mask=am).logits; out.float().sum().item()
            e = time.perf_counter() - t
            if i >= warm: ts.append(e)
    m = statistics.median(ts)
    print(f"RESULT infer {prec} b={b} s={s} median_ms={m*1e3:.2f} seq_per_s={b/m:.2f}")
elif mode == "train":
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5)
    for i in range(warm + iters):
        t = time.perf_counter()
        with ac:
            loss = model(input_ids=ids, attention_mask=am, labels=labels).loss
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        l = loss.item(); e = time.perf_counter() - t
        print(f"step {i} loss={l:.4f} {e*1e3:.1f}ms", file=sys.stderr)
        if i >= warm: ts.append(e)
    m = statistics.median(ts)
    print(f"RESULT train {prec} b={b} s={s} median_step_ms={m*1e3:.1f} ex_per_s={b/m:.3f}")
