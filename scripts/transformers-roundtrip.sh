#!/usr/bin/env bash
# Fine-tunes each model family's tiny fixture on the three-class tweets, then loads the
# model_output folder in transformers and checks it gives batch_predict's probabilities:
# what we save is the family's own *ForSequenceClassification, read back alike.
# Needs a Python with torch and transformers (run by hand, not in CI):
#   scripts/transformers-roundtrip.sh venv/bin/python
set -euo pipefail
PY=${1:?usage: scripts/transformers-roundtrip.sh PYTHON}
cd "$(dirname "$0")/.."
cargo build -q -p preprocess -p train -p api
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
FIX=crates/classifier/tests/fixtures
export RUST_LOG=warn

target/debug/preprocess --source crates/train/tests/fixtures/tweets_3class.csv,label=sentiment \
  --label-map negative/neutral/positive --no-lowercase --tokenizer ./none \
  --output-dir "$WORK/data" >/dev/null
for family in roberta-classifier xlm-roberta-classifier camembert-classifier electra-classifier \
    deberta-v3-classifier deberta-v2-classifier deberta-v3-spm-classifier bert-classifier distilbert; do
  out="$WORK/$family"
  target/debug/train --base-model "$FIX/tiny-$family" --data-dir "$WORK/data" \
    --output-dir "$out/model_output" --results-dir "$out/results" --epochs 1 --batch-size 8 \
    --train-samples 0 --eval-samples 0 >/dev/null
  target/debug/batch_predict "$WORK/data/test.csv" "$out/predictions.csv" \
    --model-path "$out/model_output" --probabilities >/dev/null
  "$PY" - "$out" <<'EOF'
import csv, json, sys
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
out = sys.argv[1]
folder = f"{out}/model_output"
model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
tok = AutoTokenizer.from_pretrained(folder)
pipeline = json.load(open(f"{folder}/pipeline.json"))
temperature, max_length = pipeline["temperature"], pipeline["max_length"]
rows = list(csv.DictReader(open(f"{out}/predictions.csv")))
labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
worst, compared = 0.0, 0
for r in rows:
    batch = tok([r["text"]], return_tensors="pt")
    if batch["input_ids"].shape[1] > max_length:
        continue  # truncated by our head+tail strategy, which transformers does not have
    compared += 1
    with torch.no_grad():
        logits = model(**batch).logits
    theirs = torch.softmax(logits / temperature, -1)[0].tolist()
    ours = [float(r[f"prob_{l}"]) for l in labels]
    worst = max(worst, max(abs(a - b) for a, b in zip(ours, theirs)))
arch = model.config.architectures[0]
print(f"{arch:40s} {compared} of {len(rows)} texts, labels {labels}, max |probability difference| {worst:.2e}")
assert worst < 1e-4, "transformers reads the saved folder differently"
EOF
done
