#!/usr/bin/env bash
# Plain RTP relay benchmark: centralita's media relay (crates/media, the
# relay_bench example) beside the minimal recvmmsg/sendmmsg relay and
# rtpengine's userspace relay, in the same run, driven by rtpload
# (../shared/bench/rtpload) on 127.0.0.1 only.
#
# Per rate (forwarded packets/s; 100 per call) and relay: a fresh relay
# process, rtpload for WARMUP + DURATION s, then the relay is stopped by PID.
# Reported: µs of relay CPU per forwarded packet, p50/p99 one-way latency
# through the relay, loss. Optionally a perf profile of our relay.
#
#   bench/media/run.sh
#   RATES="100000" DURATION=10 RELAYS="centralita minirelay" bench/media/run.sh
#   NO_BUILD=1 PROFILE_RATE=100000 RATES= bench/media/run.sh     # profile only
#
# Binaries are built into a scratch dir ($WORK), never into the repository.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
RTPLOAD_SRC=${RTPLOAD_SRC:-$ROOT/../shared/bench/rtpload}
[ -d "$RTPLOAD_SRC" ] || RTPLOAD_SRC=/work/shared/bench/rtpload
OUT=${OUT:-$ROOT/bench/media/results}
WORK=$(mktemp -d /tmp/media-bench.XXXXXX)
RATES=${RATES-"10000 50000 100000"}
RELAYS=${RELAYS:-"centralita minirelay rtpengine"}
REPEAT=${REPEAT:-1}             # rounds over all rates and relays (noise)
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-3}
THREADS=${THREADS:-1}           # our media threads
PROFILE_RATE=${PROFILE_RATE-100000}
PERF_SECS=${PERF_SECS:-10}
mkdir -p "$OUT"
rm -f "$OUT"/*.txt "$OUT"/summary.md

gcc -O2 -o "$WORK/rtpload" "$RTPLOAD_SRC/rtpload.c" -lpthread
gcc -O2 -o "$WORK/minirelay" "$RTPLOAD_SRC/minirelay.c"
if [ -z "${NO_BUILD:-}" ]; then
  cargo build --release -p media --example relay_bench 2>&1 | tail -1
fi
OURS=$ROOT/target/release/examples/relay_bench

RELAY_PID=
cleanup() {
  if [ -n "$RELAY_PID" ] && kill -0 "$RELAY_PID" 2>/dev/null; then
    kill "$RELAY_PID" 2>/dev/null || true
    wait "$RELAY_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# Starts relay $1 for $2 calls; sets RELAY_PID and CTRL (rtpload's -f/-g argument).
start_relay() {
  local relay=$1 calls=$2 life=$((WARMUP + DURATION + 30))
  rm -f "$WORK/ports.txt"
  case $relay in
    centralita)
      "$OURS" -n "$calls" -o "$WORK/ports.txt" -t "$THREADS" -s "$life" -r 20000-29999 2>"$WORK/relay.log" &
      RELAY_PID=$! CTRL="-f $WORK/ports.txt" ;;
    minirelay)
      "$WORK/minirelay" -n "$calls" -o "$WORK/ports.txt" 2>"$WORK/relay.log" &
      RELAY_PID=$! CTRL="-f $WORK/ports.txt" ;;
    rtpengine)
      rtpengine --config-file="$ROOT/bench/media/rtpengine.conf" --config-section=rtpengine \
        --table=-1 --num-threads=1 --foreground >"$WORK/relay.log" 2>&1 &
      RELAY_PID=$! CTRL="-g 127.0.0.1:2223" ;;
    *) echo "unknown relay $relay" >&2; exit 2 ;;
  esac
  for _ in $(seq 1 300); do
    case $relay in
      rtpengine) ss -Hunl 'sport = :2223' | grep -q . && return 0 ;;
      *) [ -s "$WORK/ports.txt" ] && return 0 ;;
    esac
    kill -0 "$RELAY_PID" 2>/dev/null || { cat "$WORK/relay.log" >&2; exit 3; }
    sleep 0.1
  done
  echo "$relay did not come up" >&2; exit 3
}

# Datagrams the kernel dropped because a socket of the relay ($1) had a full
# receive buffer: the `drops` column of /proc/net/udp for its sockets.
relay_drops() {
  local inodes
  inodes=$(find /proc/"$1"/fd -lname 'socket:*' -printf '%l\n' 2>/dev/null | tr -dc '0-9\n' | sort -u)
  awk 'NR == FNR { want[$1] = 1; next } FNR > 1 && ($10 in want) { d += $13 } END { print d + 0 }' \
    <(echo "$inodes") /proc/net/udp
}

stop_relay() {
  # Ours stops by itself on a stop file and prints its counters (send drops).
  if [ "${1:-}" = centralita ]; then
    touch "$WORK/ports.txt.stop"
    for _ in $(seq 1 30); do kill -0 "$RELAY_PID" 2>/dev/null || break; sleep 0.1; done
    rm -f "$WORK/ports.txt.stop"
  fi
  kill "$RELAY_PID" 2>/dev/null || true
  wait "$RELAY_PID" 2>/dev/null || true
  RELAY_PID=
}

val() { grep -o "$1=[^ ]*" "$2" | head -1 | cut -d= -f2; }

{
  echo "| relay | offered pkt/s | forwarded pkt/s | µs CPU / pkt | p50 µs | p99 µs | loss % | dropped at relay sockets | relay CPU % (user) | generator max lag ms | others' CPU % |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
} >"$OUT/summary.md"

for round in $(seq 1 "$REPEAT"); do
for rate in $RATES; do
  calls=$((rate / 100))
  for relay in $RELAYS; do
    start_relay "$relay" "$calls"
    sleep 0.5
    f=$OUT/$relay-$rate-r$round.txt
    # shellcheck disable=SC2086
    timeout $((WARMUP + DURATION + 60)) "$WORK/rtpload" -n "$calls" -d "$DURATION" -w "$WARMUP" $CTRL \
      -p "$RELAY_PID" -l "$relay" >"$f" 2>&1 || echo "rtpload failed for $relay at $rate" >&2
    echo "relay_socket_drops=$(relay_drops "$RELAY_PID")" >>"$f"
    stop_relay "$relay"
    tail -n 20 "$WORK/relay.log" >>"$f" 2>/dev/null || true
    echo "| $relay | $(val offered_pps "$f") | $(val fwd_pps "$f") | $(val relay0_us_per_pkt "$f") | $(val lat_us_p50 "$f") | $(val lat_us_p99 "$f") | $(val loss_pct "$f") | $(val relay_socket_drops "$f") | $(val relay0_cpu_sched_pct "$f") ($(val relay0_user_pct "$f")) | $(val gen_tick_maxlag_ms "$f") | $(val others_sched_pct "$f") |" >>"$OUT/summary.md"
    tail -1 "$OUT/summary.md"
  done
done
done

if [ -n "$PROFILE_RATE" ] && command -v perf >/dev/null; then
  calls=$((PROFILE_RATE / 100))
  start_relay centralita "$calls"
  "$WORK/rtpload" -n "$calls" -d $((PERF_SECS + 4)) -w 2 $CTRL -p "$RELAY_PID" -l profile >"$OUT/profile-rtpload.txt" 2>&1 &
  LOAD_PID=$!
  sleep 3
  perf record -g -o "$WORK/perf.data" -p "$RELAY_PID" -- sleep "$PERF_SECS" >/dev/null 2>&1 || true
  wait "$LOAD_PID" || true
  stop_relay centralita
  perf report -i "$WORK/perf.data" --stdio --no-children --percent-limit 0.7 2>/dev/null \
    | grep -v '^$' | head -150 >"$OUT/perf-centralita.txt" || true
  perf report -i "$WORK/perf.data" --stdio --no-children --sort dso,sym -g none --percent-limit 0.3 2>/dev/null \
    | grep -v "^#" | grep -v "^$" | head -60 >"$OUT/perf-flat.txt" || true
  echo "profile: $OUT/perf-centralita.txt"
fi
cat "$OUT/summary.md"
