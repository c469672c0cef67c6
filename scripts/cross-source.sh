#!/usr/bin/env bash
# Out-of-source quality, as users meet it (run by hand, not in CI): for each of two sources,
# train on it alone and score the other source's test split, which the model never saw; then
# score the long-document proxies (scripts/long_documents.py: one verdict per pseudo-review,
# and mixed 2:1) in truncate and windows mode.
#
#   scripts/cross-source.sh BASE_MODEL SNIPPETS.csv TWEETS.csv OUT_DIR [extra train flags...]
#
# e.g. scripts/cross-source.sh ~/.cache/sentiment-assets/all-MiniLM-L6-v2 \
#        ../shared/assets/data/rotten_tomatoes_snippets.csv \
#        ../shared/assets/data/crowdflower_tweets.csv /tmp/xs --class-weight none
# Needs a release build (cargo build --release) and python3. Prints one table row per score:
# name, rows, accuracy, balanced accuracy, positive share (truth, predicted), ECE.
set -euo pipefail
base=$1 snippets=$2 tweets=$3 out=$4
shift 4
bin=$(cd "$(dirname "$0")/.." && pwd)/target/release
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"

"$bin/preprocess" --source "$snippets,name=snippets,group=movie_name" \
  --output-dir "$out/data/snippets" --tokenizer "$base"
"$bin/preprocess" --source "$tweets,name=tweets" \
  --output-dir "$out/data/tweets" --tokenizer "$base"

for src in snippets tweets; do
  "$bin/train" --base-model "$base" --data-dir "$out/data/$src" \
    --output-dir "$out/$src/model" --results-dir "$out/$src/results" \
    --train-samples 0 --eval-samples 0 --test-samples 0 --pooling mean \
    --batch-size 32 --grad-accum 1 --epochs 2 --lr 5e-5 --matmul-precision bf16 "$@"
done

score() { # model, input, name, extra batch flags
  "$bin/batch_predict" "$2" "$out/pred.csv" --model-path "$1" "${@:4}" > /dev/null
  python3 "$here/score_predictions.py" "$out/pred.csv" "$3"
}
python3 "$here/long_documents.py" "$snippets" "$out/data/snippets/test.csv" "$out/data/long.csv"
python3 "$here/long_documents.py" "$snippets" "$out/data/snippets/test.csv" "$out/data/long-mixed.csv" 0.5
printf 'name\trows\taccuracy\tbalanced\tpos_truth\tpos_pred\tece\n'
score "$out/snippets/model" "$out/data/snippets/test.csv" "snippets->snippets"
score "$out/snippets/model" "$out/data/tweets/test.csv" "snippets->tweets"
score "$out/tweets/model" "$out/data/tweets/test.csv" "tweets->tweets"
score "$out/tweets/model" "$out/data/snippets/test.csv" "tweets->snippets"
score "$out/snippets/model" "$out/data/long.csv" "snippets->long(truncate)" --long-text truncate
score "$out/snippets/model" "$out/data/long.csv" "snippets->long(windows)" --long-text windows
score "$out/snippets/model" "$out/data/long-mixed.csv" "snippets->long-mixed(truncate)" --long-text truncate
score "$out/snippets/model" "$out/data/long-mixed.csv" "snippets->long-mixed(windows)" --long-text windows
