# ONNX Runtime baseline for sentiment-bench (run by hand; not in CI). From the team's shared bench scripts.
"""usage: python ort_bench.py <model.onnx> <batch> <seq> <warmup> <iters>"""
import os, sys, time, statistics, numpy as np, onnxruntime as ort
f = sys.argv[1]; b, s, warm, iters = map(int, sys.argv[2:6])
so = ort.SessionOptions(); so.intra_op_num_threads = int(os.environ.get("BENCH_THREADS", "2")); so.inter_op_num_threads = 1
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
sess = ort.InferenceSession(f, so, providers=["CPUExecutionProvider"])
rng = np.random.default_rng(0)
feed = {"input_ids": rng.integers(0, 30522, (b, s), dtype=np.int64), "attention_mask": np.ones((b, s), np.int64)}
ts = []
for i in range(warm + iters):
    t = time.perf_counter(); sess.run(None, feed); e = time.perf_counter() - t
    if i >= warm: ts.append(e)
m = statistics.median(ts)
print(f"RESULT ort {f.split('/')[-1]} b={b} s={s} median_ms={m*1e3:.2f} seq_per_s={b/m:.2f}  (ort {ort.__version__})")
