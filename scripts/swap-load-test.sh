#!/usr/bin/env bash
# A hot swap under load: the api serves a DistilBERT-base-size model (random weights: speed
# does not depend on their values) to 16 wrk clients; halfway through a second run a new
# model lands in its folder (weights first, config.json last, as a promotion writes them) and
# the api swaps to it. Prints both runs' requests/s, p50/p99 and errors, the time from the
# copy to the first answer of the new version, and the version header before and after.
#
#   scripts/swap-load-test.sh VOCAB.txt      # any BERT-uncased vocab.txt, e.g. MiniLM's
#   API_BIN=path/to/api scripts/swap-load-test.sh VOCAB.txt   # skip the release build
set -euo pipefail
cd "$(dirname "$0")/.."
vocab=${1:?usage: scripts/swap-load-test.sh VOCAB.txt (a BERT-uncased vocab.txt)}
command -v wrk >/dev/null || { echo "wrk not found: sudo apt-get install wrk" >&2; exit 1; }
port=${PORT:-8098}
duration=${DURATION:-20}
url=http://127.0.0.1:$port
if [ -z "${API_BIN:-}" ]; then
  cargo build --release --quiet -p api -p bench
  API_BIN=target/release/api
fi
bench=target/release/sentiment-bench
[ -x "$bench" ] || bench=target/debug/sentiment-bench
[ -x "$bench" ] || cargo build --quiet -p bench
work=$(mktemp -d)
"$bench" --write-model "$work/next" --vocab "$vocab" >/dev/null
# The same weights with another temperature: another model version, and a full load and
# warm-up to swap in, as any new model.
sed -i 's/"temperature": *[0-9.]*/"temperature": 1.5/' "$work/next/pipeline.json"
mkdir "$work/serve"
"$bench" --write-model "$work/serve" --vocab "$vocab" >/dev/null

MODEL_PATH=$work/serve APP_PORT=$port RUST_LOG=warn MAX_QUEUE=4096 MODEL_POLL_SECONDS=1 "$API_BIN" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do curl -sf "$url/health" >/dev/null && break; sleep 0.2; done
cat > "$work/predict.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"text": "I went in expecting very little, but the film surprised me: the lead performance is subtle and moving, the score is lovely, and the final twenty minutes are as tense as anything I have seen this year. A couple of scenes drag, yet I would happily watch it again."}'
LUA
version() { curl -s -D - -o /dev/null "$url/predict" -H 'content-type: application/json' \
  -d '{"text":"fine"}' | awk 'tolower($1) == "x-model-version:" {print $2}' | tr -d '\r'; }
row() {
  local out=$1 label=$2
  local rps p50 p99 non2xx sock
  rps=$(awk '/Requests\/sec/ {print $2}' <<< "$out")
  p50=$(awk '$1 == "50%" {print $2}' <<< "$out")
  p99=$(awk '$1 == "99%" {print $2}' <<< "$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<< "$out")
  sock=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' <<< "$out")
  printf '| %s | %s | %s | %s | %s |\n' "$label" "$rps" "$p50" "$p99" "$(( ${non2xx:-0} + ${sock:-0} ))"
}
before=$(version)
wrk -t 2 -c 16 -d 5s -s "$work/predict.lua" "$url/predict" >/dev/null   # warm-up
steady=$(wrk -t 2 -c 16 -d "${duration}s" --latency --timeout 30s -s "$work/predict.lua" "$url/predict")
wrk -t 2 -c 16 -d "${duration}s" --latency --timeout 30s -s "$work/predict.lua" "$url/predict" > "$work/swap.txt" &
wrk_pid=$!
sleep $(( duration / 2 ))
copied=$(date +%s.%N)
put() { cp "$work/next/$1" "$work/serve/.tmp" && mv "$work/serve/.tmp" "$work/serve/$1"; }
for f in "$work"/next/*; do
  name=$(basename "$f")
  if [ "$name" != config.json ]; then put "$name"; fi
done
put config.json
while [ "$(version)" = "$before" ]; do sleep 0.1; done
swapped=$(date +%s.%N)
wait $wrk_pid
after=$(version)
printf '| run | requests/s | p50 | p99 | errors |\n|---|---|---|---|---|\n'
row "$steady" "steady, ${duration}s"
row "$(cat "$work/swap.txt")" "with a swap, ${duration}s"
echo
echo "version before: $before, after: $after; new version answering $(echo "$swapped - $copied" | bc -l | cut -c1-4) s after the copy"
curl -s "$url/metrics" | grep '^model_reloads_total'
[ "$before" != "$after" ] || { echo "FAIL: no swap"; exit 1; }
