#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the test suite's second pass.
#
#   scripts/pg-test-cluster.sh start DIR PORT   # prints the admin URL
#   scripts/pg-test-cluster.sh stop DIR         # stops it and deletes DIR
#
# It listens on 127.0.0.1:PORT and a unix socket inside DIR only, trusts
# local connections (nothing but this machine can reach it) and trades
# durability for speed (fsync off): its data lives as long as one test run.
# PostgreSQL refuses to run as root, so as root it runs as `postgres`.
set -euo pipefail

pg_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/pg_ctl" ] && { echo "$dir"; return; }
  done
  echo "PostgreSQL server binaries not found (Debian package: postgresql)" >&2
  exit 1
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2; }
bin=$(pg_bin)

case "$cmd" in
  start)
    port=${3:?usage: $0 start DIR PORT}
    rm -rf "$dir"
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -A trust -U postgres --no-sync -E UTF8 >"$dir/initdb.log"
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >/dev/null
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac
