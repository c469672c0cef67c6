#!/usr/bin/env bash
# Fuzzes the api with schemathesis (from PyPI) against its own /openapi.json, serving the
# tiny test model committed under crates/classifier/tests/fixtures. Fails on any server
# error or any response that breaks the documented schema.
#
#   scripts/schemathesis.sh                 # MAX_EXAMPLES=300 PORT=8099 by default
set -euo pipefail
cd "$(dirname "$0")/.."
port=${PORT:-8099}
venv=${SCHEMATHESIS_VENV:-target/schemathesis-venv}
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check schemathesis
fi
# The test build makes the same binary (and is already there after `cargo test`).
cargo test --quiet --workspace --no-run 2>/dev/null
MODEL_PATH=crates/classifier/tests/fixtures/tiny-distilbert APP_PORT=$port RUST_LOG=warn \
  target/debug/api &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
  sleep 0.2
done
"$venv/bin/schemathesis" run "http://127.0.0.1:$port/openapi.json" \
  --checks all --max-examples "${MAX_EXAMPLES:-300}" --seed "${SEED:-1}"
