#!/usr/bin/env bash
# The prediction log in a real PostgreSQL (Debian's package, on loopback) shared by two api
# replicas writing at once: traffic to both, corrections sent to the replica that did NOT
# answer (so the log, not a replica's memory, resolves them), the rows checked in the
# database and on each replica's /metrics, and the corrections read back by preprocess.
#
#   sudo apt-get install postgresql && scripts/postgres-e2e.sh
#
# Builds api and preprocess in release first; serves the tiny committed model.
set -euo pipefail
cd "$(dirname "$0")/.."
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$pgbin/initdb" ] || { echo "PostgreSQL not found: sudo apt-get install postgresql" >&2; exit 1; }
requests=${REQUESTS:-400}
corrections=${CORRECTIONS:-40}
pgport=${PGPORT:-55432}
ports=(8111 8112)
model=crates/classifier/tests/fixtures/tiny-distilbert
cargo build --release --quiet -p api -p preprocess

work=$(mktemp -d)
chmod 755 "$work"
pids=()
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  as_pg "$pgbin/pg_ctl" -D "$work/pg" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pgport"
mkdir -p "$work/pg" && [ "$(id -u)" = 0 ] && chown postgres "$work/pg"
as_pg "$pgbin/initdb" -D "$work/pg" -U postgres --auth=trust >/dev/null
as_pg "$pgbin/pg_ctl" -D "$work/pg" -o "-p $pgport -k /tmp -c listen_addresses=127.0.0.1" -l "$work/pg/log" -w start >/dev/null
psql_() { psql -h 127.0.0.1 -p "$pgport" -U postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
psql_ -c "CREATE USER sentiment PASSWORD 'e2e-secret'" -c "CREATE DATABASE sentiment OWNER sentiment"
url="postgres://sentiment:e2e-secret@127.0.0.1:$pgport/sentiment"

echo "== two api replicas on :${ports[0]} and :${ports[1]}, one log (the second with LOG_TEXT=false)"
for port in "${ports[@]}"; do
  log_text=$([ "$port" = "${ports[0]}" ] && echo true || echo false)
  PREDICTION_LOG=$url LOG_TEXT=$log_text MODEL_PATH=$model RESULTS_DIR=$work APP_PORT=$port \
    RUST_LOG=warn SHUTDOWN_GRACE_SECONDS=0 target/release/api > "$work/api-$port.log" 2>&1 &
  pids+=($!)
done
for port in "${ports[@]}"; do
  for _ in $(seq 1 150); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.2; done
done

echo "== $requests predictions, 8 at a time, alternating replicas"
seq 1 "$requests" | xargs -P 8 -I{} sh -c '
  i={}; port=$(( i % 2 == 0 ? '"${ports[0]}"' : '"${ports[1]}"' ))
  src=$(( i % 3 )); case $src in 0) s=api;; 1) s=ui;; 2) s=batch;; esac
  curl -sf -w "\\n" -H "content-type: application/json" -H "x-prediction-source: $s" \
    -d "{\"text\": \"review number $i: the film was $( [ $((i % 2)) = 0 ] && echo wonderful || echo dull )\"}" \
    "http://127.0.0.1:$port/predict" | sed "s/^/$port /"' > "$work/answers"
answered=$(wc -l < "$work/answers")
echo "answered: $answered"

echo "== $corrections corrections, each to the other replica, at once after the predictions"
head -n "$corrections" "$work/answers" | while read -r port body; do
  id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["id"])' "$body")
  other=$([ "$port" = "${ports[0]}" ] && echo "${ports[1]}" || echo "${ports[0]}")
  curl -s -o /dev/null -w '%{http_code}\n' -H "content-type: application/json" \
    -d "{\"id\": \"$id\", \"label\": \"negative\"}" "http://127.0.0.1:$other/feedback"
done | sort | uniq -c | sed 's/^/feedback HTTP status: /'

sleep 1
echo "== the database"
psql_ -d sentiment -c "SELECT 'predictions: ' || COUNT(*) FROM predictions" \
  -c "SELECT 'feedback: ' || COUNT(*) FROM feedback" \
  -c "SELECT 'by source: ' || string_agg(source || '=' || n, ', ' ORDER BY source) FROM (SELECT source, COUNT(*) n FROM predictions GROUP BY source) s" \
  -c "SELECT 'distinct ids: ' || COUNT(DISTINCT id) FROM predictions" \
  -c "SELECT 'model versions: ' || string_agg(DISTINCT model_version, ', ') FROM predictions" \
  -c "SELECT 'rows without text (LOG_TEXT=false): ' || COUNT(*) FROM predictions WHERE text IS NULL" \
  -c "SELECT 'corrected to negative: ' || COUNT(*) FROM feedback WHERE label = 'negative'" | tee "$work/db"
echo "== each replica's /metrics"
total=0
for port in "${ports[@]}"; do
  m=$(curl -s "http://127.0.0.1:$port/metrics")
  w=$(awk '/^prediction_log_rows_written_total/ {print $2}' <<< "$m")
  d=$(awk '/^prediction_log_rows_dropped_total/ {print $2}' <<< "$m")
  echo ":$port written $w dropped $d; $(grep -E '^feedback_total' <<< "$m" | tr '\n' ' ')"
  total=$(( total + w ))
done

echo "== the corrections as training rows (preprocess --source postgres://sentiment:***@...)"
target/release/preprocess --source "$url" --output-dir "$work/processed" --tokenizer "$work/none" \
  --test-size 0.25 > "$work/preprocess.log" 2>&1
python3 - "$work/processed/report.json" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
assert "e2e-secret" not in text, "the password is in report.json"
r = json.loads(text)
s = r["sources"][0]
print(f"source {s['name']}: {s['rows_read']} rows read, {s['kept']} kept; train/validation/test "
      f"{r['train']['rows']}/{r['validation']['rows']}/{r['test']['rows']}")
PY

predictions=$(grep '^predictions:' "$work/db" | awk '{print $2}')
feedback=$(grep '^feedback:' "$work/db" | awk '{print $2}')
if [ "$answered" = "$requests" ] && [ "$predictions" = "$requests" ] && [ "$total" = "$requests" ] \
   && [ "$feedback" = "$corrections" ]; then
  echo "PASS: $requests predictions from 2 replicas in one PostgreSQL log, $corrections corrections resolved across replicas"
else
  echo "FAIL: answered $answered, rows $predictions, written $total, feedback $feedback" >&2
  exit 1
fi
