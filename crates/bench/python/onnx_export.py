# ONNX export for sentiment-bench's ONNX Runtime baseline (run by hand; not in CI). From the team's shared bench scripts.
"""usage: python onnx_export.py [OUT_DIR]
Export random-init DistilBertForSequenceClassification to ONNX (+ dynamic int8)."""
import os, sys, torch
OUT_DIR = sys.argv[1] if len(sys.argv) > 1 else "."
torch.set_num_threads(2)
from transformers import DistilBertConfig, DistilBertForSequenceClassification
torch.manual_seed(0)
model = DistilBertForSequenceClassification(DistilBertConfig(num_labels=2)).eval()
ids = torch.randint(0, 30522, (2, 16)); am = torch.ones(2, 16, dtype=torch.long)
out = os.path.join(OUT_DIR, "distilbert_fp32.onnx")
try:
    from torch.export import Dim
    bd, sd = Dim("batch", min=1, max=256), Dim("seq", min=2, max=512)
    ep = torch.onnx.export(model, (ids, am), out, input_names=["input_ids", "attention_mask"],
                           output_names=["logits"], dynamo=True, opset_version=18,
                           dynamic_shapes=({0: bd, 1: sd}, {0: bd, 1: sd}), external_data=False)
    print("exported with dynamo=True")
except Exception as e:
    print("dynamo export failed:", repr(e)[:500]); 
    torch.onnx.export(model, (ids, am), out, input_names=["input_ids", "attention_mask"],
                      output_names=["logits"], dynamo=False, opset_version=17,
                      dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}})
    print("exported with dynamo=False")
from onnxruntime.quantization import quantize_dynamic, QuantType
quantize_dynamic(out, os.path.join(OUT_DIR, "distilbert_int8.onnx"), weight_type=QuantType.QInt8)
import onnxruntime as ort, numpy as np
with torch.no_grad(): ref = model(input_ids=ids, attention_mask=am).logits.numpy()
for f in [out, os.path.join(OUT_DIR, "distilbert_int8.onnx")]:
    s = ort.InferenceSession(f, providers=["CPUExecutionProvider"])
    o = s.run(None, {"input_ids": ids.numpy(), "attention_mask": am.numpy()})[0]
    print(f, os.path.getsize(f)//2**20, "MiB  max|diff| vs torch =", float(np.abs(o - ref).max()))
