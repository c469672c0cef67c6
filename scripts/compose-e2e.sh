#!/usr/bin/env bash
# End-to-end check of the Docker stack, exactly as the README runs it: builds the three images,
# checks the api waits (unhealthy, one clear log line) without a model, trains a tiny model
# from the committed fixtures (offline), trains again with the default settings against a Hub
# stand-in (HF_ENDPOINT, scripts/compose-hub.yml), starts api and ui, checks /health, /predict, /info,
# the UI pages and batch_predict inside the api container, checks every container is non-root
# and the image sizes, prints timings, and tears everything down.
#
#   scripts/compose-e2e.sh     # `docker compose`, or `docker-compose` where the v2 plugin is missing
#
# It runs in its own compose project with its own host folders and ports, so it leaves a
# user's data/, model_output/ and results/ alone.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${COMPOSE:-}" ]; then
  read -r -a compose <<< "$COMPOSE"
elif docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  compose=(docker-compose)
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/sentiment-e2e.XXXXXX")
export COMPOSE_PROJECT_NAME=sentiment-e2e
export HOST_DATA_DIR=$work/data HOST_MODEL_DIR=$work/model_output HOST_RESULTS_DIR=$work/results
export HOST_MODELS_DIR=$work/models
export APP_PORT=${E2E_API_PORT:-18000} UI_PORT=${E2E_UI_PORT:-18501}
api=http://127.0.0.1:$APP_PORT
ui=http://127.0.0.1:$UI_PORT
# Containers run as the invoking user so the files are theirs; as root, as uid 1000 instead
# (the containers must never run as root).
uid=$(id -u) gid=$(id -g)
if [ "$uid" = 0 ]; then uid=1000 gid=1000; fi
export APP_UID=$uid APP_GID=$gid

timings=()
started=$SECONDS
step() { printf '\n== %s (%ss)\n' "$*" "$((SECONDS - started))"; }
mark() { timings+=("$1: $(($SECONDS - $2))s"); }
fail() { echo "FAIL: $*" >&2; exit 1; }
cleanup() {
  "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# Waits until $1 answers 200 (up to $2 seconds).
wait_ok() {
  for _ in $(seq 1 "$2"); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 1
  done
  fail "$1 did not answer 200 within $2 s"
}

mkdir -p "$work"/data/raw "$work"/data/models "$work"/models "$work"/model_output "$work"/results
cp crates/train/tests/fixtures/snippets.csv crates/train/tests/fixtures/tweets.jsonl "$work/data/raw/"
cp -r crates/classifier/tests/fixtures/tiny-distilbert "$work/data/models/"
chown -R "$uid:$gid" "$work" 2>/dev/null || true

step "build images"
t=$SECONDS
"${compose[@]}" build
mark "build" $t

step "api without a model: unhealthy, one clear log line, no crash loop"
"${compose[@]}" up -d api
sleep 8
state=$(docker inspect -f '{{.State.Status}} {{.RestartCount}}' "$("${compose[@]}" ps -q api)")
[ "$state" = "running 0" ] || fail "api should keep running without a model, got: $state"
logs=$("${compose[@]}" logs api 2>&1)
grep -q "no model in /app/model_output: run \`docker compose up trainer\`" <<< "$logs" \
  || fail "api did not log the no-model line"
code=$(curl -s -o /dev/null -w '%{http_code}' "$api/health" || true)
[ "$code" = 503 ] || fail "/health without a model: want 503, got $code"
"${compose[@]}" stop api >/dev/null

step "trainer: preprocess + train a tiny model, offline, from local files"
t=$SECONDS
SOURCES="/app/data/raw/snippets.csv,group=movie_name;/app/data/raw/tweets.jsonl,name=tweets,text=tweet,label=sentiment,labels=0/4" \
MODEL_NAME=/app/data/models/tiny-distilbert HF_HUB_OFFLINE=1 EPOCHS=1 TRAIN_SAMPLES=0 EVAL_SAMPLES=0 \
MAX_LENGTH=64 BATCH_SIZE=8 GRAD_ACCUM_STEPS=2 \
  "${compose[@]}" up --exit-code-from trainer trainer
mark "trainer" $t
for f in model_output/config.json model_output/model.safetensors model_output/tokenizer.json \
         results/metrics.json results/run_summary.json data/processed/small_test.csv; do
  [ -s "$work/$f" ] || fail "trainer did not write $f"
done
echo "metrics.json: $(tr -d '\n ' < "$work/results/metrics.json" | cut -c1-200)"

step "trainer with its default settings, the model and data set from a Hub mirror (HF_ENDPOINT)"
# The main job exactly as a user starts it, but with HF_ENDPOINT at hub-mock, which serves tiny
# stand-ins under the default ids: distilbert-base-uncased and stanfordnlp/imdb.
t=$SECONDS
hub=$work/hub
mkdir -p "$hub/models/distilbert-base-uncased/main" "$hub/datasets/stanfordnlp/imdb/main"
cp -r crates/classifier/tests/fixtures/tiny-distilbert/. "$hub/models/distilbert-base-uncased/main/"
cp -r crates/hub-mock/fixtures/imdb-tiny/. "$hub/datasets/stanfordnlp/imdb/main/"
chmod -R a+rX "$hub"
export HUB_ROOT=$hub
hubc=("${compose[@]}" -f docker-compose.yml -f scripts/compose-hub.yml)
"${hubc[@]}" build hub
"${hubc[@]}" up -d hub
wait_ok "http://127.0.0.1:${E2E_HUB_PORT:-18080}/api/models/distilbert-base-uncased/revision/main" 30
rm -rf "${work:?}"/model_output/* "${work:?}"/results/* "$work/data/processed"
"${hubc[@]}" up --exit-code-from trainer trainer
"${hubc[@]}" stop hub >/dev/null
mark "trainer via the Hub mirror" $t
for f in model_output/config.json model_output/model.safetensors results/metrics.json \
         data/processed/train.csv data/processed/validation.csv data/processed/test.csv; do
  [ -s "$work/$f" ] || fail "the default trainer run did not write $f"
done
python3 - "$work" <<'PY' || fail "the default run did not use the Hub ids"
import json, sys
work = sys.argv[1]
summary = json.load(open(f"{work}/results/run_summary.json"))
report = json.load(open(f"{work}/data/processed/report.json"))
base = summary["base_model"]
assert base["id"] == "distilbert-base-uncased" and len(base["revision"] or "") == 40, base
assert [s["name"] for s in report["sources"]] == ["imdb"], report["sources"]
assert report["test"]["rows"] == 40, report["test"]
print("default run: base", base["id"], "at", base["revision"], "; data imdb,",
      report["train"]["rows"], "train /", report["validation"]["rows"], "validation /",
      report["test"]["rows"], "test rows; test accuracy", summary["test"]["accuracy"])
PY

step "api and ui"
t=$SECONDS
"${compose[@]}" up -d api ui
wait_ok "$api/health" 120
wait_ok "$ui/health" 60
mark "api+ui ready" $t
curl -s "$api/health"; echo
predict=$(curl -sf "$api/predict" -H 'content-type: application/json' -d '{"text": "A wonderful, heart-warming film."}')
echo "/predict: $predict"
grep -Eq '"sentiment":"(positive|negative)","confidence":[0-9.]+' <<< "$predict" || fail "/predict answer"
# Answers are captured before grep: `curl | grep -q` under pipefail fails when grep stops
# reading early and curl gets SIGPIPE.
info=$(curl -sf "$api/info") && grep -q '"labels"' <<< "$info" || fail "/info"
metrics=$(curl -sf "$api/metrics") && grep -q 'http_requests_total' <<< "$metrics" || fail "/metrics"
page=$(curl -sf "$ui/")
grep -q '<textarea' <<< "$page" || fail "ui analyze page"
result=$(curl -sf -L -c "$work/cookies" -b "$work/cookies" --data-urlencode 'text=I loved every minute of it' "$ui/analyze")
grep -q 'Confidence' <<< "$result" || fail "ui analyze result"
model_page=$(curl -sf "$ui/model") && grep -q '<svg' <<< "$model_page" || fail "ui model page"
echo "ui: analyze, result and model pages OK"

step "batch_predict inside the api container"
t=$SECONDS
"${compose[@]}" exec -T api batch_predict data/processed/small_test.csv results/predictions.csv
mark "batch_predict" $t
rows_in=$(python3 -c 'import csv,sys; print(sum(1 for _ in csv.reader(open(sys.argv[1]))))' "$work/data/processed/small_test.csv")
rows_out=$(python3 -c 'import csv,sys; print(sum(1 for _ in csv.reader(open(sys.argv[1]))))' "$work/results/predictions.csv")
[ "$rows_in" = "$rows_out" ] || fail "batch_predict: $rows_in rows in, $rows_out out"
head -1 "$work/results/predictions.csv" | grep -q 'sentiment,confidence' || fail "batch_predict columns"
echo "batch_predict: $((rows_in - 1)) rows, header: $(head -1 "$work/results/predictions.csv")"

step "non-root containers and image sizes"
for s in api ui; do
  user=$(docker inspect -f '{{.Config.User}}' "$("${compose[@]}" ps -q $s)")
  case "$user" in ""|root|0|0:*) fail "$s runs as root ($user)";; esac
  echo "$s runs as $user"
done
for s in trainer api ui; do
  user=$(docker image inspect -f '{{.Config.User}}' "sentiment-rs-$s")
  case "$user" in ""|root|0|0:*) fail "image sentiment-rs-$s defaults to root";; esac
done
size() { docker image inspect -f '{{.Size}}' "$1"; }
for s in trainer api ui; do
  printf '%-22s %6.1f MB\n' "sentiment-rs-$s" "$(echo "$(size sentiment-rs-$s) / 1000000" | bc -l)"
done
[ "$(size sentiment-rs-api)" -le 150000000 ] || fail "api image over 150 MB"
[ "$(size sentiment-rs-ui)" -le 60000000 ] || fail "ui image over 60 MB"

step "timings"
printf '  %s\n' "${timings[@]}"
echo "PASS"
