#!/usr/bin/env bash
# SIP benchmark of the real `centralita serve` release binary against
# Kamailio (Debian package) in the same run, on 127.0.0.1 only:
#   - authenticated REGISTER/s, each request a different agent of $AGENTS
#     (REGISTER, 401, REGISTER with digest, 200);
#   - calls/s through centralita's B2BUA (INVITE, 407, ACK, INVITE with digest,
#     100, 180, 200, ACK, 1 s, BYE, 200; CDR rows written to centralita's
#     SQLite file and checked after each run) and through Kamailio as an
#     authenticating record-routing stateful proxy (bench/kamailio/);
#   - CPU of each server process, RSS before/after each run and for
#     $RSS_WAIT s after centralita's last call run;
#   - a perf profile of centralita at $PROFILE_RATE calls/s (a separate run).
# Every sipp run is bounded by -m, -timeout and timeout(1); every wait loop
# by a count. Only processes started here are stopped, by PID.
#
#   bench/run.sh
#   REG_RATES="20000" CALL_RATES="3000" DURATION=10 SERVERS=centralita bench/run.sh
#   NO_BUILD=1 OUT=/tmp/x PROFILE_RATE= bench/run.sh
#   REG_RATES= CALL_RATES= SERVERS=centralita PROFILE_REG_RATE=16000 PROFILE_RATE=3500 bench/run.sh  # profiles only
#
# Agents are created once through the HTTP API (POST /api/agents, the path an
# administrator uses) and the seeded data dir is kept in $SEED_DIR for later
# runs; the measured server is always a fresh process, with the default
# configuration, on a copy of it. The seeding server alone runs with
# auth.insecure_fast_password_hashing: every agent also gets a console
# password, hashed with argon2 (19 MiB, tens of ms each: 10,000 agents took
# ~17 min on the loaded machine), and the benchmark never logs in with them.
# SIP credentials are made exactly as in production. SEED_REAL_HASH=1 seeds
# with the default argon2 parameters instead.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/bench/results}
WORK=$(mktemp -d /tmp/centralita-bench.XXXXXX)
AGENTS=${AGENTS:-10000}
DURATION=${DURATION:-20}
REG_RATES=${REG_RATES-"20000 24000"}
CALL_RATES=${CALL_RATES-"3000 4000"}
SERVERS=${SERVERS:-"centralita kamailio"}
RSS_WAIT=${RSS_WAIT:-60}
PROFILE_RATE=${PROFILE_RATE-3000}
SEED_DIR=${SEED_DIR:-/tmp/centralita-bench-seed-$AGENTS}
KAM_CHILDREN=${KAM_CHILDREN:-8}  # Kamailio's built-in default (Debian's sample config keeps it)
C_SIP=127.0.0.1:5560
C_HTTP=127.0.0.1:${C_HTTP_PORT:-18080}
# Its metrics-only listener (no token): the allocator's figures beside the RSS.
C_METRICS=127.0.0.1:${C_METRICS_PORT:-18081}
K_SIP=127.0.0.1:5570
ADMIN_PW=bench-admin-password
mkdir -p "$OUT"
rm -f "$OUT"/*.txt "$OUT"/runs.jsonl
export RUNS_JSONL=$OUT/runs.jsonl

if [ -z "${NO_BUILD:-}" ]; then
  cargo build --release -p centralita 2>&1 | tail -1
fi
BIN=$ROOT/target/release/centralita

C_PID= K_PID= UAS=
cleanup() {
  [ -n "$UAS" ] && kill "$UAS" 2>/dev/null || true
  [ -n "$C_PID" ] && kill "$C_PID" 2>/dev/null || true
  [ -n "$K_PID" ] && kill "$K_PID" 2>/dev/null || true
}
trap cleanup EXIT

# centralita serve with its default configuration, but for addresses and the
# data dir (and no console assets: the benchmark does not serve pages), and
# media.anchor = never: this compares signalling with Kamailio, which relays
# SDP untouched (the media relay has its own benchmark, bench/media/).
start_centralita() { # data_dir log_prefix
  env CENTRALITA_DATA_DIR="$1" CENTRALITA_HTTP_LISTEN=$C_HTTP CENTRALITA_SIP_LISTEN=$C_SIP \
      CENTRALITA_METRICS_LISTEN=$C_METRICS CENTRALITA_MEDIA_ANCHOR=never \
      CENTRALITA_ADMIN_PASSWORD=$ADMIN_PW CENTRALITA_CONSOLE_DIR="$WORK/no-console" \
      ${CENTRALITA_ENV:-} "$BIN" serve >"$2.out" 2>"$2.err" &
  C_PID=$!
  for _ in $(seq 1 240); do grep -q '^SIP on' "$2.out" 2>/dev/null && return 0; sleep 0.5; done
  cat "$2.err" >&2
  return 1
}
stop_centralita() {
  kill -TERM "$C_PID"
  for _ in $(seq 1 60); do kill -0 "$C_PID" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$C_PID" 2>/dev/null && kill -KILL "$C_PID"
  wait "$C_PID" 2>/dev/null || true
  C_PID=
}

# 1. Agents: seeded once through the HTTP API, then reused.
if [ ! -s "$SEED_DIR/users.csv" ] || [ ! -f "$SEED_DIR/data/centralita.db" ]; then
  rm -rf "$SEED_DIR"; mkdir -p "$SEED_DIR"
  if [ -z "${SEED_REAL_HASH:-}" ]; then
    CENTRALITA_ENV="${CENTRALITA_ENV:-} CENTRALITA_AUTH_INSECURE_FAST_PASSWORD_HASHING=true" \
        start_centralita "$SEED_DIR/data" "$WORK/seed"
  else
    start_centralita "$SEED_DIR/data" "$WORK/seed"
  fi
  python3 "$ROOT/bench/seed_agents.py" "http://$C_HTTP" "$ADMIN_PW" "$AGENTS" "$SEED_DIR/users.csv.tmp" 4 \
      | tee "$SEED_DIR/seed.txt"
  stop_centralita
  mv "$SEED_DIR/users.csv.tmp.realm" "$SEED_DIR/realm"
  mv "$SEED_DIR/users.csv.tmp" "$SEED_DIR/users.csv"
fi
cp "$SEED_DIR/seed.txt" "$OUT/seed.txt"
cp -a "$SEED_DIR/data" "$WORK/data"
USERS=$SEED_DIR/users.csv
REALM=$(cat "$SEED_DIR/realm")
DB=$WORK/data/centralita.db
# Agent 0 is the callee (a sipp UAS), agent 1 the caller.
sed -n '1p;2p' "$USERS" >"$WORK/callee.csv"
{ echo SEQUENTIAL; sed -n '3p' "$USERS"; } >"$WORK/caller.csv"
CALLEE_USER=$(sed -n '2p' "$USERS" | cut -d';' -f1)
CALLEE_EXT=$(sed -n '2p' "$USERS" | cut -d';' -f3)

# HEAPTRACK=1: the measured centralita runs under heaptrack and is killed
# with SIGKILL after the RSS wait, so what heaptrack reports as "leaked" is
# exactly what was still allocated then, by call stack (a graceful stop
# would free it first). Use low rates: heaptrack slows every allocation.
HT=
if [ -n "${HEAPTRACK:-}" ]; then
  mkfifo "$WORK/heaptrack.pipe"
  /usr/lib/heaptrack/libexec/heaptrack_interpret <"$WORK/heaptrack.pipe" | gzip -c >"$WORK/heaptrack.gz" &
  HT=$!
  CENTRALITA_ENV="${CENTRALITA_ENV:-} LD_PRELOAD=/usr/lib/heaptrack/libheaptrack_preload.so DUMP_HEAPTRACK_OUTPUT=$WORK/heaptrack.pipe"
fi

# 2. Both servers up, idle.
if [[ " $SERVERS " == *" centralita "* ]]; then
  start_centralita "$WORK/data" "$WORK/centralita"
fi
if [[ " $SERVERS " == *" kamailio "* ]]; then
  python3 "$ROOT/bench/kamailio/subscribers.py" "$USERS" "$REALM" "$WORK/kamailio.db"
  sed -e "s#@PORT@#${K_SIP##*:}#; s#@DB@#$WORK/kamailio.db#; s#@CHILDREN@#$KAM_CHILDREN#; s#@REALM@#$REALM#g" \
      "$ROOT/bench/kamailio/kamailio.cfg" >"$WORK/kamailio.cfg"
  # 2 GiB of shared memory: with 512 MiB, tm ran out of it under overload at
  # 4,000 calls/s (every call answered "500 server error").
  kamailio -f "$WORK/kamailio.cfg" -DD -E -m 2048 -M 16 -P "$WORK/kamailio.pid" -w "$WORK" \
      >"$WORK/kamailio.log" 2>&1 &
  K_PID=$!
  sleep 3
  kill -0 "$K_PID" || { cat "$WORK/kamailio.log"; exit 1; }
fi
sleep 2

# Kamailio is one main process and its forked children: CPU and memory are
# summed over all of them (PSS, so shared memory is counted once).
pids_of() { # server
  if [ "$1" = centralita ]; then echo "$C_PID"; else echo "$K_PID $(pgrep -P "$K_PID" | tr '\n' ' ')"; fi
}
ticks() { # server
  local t=0 p
  for p in $(pids_of "$1"); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo $t
}
mem_kib() { # server: VmRSS of centralita, summed PSS of Kamailio's processes
  if [ "$1" = centralita ]; then awk '/VmRSS/ {print $2}' "/proc/$C_PID/status"; return; fi
  local t=0 p
  for p in $(pids_of "$1"); do t=$((t + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup"))); done
  echo $t
}
addr_of() { if [ "$1" = centralita ]; then echo $C_SIP; else echo $K_SIP; fi; }
load1() { awk '{print $1}' /proc/loadavg; }

{
  echo "machine: $(nproc) cores, $(awk '/model name/ {$1=$2=$3=""; print; exit}' /proc/cpuinfo)"
  echo "memory: $(awk '/MemTotal/ {print $2" kB"}' /proc/meminfo)"
  echo "kernel: $(uname -r)"
  echo "sipp: $(sipp -v 2>&1 | grep -o 'SIPp v[^ ]*')"
  echo "kamailio: $(kamailio -v 2>&1 | head -1)"
  echo "centralita: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet -- crates centralita Cargo.lock || echo ' (modified)')"
  echo "uptime at start: $(uptime)"
} >"$OUT/machine.txt"

# One sipp client run against a server.
# run_sipp server name scenario rate count csv local_port [extra sipp args...]
run_sipp() {
  local server=$1 name=$2 sf=$3 rate=$4 count=$5 csv=$6 lport=$7; shift 7
  local dir=$WORK/$name; mkdir -p "$dir"
  local start end t0 t1 m0 m1 l0
  l0=$(load1)
  m0=$(mem_kib "$server")
  start=$(date +%s.%N)
  t0=$(ticks "$server")
  (cd "$dir" && TIMEFORMAT='%R %U %S' && time timeout $((DURATION * 3 + 60)) sipp "$(addr_of "$server")" \
      -sf "$ROOT/bench/sipp/$sf" -inf "$csv" -r "$rate" -rp 1000 -m "$count" -l $((rate * 4 + 100)) \
      -i 127.0.0.1 -p "$lport" -timeout $((DURATION * 3 + 30))s -nostdin \
      -trace_stat -stf stat.csv -fd 1 -trace_rtt -rtt_freq 1 \
      -max_recv_loops 5000 -max_sched_loops 5000 -buff_size 4194304 "$@" >sipp.out 2>&1) 2>"$dir/time.txt" || true
  end=$(date +%s.%N)
  t1=$(ticks "$server")
  m1=$(mem_kib "$server")
  local cpu sippcpu
  cpu=$(python3 -c "print(round(($t1 - $t0) / max($end - $start, 0.001)))")
  sippcpu=$(python3 -c "
r, u, k = (open('$dir/time.txt').read().split() + ['0', '0', '0'])[:3]
print(round((float(u) + float(k)) * 100 / max($end - $start, 0.001)))" 2>/dev/null || echo nan)
  python3 "$ROOT/bench/sipp_summary.py" "$name" "$rate" "$count" "$start" "$end" "$dir/stat.csv" \
      "$(ls "$dir"/*_rtt.csv 2>/dev/null | head -1)" \
      server="$server" cpu_server_pct="$cpu" cpu_sipp_pct="$sippcpu" mem_before_kib="$m0" mem_after_kib="$m1" \
      load1_before="$l0" load1_after="$(load1)" | tee "$OUT/$name.txt"
}

# 3. Authenticated REGISTER/s, each request a different agent (the CSV is
# sequential over all agents; sipp's -l lets each rate run at full speed).
for r in $REG_RATES; do
  for s in $SERVERS; do
    run_sipp "$s" "reg_${s}_$r" reg.xml "$r" $((r * DURATION)) "$USERS" 5580
    sleep 3
  done
done

# 4. Calls/s: agent 1 (sipp UAC) calls agent 0 (sipp UAS). The REGISTER load
# left agent 0 bound at the REGISTER sipp's port; remove every binding first
# so that calls reach only the UAS.
uas_port() { if [ "$1" = centralita ]; then echo 5590; else echo 5591; fi; }
# Before every call run (runs that end in timeouts last minutes, and the
# callee's binding lives 300 s): drop every binding of the callee, then
# register the UAS's address.
bind_callee() { # server
  local sf
  for sf in unreg.xml reg.xml; do
    (cd "$WORK" && timeout 20 sipp "$(addr_of "$1")" -sf "$ROOT/bench/sipp/$sf" -inf "$WORK/callee.csv" -m 1 \
        -i 127.0.0.1 -p "$(uas_port "$1")" -timeout 10s -nostdin >/dev/null 2>&1) \
        || { echo "callee $sf on $1 failed" >&2; exit 1; }
  done
}
# centralita's RSS for $RSS_WAIT s after its last call run, sampled in the
# background from the moment that run ended (while Kamailio's run goes on).
rss_sampler() {
  local t0 i
  t0=$(date +%s)
  echo "rss_before_calls_kib=$C_MEM_BEFORE_CALLS $C_ALLOC_BEFORE_CALLS"
  for i in $(seq 0 10 "$RSS_WAIT"); do
    while [ $(( $(date +%s) - t0 )) -lt "$i" ]; do sleep 1; done
    echo "rss_after_${i}s_kib=$(mem_kib centralita) $(alloc_kib)"
  done
}
# jemalloc's figures from /metrics (centralita_allocator_bytes), in KiB:
# what of the RSS is live data, pages jemalloc keeps, its metadata.
alloc_kib() {
  python3 - "$C_METRICS" <<'PY' 2>/dev/null || true
import re, sys, urllib.request
text = urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=5).read().decode()
kinds = dict(re.findall(r'centralita_allocator_bytes\{kind="(\w+)"\} (\S+)', text))
print(" ".join(f"jemalloc_{k}_kib={int(float(v)) // 1024}" for k, v in sorted(kinds.items())))
PY
}
cdr_count() { python3 -c "import sqlite3;print(sqlite3.connect('$DB').execute('select coalesce(max(id),0) from calls').fetchone()[0])"; }
# check_cdrs before_max_id attempted: waits (bounded) until every row is closed.
check_cdrs() {
  python3 - "$DB" "$1" "$2" <<'PY'
import sqlite3, sys, time
db, before, want = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t0 = time.time()
last, still = None, 0
while True:
    c = sqlite3.connect(db, timeout=10)
    total, done = c.execute("select count(*), count(end_time) from calls where id > ?", (before,)).fetchone()
    rows = c.execute("select coalesce(disposition, 'open'), count(*) from calls where id > ? group by 1", (before,)).fetchall()
    c.close()
    still = still + 1 if (total, done) == last else 0
    last = (total, done)
    # A call that failed before its authenticated INVITE has no row: stop
    # once every row is closed and nothing changed for 3 s.
    if (total >= want and done >= total) or (done >= total and still >= 3) or time.time() - t0 > 120:
        break
    time.sleep(1)
print(f"cdr_rows {total} closed {done} of {want} calls attempted: " + " ".join(f"{d}={n}" for d, n in rows)
      + f"; checked {time.time() - t0:.0f} s after the run")
PY
}
SAMPLER=
C_MEM_BEFORE_CALLS= C_ALLOC_BEFORE_CALLS=
# The pre-load value: centralita idle with the agents registered, once the
# REGISTER runs' nonces (60 s) and transactions are gone and its tables have
# shrunk; measured right after the runs it would include their leftovers.
if [ -n "$C_PID" ] && [ -n "$CALL_RATES" ]; then
  [ -n "$REG_RATES" ] && sleep "${RSS_SETTLE:-65}"
  C_MEM_BEFORE_CALLS=$(mem_kib centralita)
  C_ALLOC_BEFORE_CALLS=$(alloc_kib)
fi
for r in $CALL_RATES; do
  for s in $SERVERS; do
    if [ "$s" = centralita ]; then uas_sf=uas_answer.xml uac_sf=uac_call.xml callee=$CALLEE_EXT
    else uas_sf=uas_answer_rr.xml uac_sf=uac_call_rr.xml callee=$CALLEE_USER; fi
    n=$((r * DURATION))
    bind_callee "$s"
    (cd "$WORK" && exec timeout $((DURATION * 3 + 90)) sipp "$(addr_of "$s")" -sf "$ROOT/bench/sipp/$uas_sf" \
        -i 127.0.0.1 -p "$(uas_port "$s")" -m "$n" -l $((r * 10 + 100)) -timeout $((DURATION * 3 + 60))s -nostdin \
        -max_recv_loops 5000 -max_sched_loops 5000 -buff_size 4194304 >"$WORK/uas_${s}_$r.out" 2>&1) &
    UAS=$!
    sleep 1
    before=0
    [ "$s" = centralita ] && before=$(cdr_count)
    run_sipp "$s" "call_${s}_$r" "$uac_sf" "$r" "$n" "$WORK/caller.csv" 5581 -s "$callee"
    # The UAS ends once it has seen every call, or at its timeout; do not wait for that.
    sleep 2
    kill "$UAS" 2>/dev/null || true
    wait "$UAS" 2>/dev/null || true
    UAS=
    if [ "$s" = centralita ]; then
      check_cdrs "$before" "$n" | tee -a "$OUT/call_${s}_$r.txt"
      # After the last rate: sample RSS from now on (the CDR check took ~0-3 s).
      if [ "$r" = "${CALL_RATES##* }" ]; then
        rss_sampler >"$OUT/rss_centralita.txt" &
        SAMPLER=$!
      fi
    fi
    sleep 3
  done
done

# 5. centralita's RSS for $RSS_WAIT s after its last call run (the sampler).
if [ -n "$SAMPLER" ]; then
  wait "$SAMPLER" || true
  cat "$OUT/rss_centralita.txt"
fi
[ -n "$K_PID" ] && echo "kamailio_pss_end_kib=$(mem_kib kamailio)" >>"$OUT/rss_centralita.txt"

# MALLOC_PROBE=1 (glibc malloc only): is what stays resident live data or
# memory the allocator keeps? malloc_stats() prints, per arena and in total,
# the bytes taken from the system and the bytes in use; malloc_trim(0) then
# hands every free page back. Both called in the server through gdb.
if [ -n "${MALLOC_PROBE:-}" ] && [ -n "$C_PID" ]; then
  : >"$WORK/gdb.out"
  timeout 60 gdb -p "$C_PID" -batch -ex 'call (void) malloc_stats()' -ex 'call (int) malloc_trim(0)' \
      >"$WORK/gdb.out" 2>&1 || true
  sleep 1
  {
    echo "malloc_stats (total over $(grep -c '^Arena' "$WORK/centralita.err") arenas):"
    grep -A3 '^Total (incl. mmap)' "$WORK/centralita.err" | tail -3
    echo "rss_after_malloc_trim_kib=$(mem_kib centralita)"
  } | tee -a "$OUT/rss_centralita.txt"
fi

if [ -n "$HT" ] && [ -n "$C_PID" ]; then
  kill -KILL "$C_PID"; wait "$C_PID" 2>/dev/null || true; C_PID=
  for _ in $(seq 1 120); do kill -0 "$HT" 2>/dev/null || break; sleep 1; done
  heaptrack_print -f "$WORK/heaptrack.gz" --print-leaks 1 --print-peaks 1 --print-allocators 0 \
      --print-temporary 0 -n 25 -s 8 >"$OUT/heaptrack.txt" 2>&1 || true
  PROFILE_RATE=
fi

# perf's three views of a profile: self time by symbol, inclusive time by
# symbol, time by thread. profile_report perf.data prefix
profile_report() {
  perf report -i "$1" --no-children --sort dso,symbol --stdio --percent-limit 0.7 -g none 2>/dev/null \
      | grep -v '^$' | head -80 >"$OUT/$2_self.txt" || true
  perf report -i "$1" --children --sort symbol --stdio --percent-limit 3 -g none 2>/dev/null \
      | grep -v '^$' | head -80 >"$OUT/$2_children.txt" || true
  perf report -i "$1" --no-children --sort comm --stdio -g none 2>/dev/null \
      | grep -v '^$' | head -30 >"$OUT/$2_threads.txt" || true
}

# 6a. Where centralita's time goes at $PROFILE_REG_RATE REGISTER/s.
if [ -n "${PROFILE_REG_RATE:-}" ] && [ -n "$C_PID" ]; then
  r=$PROFILE_REG_RATE
  (sleep 3 && timeout $((DURATION + 30)) perf record -F 499 -g -p "$C_PID" -o "$WORK/perf_reg.data" -- sleep $((DURATION - 6)) \
      >"$WORK/perf_reg.out" 2>&1) &
  PERF=$!
  run_sipp centralita "profile_reg_centralita_$r" reg.xml "$r" $((r * DURATION)) "$USERS" 5580 >/dev/null
  wait "$PERF" || true
  profile_report "$WORK/perf_reg.data" profile_reg_centralita
fi

# 6. Where centralita's time goes at $PROFILE_RATE calls/s (a run of its own:
# perf perturbs what it measures).
if [ -n "$PROFILE_RATE" ] && [ -n "$C_PID" ]; then
  r=$PROFILE_RATE n=$((PROFILE_RATE * DURATION))
  bind_callee centralita
  (cd "$WORK" && exec timeout $((DURATION * 3 + 90)) sipp $C_SIP -sf "$ROOT/bench/sipp/uas_answer.xml" \
      -i 127.0.0.1 -p 5590 -m "$n" -l $((r * 10 + 100)) -timeout $((DURATION * 3 + 60))s -nostdin \
      -max_recv_loops 5000 -max_sched_loops 5000 -buff_size 4194304 >"$WORK/uas_profile.out" 2>&1) &
  UAS=$!
  sleep 1
  (sleep 3 && timeout $((DURATION + 30)) perf record -F 499 -g -p "$C_PID" -o "$WORK/perf.data" -- sleep $((DURATION - 6)) \
      >"$WORK/perf.out" 2>&1) &
  PERF=$!
  run_sipp centralita "profile_centralita_$r" uac_call.xml "$r" "$n" "$WORK/caller.csv" 5581 -s "$CALLEE_EXT" >/dev/null
  wait "$PERF" || true
  kill "$UAS" 2>/dev/null || true
  wait "$UAS" 2>/dev/null || true
  UAS=
  profile_report "$WORK/perf.data" profile_centralita
fi

echo "uptime at end: $(uptime)" >>"$OUT/machine.txt"
cp "$WORK/centralita.err" "$OUT/centralita.log" 2>/dev/null || true
echo "results in $OUT (work dir $WORK)"
