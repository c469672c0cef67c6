#!/usr/bin/env bash
# Load figures for the api: requests/s and latency percentiles at 1, 16 and 64 concurrent
# clients (wrk, from Debian's `wrk` package) against a DistilBERT-base-size model with random
# weights (speed does not depend on their values), next to the raw engine throughput from the
# benchmark (`sentiment-bench --only infer-b32-s128`).
#
#   scripts/load-test.sh VOCAB.txt          # any BERT-uncased vocab.txt, e.g. MiniLM's
#
# Each request is one review-length text (~60 tokens). Builds in release first.
set -euo pipefail
cd "$(dirname "$0")/.."
vocab=${1:?usage: scripts/load-test.sh VOCAB.txt (a BERT-uncased vocab.txt)}
command -v wrk >/dev/null || { echo "wrk not found: sudo apt-get install wrk" >&2; exit 1; }
port=${PORT:-8097}
duration=${DURATION:-20s}
cargo build --release --quiet -p api -p bench
model=target/load-test-model
[ -f "$model/config.json" ] || target/release/sentiment-bench --write-model "$model" --vocab "$vocab"

MODEL_PATH=$model APP_PORT=$port RUST_LOG=warn MAX_QUEUE=4096 target/release/api &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$lua"' EXIT
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
  sleep 0.2
done
lua=$(mktemp --suffix=.lua)
cat > "$lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"text": "I went in expecting very little, but the film surprised me: the lead performance is subtle and moving, the score is lovely, and the final twenty minutes are as tense as anything I have seen this year. A couple of scenes drag, yet I would happily watch it again."}'
LUA

printf '| clients | requests/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|\n'
for c in 1 16 64; do
  out=$(wrk -t "$(( c < 2 ? 1 : 2 ))" -c "$c" -d "$duration" --latency --timeout 30s -s "$lua" "http://127.0.0.1:$port/predict")
  rps=$(awk '/Requests\/sec/ {print $2}' <<< "$out")
  p50=$(awk '$1 == "50%" {print $2}' <<< "$out")
  p99=$(awk '$1 == "99%" {print $2}' <<< "$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<< "$out")
  socket=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' <<< "$out")
  errors=$(( ${non2xx:-0} + ${socket:-0} ))
  ms() { awk -v v="$1" 'BEGIN { if (v ~ /ms$/) { sub(/ms/, "", v); print v } else if (v ~ /us$/) { sub(/us/, "", v); print v / 1000 } else { sub(/s$/, "", v); print v * 1000 } }'; }
  printf '| %s | %s | %s | %s | %s |\n' "$c" "$rps" "$(ms "$p50")" "$(ms "$p99")" "$errors"
done
echo
echo "batch sizes the api formed (from /metrics):"
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^predict_batch_size_(sum|count)' || true
echo
echo "engine alone, batch 32 x 128 tokens:"
target/release/sentiment-bench --only infer-b32-s128 --iters 5
