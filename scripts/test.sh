#!/usr/bin/env bash
# The whole test suite: Rust unit and integration tests (real SQLite files,
# sipp against the real binary), then the browser tests (Debian's chromium
# driven by playwright-core against the real binary).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== building the console =="
(cd web && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm run build && npm test)

echo "== building the server =="
cargo build --workspace --all-targets

echo "== Rust tests (cargo nextest) =="
cargo nextest run --workspace --no-fail-fast

echo "== browser tests (playwright-core + chromium) =="
(cd tests/e2e && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && \
  CENTRALITA_BIN="$PWD/../../target/debug/centralita" npm test)
