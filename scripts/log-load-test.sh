#!/usr/bin/env bash
# What the prediction log costs: requests/s and latency at 16 concurrent clients (wrk, from
# Debian's `wrk`) with the log off, in SQLite, and in PostgreSQL when PG_URL is given, on the
# same api binary and model, one after another in one run.
#
#   scripts/log-load-test.sh [MODEL_DIR]        # default: the tiny committed fixture, whose
#                                               # thousands of requests/s show the log's own
#                                               # cost; a base-size model shows what users see
#   PG_URL=postgres://u:pw@127.0.0.1:5432/db scripts/log-load-test.sh
#
# The settings run in turn, ROUNDS times (default 3), and each one's median requests/s is
# compared: on a 2-core machine, runs of one setting vary by several percent, and taking
# them in turn keeps a drift of the machine from looking like a cost. Builds in release first.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-crates/classifier/tests/fixtures/tiny-distilbert}
command -v wrk >/dev/null || { echo "wrk not found: sudo apt-get install wrk" >&2; exit 1; }
port=${PORT:-8098}
duration=${DURATION:-15s}
rounds=${ROUNDS:-3}
clients=${CLIENTS:-16}
cargo build --release --quiet -p api
work=$(mktemp -d)
lua=$work/post.lua
cat > "$lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"text": "I went in expecting very little, but the film surprised me: the lead performance is subtle and moving, the score is lovely, and the final twenty minutes are as tense as anything I have seen this year. A couple of scenes drag, yet I would happily watch it again."}'
LUA
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT

run() { # run NAME PREDICTION_LOG
  PREDICTION_LOG=$2 MODEL_PATH=$model RESULTS_DIR=$work APP_PORT=$port RUST_LOG=warn MAX_QUEUE=4096 \
    SHUTDOWN_GRACE_SECONDS=0 target/release/api &
  pid=$!
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.2; done
  # Warm-up, then the measured run.
  wrk -t 2 -c "$clients" -d 3s -s "$lua" "http://127.0.0.1:$port/predict" >/dev/null
  out=$(wrk -t 2 -c "$clients" -d "$duration" --latency --timeout 30s -s "$lua" "http://127.0.0.1:$port/predict")
  rps=$(awk '/Requests\/sec/ {print $2}' <<< "$out")
  p50=$(awk '$1 == "50%" {print $2}' <<< "$out")
  p99=$(awk '$1 == "99%" {print $2}' <<< "$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<< "$out")
  metrics=$(curl -s "http://127.0.0.1:$port/metrics")
  written=$(awk '/^prediction_log_rows_written_total/ {print $2}' <<< "$metrics")
  dropped=$(awk '/^prediction_log_rows_dropped_total/ {print $2}' <<< "$metrics")
  kill -TERM $pid; wait $pid 2>/dev/null || true; pid=
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$rps" "$p50" "$p99" "${non2xx:-0}" "${written:-0}" "${dropped:-0}"
  echo "$rps" >> "$work/$1.rps"
}

median() { sort -n "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "model: $model, $clients clients, $duration each, $rounds rounds"
printf '| log | requests/s | p50 | p99 | non-2xx | rows written | rows dropped |\n|---|---|---|---|---|---|---|\n'
for _ in $(seq 1 "$rounds"); do
  run off off
  rm -f "$work"/predictions.db*
  run sqlite "sqlite://$work/predictions.db"
  if [ -n "${PG_URL:-}" ]; then run postgres "$PG_URL"; fi
done
off=$(median "$work/off.rps")
for name in sqlite postgres; do
  [ -f "$work/$name.rps" ] || continue
  awk -v off="$off" -v on="$(median "$work/$name.rps")" -v n="$name" \
    'BEGIN { printf "%s costs %.1f%% of requests/s (median %s vs %s with the log off)\n", n, (off - on) / off * 100, on, off }'
done
