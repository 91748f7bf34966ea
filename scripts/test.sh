#!/usr/bin/env bash
# The whole test suite: Rust unit and integration tests (real SQLite files,
# sipp against the real binary), the same Rust tests again on PostgreSQL (a
# throwaway cluster started here and removed at the end), then the browser
# tests (Debian's chromium driven by playwright-core against the real binary).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== building the console =="
(cd web && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm run build && npm test)

echo "== building the server =="
cargo build --workspace --all-targets

echo "== Rust tests on SQLite (cargo nextest) =="
env -u CENTRALITA_TEST_DATABASE_URL cargo nextest run --workspace --no-fail-fast

echo "== Rust tests on PostgreSQL (cargo nextest) =="
pg_dir=$(mktemp -d /tmp/centralita-test-pg.XXXXXX)
trap 'scripts/pg-test-cluster.sh stop "$pg_dir"' EXIT
# A port nothing answers on (bash's /dev/tcp connect fails on a free one).
for _ in $(seq 1 50); do
  pg_port=$((20000 + RANDOM % 20000))
  (exec 3<>"/dev/tcp/127.0.0.1/$pg_port") 2>/dev/null || break
done
pg_url=$(scripts/pg-test-cluster.sh start "$pg_dir" "$pg_port")
CENTRALITA_TEST_DATABASE_URL=$pg_url cargo nextest run --workspace --no-fail-fast

echo "== browser tests (playwright-core + chromium) =="
(cd tests/e2e && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && \
  CENTRALITA_BIN="$PWD/../../target/debug/centralita" npm test)
