#!/usr/bin/env bash
# perf/run.sh: the whole-system performance matrix of mcpgw (issue 5), in one command.
#
#   perf/run.sh                 # full matrix with peers: about 7 minutes on 2 cores with a warm
#                               # build and installed peers; a cold build adds ~2, the first
#                               # peer install ~3, a busy machine up to 2 (PERF_QUIET_WAIT)
#   PERF_PEERS=0 perf/run.sh    # without the peer gateways (no registry access)
#
# Builds the release binaries, runs every scenario on loopback, and writes a dated run folder
# perf/YYYY-MM-DD-<host>/ with README.md (machine, commit, pinning, settings), raw.csv (one row
# per load run) and summary.md (ratios first), plus small text/SVG extras (profile, flame graph).
# Scratch output (logs, per-run JSON, perf.data, callgrind dumps) goes to $PERF_SCRATCH, never
# into the repository. Peers (ContextForge, mcp-proxy, supergateway) are installed from PyPI/npm
# into $PERF_PEERS_DIR at run time, never vendored.
#
# Knobs (environment):
#   PERF_DURATION=4   measured seconds per load run      PERF_WARMUP=1  warm-up seconds
#   PERF_REPS=3       repetitions of the core scenarios  PERF_CONNECTIONS=16 (closed/open loop)
#   PERF_PEERS=1      0 skips the peers                  PERF_PROFILE=1 0 skips perf/callgrind
#   PERF_OUT=DIR      run folder (default perf/$(date +%F)-$(hostname -s))
#   PERF_QUIET_WAIT=120  seconds to wait at start for other work to calm down
#   PERF_SCHED=nice   nice (nice -n -20, default) or fifo (chrt -f 10; see below)
#   PERF_SCHED_OPEN=fifo  the same for the open-loop (50% load) runs only; default fifo
#   PERF_SCRATCH=/work/scratch/perf-run   PERF_PEERS_DIR=/work/scratch/peers
#   CARGO_TARGET_DIR=/work/scratch/target-perf
#
# Every process this script starts is tracked by PID and stopped (TERM, then KILL) by PID,
# together with its own descendants (stdio children of the proxies), on exit.
set -euo pipefail

T_START=$(date +%s)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PERF=$ROOT/perf
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/scratch/target-perf}
BIN=$CARGO_TARGET_DIR/release
SCRATCH=${PERF_SCRATCH:-/work/scratch/perf-run}
PEERS_DIR=${PERF_PEERS_DIR:-/work/scratch/peers}
HOST=$(hostname -s)
OUT=${PERF_OUT:-$PERF/$(date +%F)-$HOST}
DUR=${PERF_DURATION:-4}
WARM=${PERF_WARMUP:-1}
REPS=${PERF_REPS:-3}
CONNS=${PERF_CONNECTIONS:-16}
PEERS_ON=${PERF_PEERS:-1}
PROFILE_ON=${PERF_PROFILE:-1}
TOOLS_BIN=${PERF_TOOLS_BIN:-/work/scratch/tools/bin}   # inferno (optional flame graph)

# Peer versions (pinned; the run's README records what was really installed).
CF_VERSION=${CF_VERSION:-1.0.7.post20260921}
MCP_PROXY_VERSION=${MCP_PROXY_VERSION:-0.13.0}
SUPERGATEWAY_VERSION=${SUPERGATEWAY_VERSION:-4.0.0}

# Pinning: load generator and fixture share CPU 0, the system under test (floor proxy,
# gateway, peer) has CPU 1 alone. Every process started here runs at nice -20 so that other
# work on the machine (test suites) yields to it. The 2-worker scenario is unpinned.
# PERF_SCHED=fifo runs them SCHED_FIFO (chrt -f 10) instead: on a machine that other work keeps
# busy, nice alone still lets a woken benchmark process wait for the running task's time slice;
# FIFO preempts at once. The kernel's RT throttling (sched_rt_runtime_us, 95% by default)
# still leaves the other work 5% of each CPU, and stalls a saturated benchmark process for
# the rest of each second once it has used 95%: closed-loop tails then show such stalls.
LOAD_CPU=0
FIX_CPU=0
SUT_CPU=1
SCHED=${PERF_SCHED:-nice}
case $SCHED in
fifo) NICE=(chrt -f 10) ;;
nice) NICE=(nice -n -20) ;;
*) echo "PERF_SCHED must be nice or fifo" >&2; exit 2 ;;
esac

# Loopback ports (below the ephemeral range, so random test ports never collide).
P_FX=19100 P_FLOOR_U=19101 P_FLOOR_E=19102 P_GW_U=19103 P_GW_E=19104 P_GW_SH=19105
P_GW_W=19106 P_FLOOR_W=19107 P_FX10=19110 P_FX10K=19111 P_GW10=19112 P_GW10K=19113
P_GW_IDLE=19114 P_GW_STDIO=19120 P_MCPPROXY=19121 P_SUPERGW=19122 P_CF=19123 P_CG=19130

RUN_ID=$(date +%Y%m%d-%H%M%S)
W=$SCRATCH/$RUN_ID
mkdir -p "$W/json" "$W/log" "$W/cfg" "$OUT"
INDEX=$W/index.tsv
: >"$INDEX"
PHASES=$W/phases.tsv
: >"$PHASES"
PEERS_TSV=$W/peers.tsv
: >"$PEERS_TSV"

log() { printf '[%s +%4ss] %s\n' "$(date +%T)" "$(($(date +%s) - T_START))" "$*" >&2; }
phase() {
  echo -e "$1\t$(($(date +%s) - T_START))" >>"$PHASES"
  log "== $1"
}

# ---------------------------------------------------------------- process handling
PIDS=()
descendants() { # all descendants of PID, deepest last
  local c
  for c in $(pgrep -P "$1" 2>/dev/null || true); do
    echo "$c"
    descendants "$c"
  done
}
stop_pid() {
  local pid=$1 all p i
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  all="$pid $(descendants "$pid" | tr '\n' ' ')"
  for p in $all; do kill -TERM "$p" 2>/dev/null || true; done
  for i in $(seq 1 50); do
    local alive=0
    for p in $all; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for p in $all; do kill -KILL "$p" 2>/dev/null || true; done
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { [ -z "$(ss -Htln "sport = :$1" 2>/dev/null)" ]; }
wait_port_free() {
  local i
  for i in $(seq 1 100); do port_free "$1" && return 0; sleep 0.1; done
  log "port $1 is still in use by another process"
  return 1
}
wait_port_open() {
  local i
  for i in $(seq 1 "${2:-300}"); do port_free "$1" || return 0; sleep 0.1; done
  return 1
}
wait_log() { # FILE REGEX PID [tenths]
  local i
  for i in $(seq 1 "${4:-300}"); do
    grep -qE "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || { log "process $3 exited; see $1"; tail -5 "$1" >&2; return 1; }
    sleep 0.1
  done
  log "timeout waiting for /$2/ in $1"
  return 1
}

# start_bg LOG CMD...: starts CMD in the background, LAST_PID is its PID.
start_bg() {
  local logf=$1
  shift
  "$@" >"$logf" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

start_fixture() { # PORT CPUS [fixture args...]
  local port=$1 cpus=$2
  shift 2
  wait_port_free "$port"
  start_bg "$W/log/fixture-$port.log" taskset -c "$cpus" "${NICE[@]}" \
    "$BIN/mcpgw-fixture" --listen "127.0.0.1:$port" "$@"
  wait_log "$W/log/fixture-$port.log" '^LISTENING' "$LAST_PID"
}
start_floor() { # PORT CPUS DRIVER THREADS [UPSTREAM_PORT]
  wait_port_free "$1"
  start_bg "$W/log/floor-$1.log" taskset -c "$2" "${NICE[@]}" \
    "$BIN/mcpgw-floor" --listen "127.0.0.1:$1" --upstream "127.0.0.1:${5:-$P_FX}" --driver "$3" --threads "$4"
  wait_log "$W/log/floor-$1.log" '^LISTENING' "$LAST_PID"
}
gw_config() { # FILE PORT WORKERS DRIVER SESSION UPSTREAM_PORT [extra [gateway] lines]
  local f=$1
  cat >"$f" <<EOF
[gateway]
listen = "127.0.0.1:$2"
workers = $3
driver = "$4"
page_size = 20000
idle_timeout_ms = 600000
${7:-}

[[upstream]]
name = "fx"
transport = "http"
url = "http://127.0.0.1:$6/mcp"
session = "$5"
EOF
}
start_gateway() { # NAME PORT CPUS WORKERS DRIVER SESSION UPSTREAM_PORT [extra] [expected tools]
  local cfg=$W/cfg/$1.toml
  gw_config "$cfg" "$2" "$4" "$5" "$6" "$7" "${8:-}"
  wait_port_free "$2"
  start_bg "$W/log/gw-$1.log" taskset -c "$3" "${NICE[@]}" "$BIN/mcpgw" run --config "$cfg"
  wait_log "$W/log/gw-$1.log" 'mcpgw listening' "$LAST_PID"
  wait_log "$W/log/gw-$1.log" "catalog published.*tools=${9:-1} .*upstreams_up=1" "$LAST_PID" 600
}

# ---------------------------------------------------------------- load runs
# Scenario fields for the index (set before each run_load).
S_SCEN="" S_TARGET="" S_DRIVER="" S_WORKERS="" S_SESSION="" S_PIN="" S_REP=1 S_NOTE=""
N_RUN=0
# Busy and total jiffies of the whole machine (all CPUs) from /proc/stat.
machine_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
# Share of the machine in use right now (percent of one core, over 3 s).
machine_busy_now() {
  local a b
  a=$(machine_ticks)
  sleep 3
  b=$(machine_ticks)
  echo "$a $b" | awk -v n="$(nproc)" '{d=$4-$2; print (d>0 ? int(($3-$1)/d*100*n) : 0)}'
}
# utime and stime (ticks) of PID, or nothing.
ut_st() {
  local f
  [ -n "$1" ] || return 0
  f=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  f=${f##*) }
  echo "$f" | awk '{print $12, $13}'
}
# run_load URL TOOL LOAD_CPUS SUT_PID FIX_PID [mcpgw-load args...]
run_load() {
  local url=$1 tool=$2 cpus=$3 sut=$4 fix=$5
  shift 5
  N_RUN=$((N_RUN + 1))
  local id
  id=$(printf '%03d' "$N_RUN")
  local json=$W/json/$id.json pids=()
  [ -n "$sut" ] && pids+=(--pid "$sut")
  [ -n "$fix" ] && pids+=(--pid "$fix")
  local rc=0 m0 m1 busy u0 u1
  m0=$(machine_ticks)
  u0=$(ut_st "$sut")
  taskset -c "$cpus" "${NICE[@]}" "$BIN/mcpgw-load" --url "$url" --tool "$tool" -q --self-cpu \
    "${pids[@]}" --json "$json" --label "$S_SCEN/$S_TARGET" "$@" \
    >"$W/log/load-$id.txt" 2>&1 || rc=$?
  m1=$(machine_ticks)
  u1=$(ut_st "$sut")
  # Machine busy over the whole invocation, percent of one core (summarize.py subtracts ours).
  busy=$(echo "$m0 $m1" | awk -v n="$(nproc)" '{d=$4-$2; print (d>0 ? int(($3-$1)/d*100*n) : 0)}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$S_SCEN" "$S_TARGET" \
    "$S_DRIVER" "$S_WORKERS" "$S_SESSION" "$S_PIN" "$S_REP" "$sut" "$fix" "$json" "$rc" \
    "$S_NOTE" "$busy" "$u0 $u1" >>"$INDEX"
  local line
  line=$(grep -E 'calls/s' "$W/log/load-$id.txt" | sed 's/^ *//' || true)
  log "  $id $S_SCEN/$S_TARGET rep $S_REP: ${line:-no result (exit $rc)}"
  [ "$rc" = 0 ] || { log "  $id: mcpgw-load exit $rc"; grep ERRORS "$W/log/load-$id.txt" | head -4 >&2 || true; }
}
median_calls() { # SCENARIO TARGET DRIVER SESSION -> median calls/s over the index rows
  python3 - "$INDEX" "$1" "$2" "$3" "$4" <<'EOF'
import json, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
v = []
for r in rows:
    if r[1:4] == sys.argv[2:5] and r[5] == sys.argv[5]:
        try:
            v.append(json.load(open(r[10]))["calls_per_s"])
        except Exception:
            pass
print(int(statistics.median(v)) if v else 0)
EOF
}
# CPU ticks (utime+stime+cutime+cstime) of PID and all its descendants.
tree_ticks() {
  local p t=0 f
  for p in $1 $(descendants "$1"); do
    f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    f=${f##*) }
    # fields after "comm)": state(3) ... utime(14) stime(15) cutime(16) cstime(17)
    set -- $f
    t=$((t + ${12} + ${13} + ${14} + ${15}))
  done
  echo $t
}
CLK_TCK=$(getconf CLK_TCK)

# ================================================================ 0. build and machine
phase build
(cd "$ROOT" && cargo build --release --workspace) 2>"$W/log/build.log" || {
  tail -20 "$W/log/build.log" >&2
  exit 1
}
for b in mcpgw mcpgw-load mcpgw-fixture mcpgw-floor; do [ -x "$BIN/$b" ] || { log "missing $BIN/$b"; exit 1; }; done

{
  echo "date=$(date -Iseconds)"
  echo "host=$HOST"
  echo "commit=$(git -C "$ROOT" rev-parse HEAD)"
  echo "commit_subject=$(git -C "$ROOT" log -1 --format=%s)"
  echo "dirty_files=$(git -C "$ROOT" status --porcelain -- src loadtest Cargo.toml Cargo.lock | wc -l)"
  echo "rustc=$(rustc --version)"
  echo "kernel=$(uname -srm)"
  echo "cpu_model=$(lscpu | sed -n 's/^Model name: *//p')"
  echo "cpus=$(nproc)"
  echo "hypervisor=$(lscpu | sed -n 's/^Hypervisor vendor: *//p')"
  echo "caches=$(lscpu | grep -E '^L[123]' | sed 's/  */ /g' | paste -sd ';' -)"
  echo "mem_total=$(free -h | awk '/^Mem:/{print $2}')"
  echo "python=$(python3 --version 2>&1)"
  echo "node=$(node --version 2>/dev/null || echo none)"
  echo "nofile=$(ulimit -n)"
  echo "perf_stat_instructions=$(perf stat -x, -e instructions true 2>&1 | grep -q 'not supported' && echo 'not supported' || echo supported)"
  echo "valgrind=$(valgrind --version 2>/dev/null || echo none)"
  echo "duration_s=$DUR"
  echo "warmup_s=$WARM"
  echo "reps=$REPS"
  echo "connections=$CONNS"
  echo "load_cpu=$LOAD_CPU"
  echo "fixture_cpu=$FIX_CPU"
  echo "sut_cpu=$SUT_CPU"
  echo "sched=${NICE[*]}"
  echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$W/meta.env"

# Other work on the machine (a test suite, a fuzzer) makes the numbers noisy: wait a while for
# a quiet machine, then go ahead either way and record what was seen.
QUIET_WAIT=${PERF_QUIET_WAIT:-120}
busy=$(machine_busy_now)
waited=0
while [ "$busy" -gt 25 ] && [ "$waited" -lt "$QUIET_WAIT" ]; do
  log "machine busy (${busy}% of a core used by other processes); waiting for quiet (${waited}/${QUIET_WAIT} s)"
  sleep 5
  waited=$((waited + 8))
  busy=$(machine_busy_now)
done
echo "busy_before_start_pct=$busy" >>"$W/meta.env"
echo "quiet_wait_s=$waited" >>"$W/meta.env"

# ================================================================ 1. core, pinned
phase "core (1 KiB, closed loop, pinned)"
start_fixture $P_FX $FIX_CPU
FX_PID=$LAST_PID
start_floor $P_FLOOR_U $SUT_CPU uring 1
FLOOR_U=$LAST_PID
start_floor $P_FLOOR_E $SUT_CPU epoll 1
FLOOR_E=$LAST_PID
start_gateway uring-pc $P_GW_U $SUT_CPU 1 uring per-client $P_FX
GW_U=$LAST_PID
start_gateway epoll-pc $P_GW_E $SUT_CPU 1 epoll per-client $P_FX
GW_E=$LAST_PID
start_gateway uring-shared $P_GW_SH $SUT_CPU 1 uring shared $P_FX
GW_SH=$LAST_PID
# Observability cost: the same gateway with per-call metrics and the audit log both on
# (the default has metrics on, audit off), and with both off.
P_GW_FULL=19131 P_GW_BARE=19132
start_gateway uring-full $P_GW_FULL $SUT_CPU 1 uring per-client $P_FX "metrics = true
[audit]
path = \"$W/audit-full.jsonl\""
GW_FULL=$LAST_PID
start_gateway uring-bare $P_GW_BARE $SUT_CPU 1 uring per-client $P_FX "metrics = false"
GW_BARE=$LAST_PID
# Authorization cost: an API key checked per request, a role granting the tool, and a
# per-principal rate limit far above the load (so it is checked, never hit).
P_GW_AUTH=19133
"$BIN/mcpgw" auth new-key perf --role all >"$W/perf-key.txt" 2>"$W/perf-key-entry.txt"
PERF_KEY=$(cat "$W/perf-key.txt")
start_gateway uring-auth $P_GW_AUTH $SUT_CPU 1 uring per-client $P_FX "
[auth]
$(sed -n '/^\[\[auth.api_key\]\]/,$p' "$W/perf-key-entry.txt")

[[role]]
name = \"all\"
tools = [\"*\"]

[[rate_limit]]
scope = \"principal\"
rate = \"10000000/s\""
GW_AUTH=$LAST_PID
# Guardrails cost: every call's arguments and result screened for secrets, personal data and
# injection (all classes on; the load's payload is filler text, so nothing is masked).
P_GW_GUARD=19134
start_gateway uring-guard $P_GW_GUARD $SUT_CPU 1 uring per-client $P_FX "
[[guard.screen]]
secrets = \"mask\"
pii = \"mask\"
injection = \"flag\""
GW_GUARD=$LAST_PID

KIB=(--payload-bytes 1024 --result-bytes 1024)
CLOSED=(-c "$CONNS" -d "$DUR" -w "$WARM")
S_PIN="load+fixture cpu$LOAD_CPU, sut cpu$SUT_CPU"
for rep in $(seq 1 "$REPS"); do
  S_REP=$rep S_SCEN=core
  S_TARGET=direct S_DRIVER=uring S_WORKERS=- S_SESSION=-
  run_load "http://127.0.0.1:$P_FX/mcp" echo $LOAD_CPU "" "$FX_PID" "${CLOSED[@]}" "${KIB[@]}"
  S_TARGET=floor S_DRIVER=uring S_WORKERS=1
  run_load "http://127.0.0.1:$P_FLOOR_U/mcp" echo $LOAD_CPU "$FLOOR_U" "$FX_PID" "${CLOSED[@]}" "${KIB[@]}"
  S_TARGET=gateway S_DRIVER=uring S_WORKERS=1 S_SESSION=per-client
  run_load "http://127.0.0.1:$P_GW_U/mcp" fx__echo $LOAD_CPU "$GW_U" "$FX_PID" "${CLOSED[@]}" "${KIB[@]}"
  S_TARGET=floor S_DRIVER=epoll S_WORKERS=1 S_SESSION=-
  run_load "http://127.0.0.1:$P_FLOOR_E/mcp" echo $LOAD_CPU "$FLOOR_E" "$FX_PID" "${CLOSED[@]}" "${KIB[@]}"
  S_TARGET=gateway S_DRIVER=epoll S_WORKERS=1 S_SESSION=per-client
  run_load "http://127.0.0.1:$P_GW_E/mcp" fx__echo $LOAD_CPU "$GW_E" "$FX_PID" "${CLOSED[@]}" "${KIB[@]}"
  S_TARGET=gateway S_DRIVER=uring S_WORKERS=1 S_SESSION=shared
  run_load "http://127.0.0.1:$P_GW_SH/mcp" fx__echo $LOAD_CPU "$GW_SH" "$FX_PID" "${CLOSED[@]}" "${KIB[@]}"
  S_TARGET=gateway-obs-full S_DRIVER=uring S_WORKERS=1 S_SESSION=per-client
  run_load "http://127.0.0.1:$P_GW_FULL/mcp" fx__echo $LOAD_CPU "$GW_FULL" "$FX_PID" "${CLOSED[@]}" "${KIB[@]}"
  S_TARGET=gateway-obs-off
  run_load "http://127.0.0.1:$P_GW_BARE/mcp" fx__echo $LOAD_CPU "$GW_BARE" "$FX_PID" "${CLOSED[@]}" "${KIB[@]}"
  S_TARGET=gateway-auth
  run_load "http://127.0.0.1:$P_GW_AUTH/mcp" fx__echo $LOAD_CPU "$GW_AUTH" "$FX_PID" "${CLOSED[@]}" "${KIB[@]}" \
    --header "Authorization: Bearer $PERF_KEY"
  S_TARGET=gateway-guard
  run_load "http://127.0.0.1:$P_GW_GUARD/mcp" fx__echo $LOAD_CPU "$GW_GUARD" "$FX_PID" "${CLOSED[@]}" "${KIB[@]}"
done
S_REP=1

# ================================================================ 2. payload sizes
phase "payloads (closed loop, pinned)"
for size in 128 16384 262144; do
  P=(--payload-bytes "$size" --result-bytes "$size")
  S_SCEN=payload-$size
  S_TARGET=direct S_DRIVER=uring S_WORKERS=- S_SESSION=-
  run_load "http://127.0.0.1:$P_FX/mcp" echo $LOAD_CPU "" "$FX_PID" "${CLOSED[@]}" "${P[@]}"
  S_TARGET=floor S_WORKERS=1
  run_load "http://127.0.0.1:$P_FLOOR_U/mcp" echo $LOAD_CPU "$FLOOR_U" "$FX_PID" "${CLOSED[@]}" "${P[@]}"
  S_TARGET=gateway S_SESSION=per-client
  run_load "http://127.0.0.1:$P_GW_U/mcp" fx__echo $LOAD_CPU "$GW_U" "$FX_PID" "${CLOSED[@]}" "${P[@]}"
done

# ================================================================ 3. open loop at 50% of saturation
# Saturation of the gateway = its median closed-loop calls/s in `core` (the gateway alone on
# its core, load and fixture on the other). The rate at which its one core would be fully busy,
# 1e6 / (median gateway CPU µs per call), is recorded beside it. Open-loop calls cost every
# process more CPU than closed-loop ones (no batching, a wake-up per request), and load +
# fixture share one core: at 50% of the CPU-bound figure that core saturates on a busy machine.
# The open-loop runs use fresh servers under $OPEN_SCHED (default SCHED_FIFO): at 50% load
# they leave the rest of each CPU to other work, and a woken process does not wait for another
# task's time slice, which would otherwise dominate the tail on a busy machine. (Under FIFO a
# CPU whose real-time tasks use more than 95% of it is throttled for the rest of each second:
# 50 ms stalls. The run reports the load+fixture core's use so that this can be checked.)
phase "open loop at 50% of gateway saturation"
OPEN_SCHED=${PERF_SCHED_OPEN:-fifo}
CPU_SAT=$(python3 - "$INDEX" <<'PYEOF'
import json, statistics, sys
v = []
for l in open(sys.argv[1]):
    r = l.rstrip("\n").split("\t")
    if r[1] == "core" and r[2] == "gateway" and r[3] == "uring" and r[5] == "per-client":
        try:
            j = json.load(open(r[10]))
            v += [c["us_per_req"] for c in j["cpu"] if str(c.get("pid")) == r[8]]
        except Exception:
            pass
print(int(1e6 / statistics.median(v)) if v else 0)
PYEOF
)
SAT=$(median_calls core gateway uring per-client)
RATE=$((SAT / 2))
[ "$RATE" -gt 100 ] || RATE=1000
{
  echo "open_rate=$RATE"
  echo "gateway_saturation=$SAT"
  echo "gateway_cpu_bound_calls=$CPU_SAT"
  echo "open_sched=$OPEN_SCHED"
} >>"$W/meta.env"
SAVED_NICE=("${NICE[@]}")
case $OPEN_SCHED in
fifo) NICE=(chrt -f 10) ;;
*) NICE=(nice -n -20) ;;
esac
P_FX_O=19140 P_FLOOR_O=19141 P_GW_O=19142
start_fixture $P_FX_O $FIX_CPU
FX_O=$LAST_PID
start_floor $P_FLOOR_O $SUT_CPU uring 1 $P_FX_O
FLOOR_O=$LAST_PID
start_gateway open $P_GW_O $SUT_CPU 1 uring per-client $P_FX_O
GW_O=$LAST_PID
S_PIN="load+fixture cpu$LOAD_CPU, sut cpu$SUT_CPU, ${NICE[*]}"
OPEN=(-c "$CONNS" -d "$((DUR + 1))" -w "$WARM" --rate "$RATE")
for rep in $(seq 1 "$REPS"); do
  S_REP=$rep S_SCEN=open-50
  S_TARGET=direct S_DRIVER=uring S_WORKERS=- S_SESSION=-
  run_load "http://127.0.0.1:$P_FX_O/mcp" echo $LOAD_CPU "" "$FX_O" "${OPEN[@]}" "${KIB[@]}"
  S_TARGET=floor S_WORKERS=1
  run_load "http://127.0.0.1:$P_FLOOR_O/mcp" echo $LOAD_CPU "$FLOOR_O" "$FX_O" "${OPEN[@]}" "${KIB[@]}"
  S_TARGET=gateway S_SESSION=per-client
  run_load "http://127.0.0.1:$P_GW_O/mcp" fx__echo $LOAD_CPU "$GW_O" "$FX_O" "${OPEN[@]}" "${KIB[@]}"
done
S_REP=1
stop_pid "$GW_O"; stop_pid "$FLOOR_O"
stop_pid "$FX_O"
NICE=("${SAVED_NICE[@]}")
S_PIN="load+fixture cpu$LOAD_CPU, sut cpu$SUT_CPU"

# ================================================================ 4. profile (perf record, callgrind)
if [ "$PROFILE_ON" = 1 ]; then
  phase "profile: perf record on the gateway under load"
  S_SCEN=profile S_TARGET=gateway S_DRIVER=uring S_WORKERS=1 S_SESSION=per-client S_NOTE="perf record running"
  run_load "http://127.0.0.1:$P_GW_U/mcp" fx__echo $LOAD_CPU "$GW_U" "$FX_PID" -c "$CONNS" -d 5 -w 0.5 "${KIB[@]}" &
  LOADER=$!
  sleep 1.5
  perf record -F 999 --call-graph dwarf,16384 -p "$GW_U" -o "$W/perf.data" -- sleep 3 \
    >"$W/log/perf-record.log" 2>&1 || log "perf record failed: $(tail -2 "$W/log/perf-record.log")"
  wait $LOADER || true
  S_NOTE=""
  N_RUN=$((N_RUN + 1)) # the background run_load numbered itself in a subshell
  if [ -s "$W/perf.data" ]; then
    {
      echo "# perf record -F 999 --call-graph dwarf -p <mcpgw> -- sleep 3"
      echo "# gateway: 1 worker, io_uring, per-client sessions, pinned to cpu$SUT_CPU; load: $CONNS connections, 1 KiB"
      echo "# top functions by self time (kernel [k] and user [.]), cpu-clock samples"
      perf report -i "$W/perf.data" --no-children --stdio --sort dso,symbol -g none --percent-limit 0.4 2>/dev/null |
        grep -vE '^#|^$' | sed -E 's/[ -]*$//' | head -40
      echo
      echo "# share by object (kernel, libc, mcpgw)"
      perf report -i "$W/perf.data" --no-children --stdio --sort dso -g none 2>/dev/null |
        grep -vE '^#|^$' | sed -E 's/[ -]*$//' | head -8
    } >"$OUT/profile-perf.txt"
    if [ -x "$TOOLS_BIN/inferno-collapse-perf" ] && [ -x "$TOOLS_BIN/inferno-flamegraph" ]; then
      perf script -i "$W/perf.data" 2>/dev/null | "$TOOLS_BIN/inferno-collapse-perf" >"$W/folded.txt" &&
        "$TOOLS_BIN/inferno-flamegraph" --minwidth 0.5 \
          --title "mcpgw tools/call 1 KiB, 1 worker io_uring (perf, cpu-clock, dwarf)" \
          <"$W/folded.txt" >"$OUT/flamegraph.svg" || log "flame graph failed"
    else
      log "inferno not found in $TOOLS_BIN: no flame graph (cargo install inferno --root ${TOOLS_BIN%/bin})"
    fi
  fi

  if ! grep -q 'perf_stat_instructions=not supported' "$W/meta.env"; then
    phase "profile: perf stat -e instructions (gateway and floor under load)"
    # Only where the machine exposes hardware counters (not on this project's VM, where the
    # callgrind count below is the repeatable number).
    for t in gateway floor; do
      if [ $t = gateway ]; then tp=$GW_U port=$P_GW_U tool=fx__echo; else tp=$FLOOR_U port=$P_FLOOR_U tool=echo; fi
      S_SCEN=perf-stat S_TARGET=$t S_DRIVER=uring S_WORKERS=1 S_SESSION=-
      run_load "http://127.0.0.1:$port/mcp" $tool $LOAD_CPU "$tp" "$FX_PID" -c "$CONNS" -d 5 -w 0.5 "${KIB[@]}" &
      LOADER=$!
      sleep 1.5
      perf stat -x, -e instructions,cycles -p "$tp" -o "$W/perf-stat-$t.csv" -- sleep 3 2>/dev/null || true
      wait $LOADER || true
      N_RUN=$((N_RUN + 1))
    done
  fi

  phase "profile: callgrind instructions per call (gateway vs floor)"
  # Valgrind runs the process about 50x slower and serializes its threads; it counts user-space
  # instructions only (kernel work, io_uring's included, is not counted). The count is
  # repeatable where the machine has no hardware counters (perf stat -e instructions).
  : >"$W/callgrind.tsv"
  cg_run() { # NAME PORT TOOL CMD...
    local name=$1 port=$2 tool=$3
    shift 3
    wait_port_free "$port"
    start_bg "$W/log/cg-$name.log" taskset -c $SUT_CPU valgrind --tool=callgrind \
      --callgrind-out-file="$W/cg-$name.%p.out" "$@"
    local pid=$LAST_PID
    wait_port_open "$port" 600 || { log "callgrind $name did not start"; return 0; }
    sleep 1
    taskset -c $LOAD_CPU "$BIN/mcpgw-load" --url "http://127.0.0.1:$port/mcp" --tool "$tool" -c 4 -n 2000 -w 0 \
      -q "${KIB[@]}" >"$W/log/cg-$name-warm.txt" 2>&1 || true
    callgrind_control -z "$pid" >/dev/null 2>&1 || true
    taskset -c $LOAD_CPU "$BIN/mcpgw-load" --url "http://127.0.0.1:$port/mcp" --tool "$tool" -c 4 -n 10000 -w 0 \
      -q "${KIB[@]}" --json "$W/json/cg-$name.json" >"$W/log/cg-$name-load.txt" 2>&1 || true
    callgrind_control -d "$pid" >/dev/null 2>&1 || true
    sleep 1
    local dump
    dump=$(ls -t "$W"/cg-"$name".*.out.* 2>/dev/null | head -1 || true)
    if [ -n "$dump" ]; then
      echo -e "$name\t$dump\t$W/json/cg-$name.json" >>"$W/callgrind.tsv"
    else
      log "callgrind $name: no dump"
    fi
    stop_pid "$pid"
  }
  cgcfg=$W/cfg/callgrind.toml
  gw_config "$cgcfg" $P_CG 1 uring per-client $P_FX
  cg_run gateway $P_CG fx__echo "$BIN/mcpgw" run --config "$cgcfg"
  cg_run floor $P_CG echo "$BIN/mcpgw-floor" --listen "127.0.0.1:$P_CG" --upstream "127.0.0.1:$P_FX" --driver uring
  cg_run fixture $P_CG echo "$BIN/mcpgw-fixture" --listen "127.0.0.1:$P_CG"
fi

# Pinned servers are no longer needed.
stop_pid "$GW_U"; stop_pid "$GW_E"; stop_pid "$GW_SH"; stop_pid "$FLOOR_U"; stop_pid "$FLOOR_E"

# ================================================================ 5. workers: 1 vs 2, unpinned
phase "workers 1 vs 2 (unpinned: every process may use both cores)"
S_PIN="unpinned (cpus 0-1)"
ALL=0-1
for wk in 1 2; do
  start_gateway "uring-w$wk" $P_GW_W $ALL "$wk" uring per-client $P_FX
  gwp=$LAST_PID
  start_floor $P_FLOOR_W $ALL uring "$wk"
  flp=$LAST_PID
  for rep in $(seq 1 "$REPS"); do
    S_REP=$rep S_SCEN=workers S_DRIVER=uring S_WORKERS=$wk
    S_TARGET=gateway S_SESSION=per-client
    run_load "http://127.0.0.1:$P_GW_W/mcp" fx__echo $ALL "$gwp" "$FX_PID" "${CLOSED[@]}" "${KIB[@]}"
    S_TARGET=floor S_SESSION=-
    run_load "http://127.0.0.1:$P_FLOOR_W/mcp" echo $ALL "$flp" "$FX_PID" "${CLOSED[@]}" "${KIB[@]}"
  done
  stop_pid "$gwp"
  stop_pid "$flp"
done
S_REP=1
S_PIN="load+fixture cpu$LOAD_CPU, sut cpu$SUT_CPU"

# ================================================================ 6. tools/list at 10 and 10,000 tools
phase "tools/list at 10 and 10000 tools"
# The fixtures run on the gateway's core: a list's cost is mostly the kernel's, and it
# depends on whether the reader (the load generator, CPU 0) shares the writer's core, so the
# direct runs are measured where the gateway runs (`perf/lists.sh` measures both placements).
# The gateways serve lists from their snapshot: their fixture is idle while they are loaded.
start_fixture $P_FX10 $SUT_CPU --tools 9
FX10=$LAST_PID
start_fixture $P_FX10K $SUT_CPU --tools 9999
FX10K=$LAST_PID
start_gateway list10 $P_GW10 $SUT_CPU 1 uring per-client $P_FX10 "" 10
GW10=$LAST_PID
start_gateway list10k $P_GW10K $SUT_CPU 1 uring per-client $P_FX10K "" 10000
GW10K=$LAST_PID
LIST=(-m list=100 -c 1 -d "$DUR" -w "$WARM")
S_PIN="load cpu$LOAD_CPU, fixture+sut cpu$SUT_CPU"
for n in 10 10000; do
  if [ $n = 10 ]; then fxp=$FX10 fport=$P_FX10 gwp=$GW10 gport=$P_GW10; else fxp=$FX10K fport=$P_FX10K gwp=$GW10K gport=$P_GW10K; fi
  S_SCEN=tools-list-$n S_DRIVER=uring
  S_TARGET=direct S_WORKERS=- S_SESSION=-
  run_load "http://127.0.0.1:$fport/mcp" echo $LOAD_CPU "" "$fxp" "${LIST[@]}"
  S_TARGET=gateway S_WORKERS=1 S_SESSION=per-client
  run_load "http://127.0.0.1:$gport/mcp" echo $LOAD_CPU "$gwp" "$fxp" "${LIST[@]}"
done
for p in $GW10 $GW10K $FX10 $FX10K; do stop_pid "$p"; done
S_PIN="load+fixture cpu$LOAD_CPU, sut cpu$SUT_CPU"

# ================================================================ 7. idle sessions
phase "idle sessions (RSS)"
: >"$W/idle.tsv"
idle_run() { # LABEL SESSIONS MODE [extra args]
  local label=$1 n=$2 mode=$3
  shift 3
  start_gateway "idle-$label" $P_GW_IDLE $ALL 2 uring per-client $P_FX
  local gwp=$LAST_PID rc=0
  python3 "$PERF/idle_sessions.py" --url "http://127.0.0.1:$P_GW_IDLE/mcp" --pid "$gwp" --sessions "$n" \
    --mode "$mode" --label "$label" --out "$W/json/idle-$label.json" "$@" >"$W/log/idle-$label.txt" 2>&1 || rc=$?
  log "  idle $label: $(cat "$W/log/idle-$label.txt" | tail -1 | cut -c1-240)"
  echo -e "$label\t$W/json/idle-$label.json\t$rc" >>"$W/idle.tsv"
  stop_pid "$gwp"
}
idle_run 10k 10000 reuse
idle_run 100k 100000 reuse
idle_run 10k-called 10000 reuse --call fx__echo
idle_run 10k-conn 10000 hold
echo "idle_note=hold mode (one open connection per session) is limited by RLIMIT_NOFILE=$(ulimit -n) (hard limit; raising it is not permitted here)" >>"$W/meta.env"

# ================================================================ 8. stdio upstream + peers
: >"$W/peers.tsv"
peer_status() { echo -e "$1\t$2\t$3" >>"$PEERS_TSV"; } # NAME STATUS DETAIL

# Same load for every row of a peer comparison: PEER_CONNS connections, closed loop, 1 KiB.
PEER_CONNS=4
PEER_DUR=$DUR
# peer_load NAME URL TOOL PID FIX_PID [args]: warm-up run, then a measured run with the CPU of
# the process tree (proxy + stdio children) sampled around it.
peer_load() {
  local name=$1 url=$2 tool=$3 pid=$4 fix=$5
  shift 5
  taskset -c $LOAD_CPU "${NICE[@]}" "$BIN/mcpgw-load" --url "$url" --tool "$tool" -c $PEER_CONNS -d 2 -w 0 -q \
    "$@" >"$W/log/peer-$name-warm.txt" 2>&1 || true
  local t0 t1
  t0=$(tree_ticks "$pid")
  S_NOTE="tree_ticks_start=$t0"
  run_load "$url" "$tool" $LOAD_CPU "$pid" "$fix" -c $PEER_CONNS -d "$PEER_DUR" -w 0 "$@"
  t1=$(tree_ticks "$pid")
  # Patch the tree CPU into the index row just written (the note column).
  sed -i "\$s/tree_ticks_start=$t0\t/tree_cpu_s=$(python3 -c "print(($t1-$t0)/$CLK_TCK)")\t/" "$INDEX"
  S_NOTE=""
}

if [ "$PEERS_ON" = 1 ]; then
  phase "peers: install (cached in $PEERS_DIR)"
  mkdir -p "$PEERS_DIR"
  pip_peer() { # VENV PACKAGE VERSION
    local venv=$PEERS_DIR/$1
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    if [ "$("$venv/bin/python" -m pip show "$2" 2>/dev/null | sed -n 's/^Version: //p')" != "$3" ]; then
      "$venv/bin/python" -m pip install -q --disable-pip-version-check "$2==$3"
    fi
  }
  CF_OK=1 MP_OK=1 SG_OK=1
  pip_peer cf-venv mcp-contextforge-gateway "$CF_VERSION" >"$W/log/install-cf.log" 2>&1 || { CF_OK=0; peer_status contextforge install-failed "$(tail -3 "$W/log/install-cf.log" | tr '\n\t' '  ')"; }
  pip_peer proxy-venv mcp-proxy "$MCP_PROXY_VERSION" >"$W/log/install-mcp-proxy.log" 2>&1 || { MP_OK=0; peer_status mcp-proxy install-failed "$(tail -3 "$W/log/install-mcp-proxy.log" | tr '\n\t' '  ')"; }
  (mkdir -p "$PEERS_DIR/sg" && cd "$PEERS_DIR/sg" && { [ -f package.json ] || npm init -y >/dev/null; } &&
    { [ "$(node -p 'require("./node_modules/supergateway/package.json").version' 2>/dev/null)" = "$SUPERGATEWAY_VERSION" ] ||
      npm install --no-audit --no-fund "supergateway@$SUPERGATEWAY_VERSION"; }) >"$W/log/install-supergateway.log" 2>&1 ||
    { SG_OK=0; peer_status supergateway install-failed "$(tail -3 "$W/log/install-supergateway.log" | tr '\n\t' '  ')"; }
  {
    echo "peer_contextforge=$("$PEERS_DIR/cf-venv/bin/python" -m pip show mcp-contextforge-gateway 2>/dev/null | sed -n 's/^Version: //p')"
    echo "peer_mcp_proxy=$("$PEERS_DIR/proxy-venv/bin/python" -m pip show mcp-proxy 2>/dev/null | sed -n 's/^Version: //p')"
    echo "peer_mcp_proxy_mcp_sdk=$("$PEERS_DIR/proxy-venv/bin/python" -m pip show mcp 2>/dev/null | sed -n 's/^Version: //p')"
    echo "peer_contextforge_mcp_sdk=$("$PEERS_DIR/cf-venv/bin/python" -m pip show mcp 2>/dev/null | sed -n 's/^Version: //p')"
    echo "peer_supergateway=$(cd "$PEERS_DIR/sg" 2>/dev/null && node -p 'require("./node_modules/supergateway/package.json").version' 2>/dev/null)"
  } >>"$W/meta.env"
fi

phase "stdio upstream: mcpgw vs mcp-proxy vs supergateway (all fronting 'mcpgw demo-server')"
S_SCEN=peers-stdio S_DRIVER=- S_WORKERS=- S_SESSION=- S_PIN="load cpu$LOAD_CPU; proxy and its stdio child cpu$SUT_CPU"
PK=(--payload-bytes 1024) # the demo echo takes `text` only and returns it
cat >"$W/cfg/stdio.toml" <<EOF
[gateway]
listen = "127.0.0.1:$P_GW_STDIO"
workers = 1
driver = "uring"
idle_timeout_ms = 600000

[[upstream]]
name = "demo"
transport = "stdio"
command = "$BIN/mcpgw"
args = ["demo-server"]
EOF
wait_port_free $P_GW_STDIO
start_bg "$W/log/gw-stdio.log" taskset -c $SUT_CPU "${NICE[@]}" "$BIN/mcpgw" run --config "$W/cfg/stdio.toml"
gwp=$LAST_PID
if wait_log "$W/log/gw-stdio.log" 'catalog published.*upstreams_up=1' "$gwp"; then
  S_TARGET=mcpgw S_DRIVER=uring S_WORKERS=1 S_SESSION="stdio shared child"
  peer_load mcpgw "http://127.0.0.1:$P_GW_STDIO/mcp" demo__echo "$gwp" "" "${PK[@]}"
  peer_status mcpgw-stdio ok "1 worker, io_uring, one shared demo-server child"
fi
stop_pid "$gwp"

if [ "$PEERS_ON" = 1 ] && [ "$MP_OK" = 1 ]; then
  wait_port_free $P_MCPPROXY
  start_bg "$W/log/mcp-proxy.log" taskset -c $SUT_CPU "${NICE[@]}" "$PEERS_DIR/proxy-venv/bin/mcp-proxy" \
    --host 127.0.0.1 --port $P_MCPPROXY --log-level WARNING -- "$BIN/mcpgw" demo-server
  mpp=$LAST_PID
  if wait_port_open $P_MCPPROXY 300; then
    sleep 1
    S_TARGET=mcp-proxy S_DRIVER=asyncio S_WORKERS=1 S_SESSION="stateful (default), one stdio child"
    peer_load mcp-proxy "http://127.0.0.1:$P_MCPPROXY/mcp" echo "$mpp" "" "${PK[@]}"
    peer_status mcp-proxy ok "mcp-proxy --host 127.0.0.1 --port $P_MCPPROXY --log-level WARNING -- mcpgw demo-server (streamable HTTP at /mcp, stateful default, no auth)"
  else
    peer_status mcp-proxy start-failed "$(tail -3 "$W/log/mcp-proxy.log" | tr '\n\t' '  ')"
  fi
  stop_pid "$mpp"
fi

if [ "$PEERS_ON" = 1 ] && [ "$SG_OK" = 1 ]; then
  wait_port_free $P_SUPERGW
  start_bg "$W/log/supergateway.log" taskset -c $SUT_CPU "${NICE[@]}" node "$PEERS_DIR/sg/node_modules/supergateway/dist/index.js" \
    --stdio "$BIN/mcpgw demo-server" --outputTransport streamableHttp --stateful --port $P_SUPERGW --logLevel none
  sgp=$LAST_PID
  if wait_port_open $P_SUPERGW 300; then
    sleep 1
    S_TARGET=supergateway S_DRIVER=node S_WORKERS=1 S_SESSION="stateful: one stdio child per session"
    peer_load supergateway "http://127.0.0.1:$P_SUPERGW/mcp" echo "$sgp" "" "${PK[@]}"
    peer_status supergateway ok "--stdio 'mcpgw demo-server' --outputTransport streamableHttp --stateful --port $P_SUPERGW --logLevel none (no auth; stateless mode would spawn a child per request)"
  else
    peer_status supergateway start-failed "$(tail -3 "$W/log/supergateway.log" | tr '\n\t' '  ')"
  fi
  stop_pid "$sgp"
fi

phase "HTTP upstream: mcpgw vs ContextForge (both fronting the fast fixture)"
S_SCEN=peers-http S_PIN="load+fixture cpu$LOAD_CPU, sut cpu$SUT_CPU"
start_gateway peers $P_GW_U $SUT_CPU 1 uring per-client $P_FX
gwp=$LAST_PID
S_TARGET=direct S_DRIVER=uring S_WORKERS=- S_SESSION=-
peer_load direct "http://127.0.0.1:$P_FX/mcp" echo "$FX_PID" "" "${KIB[@]}"
S_TARGET=mcpgw S_DRIVER=uring S_WORKERS=1 S_SESSION=per-client
peer_load mcpgw "http://127.0.0.1:$P_GW_U/mcp" fx__echo "$gwp" "$FX_PID" "${KIB[@]}"
stop_pid "$gwp"

# ContextForge settings: auth off for the benchmark (no token on the MCP endpoint, admin API
# open to register the fixture), rate limiting off, SQLite in a scratch dir, logs at ERROR.
cf_env=(
  JWT_SECRET_KEY=perf-only-jwt-secret-0123456789abcdef0123456789
  AUTH_ENCRYPTION_SECRET=perf-only-enc-secret-0123456789abcdef012345
  SSRF_ALLOW_LOCALHOST=true
  AUTH_REQUIRED=false
  ALLOW_UNAUTHENTICATED_ADMIN=true
  MCP_REQUIRE_AUTH=false
  MCP_CLIENT_AUTH_ENABLED=true
  RATE_LIMITING_ENABLED=false
  MCPGATEWAY_UI_ENABLED=false
  MCPGATEWAY_ADMIN_API_ENABLED=true
  CACHE_TYPE=memory
  LOG_LEVEL=ERROR
)
echo "peer_contextforge_env=${cf_env[*]}" | sed 's/SECRET=[^ ]*/SECRET=<random>/g; s/SECRET_KEY=[^ ]*/SECRET_KEY=<random>/g' >>"$W/meta.env"
cf_run() { # MODE(stateless|stateful)
  local mode=$1 dir=$W/cf-$1 stateful=false
  [ "$mode" = stateful ] && stateful=true
  mkdir -p "$dir"
  wait_port_free $P_CF
  start_bg "$W/log/cf-$mode.log" env -C "$dir" "${cf_env[@]}" USE_STATEFUL_SESSIONS=$stateful \
    DATABASE_URL="sqlite:///$dir/cf.db" taskset -c $SUT_CPU "${NICE[@]}" \
    "$PEERS_DIR/cf-venv/bin/mcpgateway" --host 127.0.0.1 --port $P_CF
  local cfp=$LAST_PID i code=000
  for i in $(seq 1 120); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_CF/health" || true)
    [ "$code" = 200 ] && break
    kill -0 "$cfp" 2>/dev/null || break
    sleep 1
  done
  if [ "$code" != 200 ]; then
    peer_status "contextforge-$mode" start-failed "health $code; $(tail -3 "$W/log/cf-$mode.log" | tr '\n\t' '  ' | cut -c1-300)"
    stop_pid "$cfp"
    return 0
  fi
  curl -s -X POST "http://127.0.0.1:$P_CF/gateways" -H 'Content-Type: application/json' \
    -d "{\"name\":\"fx\",\"url\":\"http://127.0.0.1:$P_FX/mcp\",\"transport\":\"STREAMABLEHTTP\",\"visibility\":\"public\"}" \
    >"$W/log/cf-$mode-register.json" || true
  if ! curl -s "http://127.0.0.1:$P_CF/tools" | grep -q '"name":"fx-echo"'; then
    peer_status "contextforge-$mode" register-failed "$(head -c 300 "$W/log/cf-$mode-register.json")"
    stop_pid "$cfp"
    return 0
  fi
  S_TARGET=contextforge S_DRIVER=uvicorn S_WORKERS=1 S_SESSION="USE_STATEFUL_SESSIONS=$stateful"
  peer_load "contextforge-$mode" "http://127.0.0.1:$P_CF/mcp" fx-echo "$cfp" "$FX_PID" "${KIB[@]}"
  peer_status "contextforge-$mode" ok "mcpgateway --host 127.0.0.1 --port $P_CF (uvicorn, 1 process), USE_STATEFUL_SESSIONS=$stateful, fixture registered with POST /gateways (transport STREAMABLEHTTP, visibility public), loaded at /mcp as tool fx-echo"
  stop_pid "$cfp"
}
if [ "$PEERS_ON" = 1 ] && [ "$CF_OK" = 1 ]; then
  cf_run stateless
  cf_run stateful
fi

stop_pid "$FX_PID"

# ================================================================ 9. results
phase results
T_END=$(date +%s)
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$W/meta.env"
echo "runtime_s=$((T_END - T_START))" >>"$W/meta.env"
python3 "$PERF/summarize.py" --work "$W" --out "$OUT"
log "done in $((T_END - T_START)) s: $OUT (scratch: $W)"
