#!/usr/bin/env bash
# Builds the console (once, or when its sources changed) and the server, then
# starts centralita with the embedded SQLite store under ./data.
# Extra arguments go to `centralita serve` (e.g. --config config/centralita.toml).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f web/dist/index.html ] || [ -n "$(find web/src web/index.html web/package.json -newer web/dist/index.html 2>/dev/null | head -1)" ]; then
  echo "building the web console (web/dist)..."
  (cd web && npm ci --no-audit --no-fund && npm run build)
fi

exec cargo run --release -p centralita -- serve "$@"
