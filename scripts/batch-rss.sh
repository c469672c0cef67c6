#!/usr/bin/env bash
# batch_predict on generated CSVs of growing size (quoted commas, newlines inside fields,
# empty texts, extra columns): checks every input row comes back, and prints rows/s and peak
# RSS per size, which should stay flat as the file grows (the CSV is streamed).
#
#   scripts/batch-rss.sh [MODEL_DIR] [ROWS...]    # default: the tiny test model; 25k 100k 400k
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-crates/classifier/tests/fixtures/tiny-distilbert}
shift || true
sizes=("${@:-25000 100000 400000}")
read -r -a sizes <<< "${sizes[*]}"
cargo build --release --quiet -p api
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '| rows | file MB | seconds | rows/s | peak RSS MB | rows out |\n|---|---|---|---|---|---|\n'
for n in "${sizes[@]}"; do
  python3 - "$n" "$work/in.csv" <<'PY'
import csv, random, sys
n, path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(7)
texts = [
    'A wonderful, heart-warming film, with "superb" acting.',
    "Dull and far too long.\nI left at the interval, and so did my friend.",
    "not bad at all, actually; the score, the cast, the light: all lovely",
    "",
    "Worst movie of the year, by far. Avoid!!!",
    "   ",
    "It was fine. Some good scenes, some weak ones; the ending, though, was great.",
]
with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["id", "text", "stars", "note"])
    for i in range(n):
        w.writerow([i, rng.choice(texts) * rng.randint(1, 4), rng.randint(1, 5), "extra, column"])
PY
  mb=$(du -m "$work/in.csv" | cut -f1)
  /usr/bin/time -f '%M %e' -o "$work/time" \
    target/release/batch_predict "$work/in.csv" "$work/out.csv" --model-path "$model" >/dev/null 2>&1
  read -r rss_kb secs < "$work/time"
  rows_out=$(python3 -c 'import csv,sys; print(sum(1 for _ in csv.reader(open(sys.argv[1], newline=""))) - 1)' "$work/out.csv")
  [ "$rows_out" = "$n" ] || { echo "FAIL: $n rows in, $rows_out out" >&2; exit 1; }
  printf '| %s | %s | %s | %.0f | %.0f | %s |\n' "$n" "$mb" "$secs" "$(echo "$n / $secs" | bc -l)" \
    "$(echo "$rss_kb / 1024" | bc -l)" "$rows_out"
done
