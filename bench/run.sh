#!/usr/bin/env bash
# SIP benchmark: authenticated REGISTER/s over 10,000 agents, calls/s through
# the B2BUA (INVITE 407 INVITE 100 180 200 ACK BYE, SDP relayed, CDRs written),
# and RSS per registered contact. Everything on 127.0.0.1; every sipp run is
# bounded by -m and a timeout. Writes bench/results/*.txt; bench/report.py
# turns them into bench/REPORT.md.
#
#   bench/run.sh                      # default rates
#   REG_RATES="2000 6000" CALL_RATES="200 500" DURATION=20 bench/run.sh
#   SERVER_FLAGS=--no-cdr ...   # same, CDR writes dropped (to see what the database costs)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# OUT=dir keeps earlier results (a partial re-run must not wipe bench/results).
OUT=${OUT:-$ROOT/bench/results}
WORK=$(mktemp -d /tmp/centralita-bench.XXXXXX)
AGENTS=${AGENTS:-10000}
DURATION=${DURATION:-20}
REG_RATES=${REG_RATES:-"2000 6000 12000"}
CALL_RATES=${CALL_RATES:-"500 1500 2500"}
PORT=${PORT:-5560}
SERVER=127.0.0.1:$PORT
mkdir -p "$OUT"
rm -f "$OUT"/*.txt "$OUT"/*.csv

cargo build --release -p sip --example bench_server 2>&1 | tail -1
BIN=$ROOT/target/release/examples/bench_server

"$BIN" --db "$WORK/bench.db" --agents "$AGENTS" --csv "$WORK/users.csv" \
    --listen "$SERVER" --ring-timeout 30 --nonce-lifetime 60 ${SERVER_FLAGS:-} >"$WORK/server.out" 2>"$WORK/server.err" &
SRV=$!
cleanup() { kill "$SRV" 2>/dev/null || true; [ -n "${UAS:-}" ] && kill "$UAS" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 600); do grep -q READY "$WORK/server.out" 2>/dev/null && break; sleep 0.5; done
grep -q READY "$WORK/server.out" || { cat "$WORK/server.err"; exit 1; }
grep seeded "$WORK/server.err" | tee "$OUT/seed.txt"

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$SRV/status"; }
{
  echo "machine: $(nproc) cores, $(awk '/model name/ {$1=$2=$3=""; print; exit}' /proc/cpuinfo)"
  echo "memory: $(awk '/MemTotal/ {print $2" kB"}' /proc/meminfo)"
  echo "kernel: $(uname -r)"
  echo "sipp: $(sipp -v 2>&1 | grep -o 'SIPp v[^ ]*')"
} >"$OUT/machine.txt"

server_ticks() { awk '{print $14 + $15}' "/proc/$SRV/stat"; }

# sipp run: name scenario rate count csv [extra...]
run_sipp() {
  local name=$1 sf=$2 rate=$3 count=$4 csv=$5; shift 5
  local dir=$WORK/$name; mkdir -p "$dir"
  local start end t0 t1
  start=$(date +%s.%N)
  t0=$(server_ticks)
  (cd "$dir" && TIMEFORMAT='%R %U %S' && time timeout $((DURATION * 3 + 60)) sipp "$SERVER" -sf "$ROOT/bench/sipp/$sf" \
      -inf "$csv" -r "$rate" -rp 1000 -m "$count" -l $((rate * 4 + 100)) \
      -i 127.0.0.1 -p 0 -timeout $((DURATION * 3 + 30))s -nostdin \
      -trace_stat -stf stat.csv -fd 1 -trace_rtt -rtt_freq 1 \
      -max_recv_loops 5000 -max_sched_loops 5000 -buff_size 4194304 "$@" >sipp.out 2>&1) 2>"$dir/time.txt" || true
  end=$(date +%s.%N)
  t1=$(server_ticks)
  local stat
  stat=$(ls "$dir"/*_rtt.csv 2>/dev/null | head -1 || true)
  python3 "$ROOT/bench/sipp_summary.py" "$name" "$rate" "$count" "$start" "$end" "$dir/stat.csv" "$stat" \
      >>"$OUT/$name.txt"
  # CPU over the run, in % of one core (100 ticks per second).
  python3 -c "
import sys
s, e, t0, t1 = float('$start'), float('$end'), int('$t0'), int('$t1')
r, u, k = (open('$dir/time.txt').read().split() + ['0', '0', '0'])[:3]
w = max(e - s, 0.001)
print(f'cpu: server {(t1 - t0) / w:.0f} % of a core, this sipp {(float(u) + float(k)) * 100 / w:.0f} %')
" >>"$OUT/$name.txt" || true
}

# 1. RSS with 10,000 registered contacts (register every agent once, gently).
RSS0=$(rss_kib)
run_sipp reg_all reg.xml 2000 "$AGENTS" "$WORK/users.csv"
sleep 6
RSS1=$(rss_kib)
echo "rss_before_kib=$RSS0 rss_after_kib=$RSS1 contacts=$AGENTS per_contact_bytes=$(( (RSS1 - RSS0) * 1024 / AGENTS ))" \
    | tee "$OUT/rss.txt"
tail -1 "$WORK/server.err" >>"$OUT/rss.txt"

# 2. Authenticated REGISTER/s, each request a different agent (CSV is sequential).
for r in $REG_RATES; do
  run_sipp "reg_$r" reg.xml "$r" $((r * DURATION)) "$WORK/users.csv"
  cat "$OUT/reg_$r.txt"
  sleep 2
done

# 3. Calls/s through the B2BUA: agent 1 calls agent 0 (a sipp UAS).
sed -n '1p;2p' "$WORK/users.csv" >"$WORK/callee.csv"
{ echo SEQUENTIAL; sed -n '3p' "$WORK/users.csv"; } >"$WORK/caller.csv"
CALLEE_EXT=$(sed -n '2p' "$WORK/users.csv" | cut -d';' -f3)
UAS_PORT=5590
(cd "$WORK" && sipp "$SERVER" -sf "$ROOT/bench/sipp/reg.xml" -inf "$WORK/callee.csv" -m 1 \
    -i 127.0.0.1 -p $UAS_PORT -timeout 10s -nostdin >/dev/null 2>&1)
for r in $CALL_RATES; do
  (cd "$WORK" && timeout $((DURATION * 3 + 90)) sipp "$SERVER" -sf "$ROOT/bench/sipp/uas_answer.xml" \
      -i 127.0.0.1 -p $UAS_PORT -m $((r * DURATION)) -l $((r * 10 + 100)) -timeout $((DURATION * 3 + 60))s -nostdin \
      -max_recv_loops 5000 -max_sched_loops 5000 -buff_size 4194304 >"$WORK/uas_$r.out" 2>&1) &
  UAS=$!
  sleep 1
  before=$(python3 -c "import sqlite3;print(sqlite3.connect('$WORK/bench.db').execute('select count(*) from calls').fetchone()[0])")
  run_sipp "call_$r" uac_call.xml "$r" $((r * DURATION)) "$WORK/caller.csv" -s "$CALLEE_EXT"
  wait "$UAS" || true
  UAS=
  sleep 3
  # CDRs are written behind the calls: wait (bounded) until every row is closed.
  python3 - "$WORK/bench.db" "$before" "$((r * DURATION))" "$DURATION" >>"$OUT/call_$r.txt" <<'PY'
import sqlite3, sys, time
db, before, want, duration = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t0 = time.time()
last, still = None, 0
while True:
    c = sqlite3.connect(db)
    total, done = c.execute("select count(*), count(end_time) from calls where id > ?", (before,)).fetchone()
    rows = c.execute("select coalesce(disposition, 'open'), count(*) from calls where id > ? group by 1", (before,)).fetchall()
    c.close()
    # A call that failed before its authenticated INVITE has no row: stop
    # when every row is closed and nothing changed for 3 s, not only when
    # `want` rows exist (that waited out the whole 180 s).
    still = still + 1 if (total, done) == last else 0
    last = (total, done)
    if (total >= want and done >= total) or (done >= total and still >= 3) or time.time() - t0 > 180:
        break
    time.sleep(1)
if done >= total and still >= 3:
    t0 += still
lag = time.time() - t0
tail = "CDR writes kept up (all closed within 3 s of the last call)" if lag < 1 else \
    f"CDR writes lagged: all closed {lag + 3:.0f} s after the last call, ~{done / (duration + 3 + lag):.0f} calls/s written"
print(f"cdr_rows {total} closed {done} " + " ".join(f"{d}={n}" for d, n in rows) + "; " + tail)
PY
  cat "$OUT/call_$r.txt"
  sleep 2
done
echo "rss_end_kib=$(rss_kib)" >>"$OUT/rss.txt"
cp "$WORK/server.err" "$OUT/server.log"
echo "results in $OUT (work dir $WORK)"
