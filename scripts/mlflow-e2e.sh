#!/usr/bin/env bash
# Experiment tracking against a real MLflow: starts `mlflow server` (PyPI, in a venv; SQLite
# backend, artifacts served by the server) on loopback, preprocesses the committed fixtures,
# trains a tiny model twice with MLFLOW_TRACKING_URI set (the second with --promote always),
# and checks through MLflow's REST API that each run, its parameters, metric histories,
# artifacts and the registered model's versions are there.
#
#   scripts/mlflow-e2e.sh          # MLFLOW_VENV=DIR reuses a venv that has mlflow
set -euo pipefail
cd "$(dirname "$0")/.."
port=${MLFLOW_PORT:-15000}
uri=http://127.0.0.1:$port
work=$(mktemp -d "${TMPDIR:-/tmp}/sentiment-mlflow.XXXXXX")
venv=${MLFLOW_VENV:-$work/venv}
server=
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

if [ ! -x "$venv/bin/mlflow" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q mlflow
fi
echo "== mlflow $("$venv/bin/mlflow" --version | awk '{print $NF}') on $uri"
"$venv/bin/mlflow" server --host 127.0.0.1 --port "$port" \
  --backend-store-uri "sqlite:///$work/mlflow.db" --artifacts-destination "$work/artifacts" \
  > "$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 120); do curl -sf "$uri/health" >/dev/null && break; sleep 1; done
curl -sf "$uri/health" >/dev/null || { cat "$work/server.log"; fail "mlflow server did not start"; }

echo "== preprocess + train twice (tiny model, committed fixtures, offline)"
cargo build -q -p preprocess -p train
target/debug/preprocess --source "crates/train/tests/fixtures/snippets.csv,group=movie_name" \
  --output-dir "$work/data" --tokenizer ./none >/dev/null
for promote in if-better always; do
  HF_HUB_OFFLINE=1 MLFLOW_TRACKING_URI=$uri RUST_LOG=warn target/debug/train \
    --base-model crates/classifier/tests/fixtures/tiny-distilbert --data-dir "$work/data" \
    --output-dir "$work/model_output" --results-dir "$work/results" \
    --epochs 2 --batch-size 8 --grad-accum 2 --max-length 64 --log-every 2 --promote "$promote"
done

echo "== what MLflow holds (REST API)"
"$venv/bin/python" - "$uri" <<'PY'
import json, sys, urllib.parse, urllib.request
uri = sys.argv[1]
def get(endpoint, **q):
    with urllib.request.urlopen(f"{uri}/api/2.0/{endpoint}?{urllib.parse.urlencode(q)}") as r:
        return json.load(r)
def post(endpoint, body):
    req = urllib.request.Request(f"{uri}/api/2.0/{endpoint}", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)
exp = get("mlflow/experiments/get-by-name", experiment_name="sentiment")["experiment"]
runs = post("mlflow/runs/search", {"experiment_ids": [exp["experiment_id"]]})["runs"]
assert len(runs) == 2, f"{len(runs)} runs"
for run in sorted(runs, key=lambda r: r["info"]["start_time"]):
    info, data = run["info"], run["data"]
    params = {p["key"]: p["value"] for p in data["params"]}
    tags = {t["key"]: t["value"] for t in data.get("tags", [])}
    assert info["status"] == "FINISHED", info
    for k in ["lr", "epochs", "batch_size", "base_model", "data_hash.train.csv", "model_version"]:
        assert k in params, (k, sorted(params))
    hist = {k: get("mlflow/metrics/get-history", run_id=info["run_id"], metric_key=k)["metrics"]
            for k in ["loss", "lr", "grad_norm", "val_macro_f1", "test_accuracy"]}
    for k, h in hist.items():
        assert h, f"no {k} history"
    files = [f["path"] for f in get("mlflow/artifacts/list", run_id=info["run_id"], path="model").get("files", [])]
    for f in ["model/config.json", "model/model.safetensors", "model/tokenizer.json", "model/run_summary.json"]:
        assert f in files, (f, files)
    print(f"run {info['run_name']} ({info['run_id'][:8]}): {len(params)} params, "
          f"{len(hist['loss'])} loss steps, val_macro_f1 by epoch "
          f"{[round(m['value'], 3) for m in sorted(hist['val_macro_f1'], key=lambda m: m['step'])]}, "
          f"test_accuracy {hist['test_accuracy'][0]['value']:.3f}; {len(files)} model artifacts; "
          f"promoted={tags.get('sentiment_rs.promoted')}")
versions = get("mlflow/model-versions/search", filter="name='sentiment'").get("model_versions", [])
promoted = [r for r in runs if {t["key"]: t["value"] for t in r["data"]["tags"]}.get("sentiment_rs.promoted") == "true"]
assert len(versions) == len(promoted) >= 1, (len(versions), len(promoted))
for v in sorted(versions, key=lambda v: int(v["version"])):
    assert v["run_id"] in {r["info"]["run_id"] for r in promoted}
    print(f"registered model sentiment version {v['version']}: run {v['run_id'][:8]}, source {v['source']}, status {v['status']}")
PY
echo PASS
