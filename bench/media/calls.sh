#!/usr/bin/env bash
# Anchored WebRTC (DTLS-SRTP, PCMU) ↔ plain RTP calls through centralita's
# media shell (crates/media/examples/webrtc_bench.rs): media-thread CPU per
# call-second and per forwarded packet, calls per core, loss, latency and
# memory per call, for a growing number of calls. 127.0.0.1 only.
#
# Each step is a fresh server process with its peer child (browsers as
# str0m instances, phones as UDP sockets): setup (ICE + DTLS), WARMUP s,
# DURATION s measured, 1 s drain. Bounded: at most 120 s per step.
#
#   bench/media/calls.sh
#   CALLS="100 300" REPEAT=2 DURATION=10 bench/media/calls.sh
#   NO_BUILD=1 CALLS= PROFILE_CALLS=300 bench/media/calls.sh   # profile only
#   TAG=before bench/media/calls.sh     # results/calls-$TAG-*.txt
#   TRANSCODE=1 TAG=opus bench/media/calls.sh   # opus (browser) <-> PCMU (phone)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$ROOT/bench/media/results}
CALLS=${CALLS-"50 100 200 300"}
REPEAT=${REPEAT:-1}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
TAG=${TAG:-run}
PROFILE_CALLS=${PROFILE_CALLS-}
# Transcoded calls: the browser leg speaks opus only (webrtc_bench -t).
MODE=()
[ -n "${TRANSCODE:-}" ] && MODE=(-t)
PERF_SECS=${PERF_SECS:-8}
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/webrtc_bench}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/webrtc-bench.XXXXXX)
BENCH_PID=
cleanup() {
  if [ -n "$BENCH_PID" ] && kill -0 "$BENCH_PID" 2>/dev/null; then
    kill "$BENCH_PID" 2>/dev/null || true
    wait "$BENCH_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "${NO_BUILD:-}" ]; then
  cargo build --release -p media --example webrtc_bench 2>&1 | tail -1
fi

val() { grep -o " $1=[^ ]*" "$2" | head -1 | cut -d= -f2; }

SUMMARY=$OUT/calls-$TAG-summary.md
if [ -n "$CALLS" ]; then
  {
    echo "| calls | round | media thread CPU % | µs CPU / call-second | calls per core | µs / forwarded pkt | loss % b→p / p→b | p50 / p99 µs b→p | p50 / p99 µs p→b | KiB / call (setup / media) | setup CPU ms / call | peer lag ms | load avg |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  } >"$SUMMARY"
fi

for round in $(seq 1 "$REPEAT"); do
  for n in $CALLS; do
    f=$OUT/calls-$TAG-$n-r$round.txt
    echo "loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' ,)" >"$f"
    timeout $((WARMUP + DURATION + 100)) "$BIN" -n "$n" "${MODE[@]}" -w "$WARMUP" -d "$DURATION" >>"$f" 2>&1 \
      || echo "webrtc_bench failed at $n calls (see $f)" >&2
    sed -i 's/^/ /' "$f"
    echo "| $n | $round | $(val media_cpu_pct "$f") | $(val us_per_call_s "$f") | $(val calls_per_core "$f") | $(val us_per_pkt "$f") | $(val loss_b2p_pct "$f") / $(val loss_p2b_pct "$f") | $(val p50_b2p_us "$f") / $(val p99_b2p_us "$f") | $(val p50_p2b_us "$f") / $(val p99_p2b_us "$f") | $(val kib_per_call_setup "$f") / $(val kib_per_call_media "$f") | $(val setup_media_cpu_ms_per_call "$f") | $(val peer_max_lag_ms "$f") | $(val loadavg "$f") |" >>"$SUMMARY"
    tail -1 "$SUMMARY"
  done
done

if [ -n "$PROFILE_CALLS" ] && command -v perf >/dev/null; then
  # System calls of the media thread for 3 s, then a profile with DWARF
  # call graphs (release builds have no frame pointers).
  d=$((PERF_SECS + 8))
  "$BIN" -n "$PROFILE_CALLS" "${MODE[@]}" -w 2 -d "$d" >"$WORK/out.txt" 2>"$WORK/err.txt" &
  BENCH_PID=$!
  for _ in $(seq 1 600); do
    grep -q CONNECTED "$WORK/out.txt" 2>/dev/null && break
    kill -0 "$BENCH_PID" 2>/dev/null || break
    sleep 0.1
  done
  tid=$(grep -o 'media_tid=[0-9]*' "$WORK/err.txt" | cut -d= -f2)
  sleep 3
  perf stat -e 'syscalls:sys_enter_epoll_wait,syscalls:sys_enter_recvmmsg,syscalls:sys_enter_sendmmsg,syscalls:sys_enter_sendto' \
    -t "$tid" -- sleep 3 2>"$OUT/calls-$TAG-syscalls.txt" >/dev/null || true
  perf record -F 999 --call-graph dwarf,16384 -o "$WORK/perf.data" -t "$tid" -- sleep "$PERF_SECS" >/dev/null 2>&1 || true
  wait "$BENCH_PID" || true
  BENCH_PID=
  cp "$WORK/out.txt" "$OUT/calls-$TAG-profile-run.txt"
  # Inclusive time of the media thread's functions (where the time goes by
  # caller), then the flat self-time list.
  perf report -i "$WORK/perf.data" --stdio --children --sort sym -g none --percent-limit 1.5 2>/dev/null \
    | grep -v "^#" | grep -v "^$" | head -120 >"$OUT/calls-$TAG-perf-children.txt" || true
  perf report -i "$WORK/perf.data" --stdio --no-children --sort dso,sym -g none --percent-limit 0.25 2>/dev/null \
    | grep -v "^#" | grep -v "^$" | head -90 >"$OUT/calls-$TAG-perf-flat.txt" || true
  perf report -i "$WORK/perf.data" --stdio --no-children --sort dso -g none 2>/dev/null \
    | grep -v "^#" | grep -v "^$" | head -20 >"$OUT/calls-$TAG-perf-dso.txt" || true
  echo "profile: $OUT/calls-$TAG-perf-*.txt"
fi
[ -f "$SUMMARY" ] && cat "$SUMMARY"
