#!/usr/bin/env bash
# perf/lists.sh: CPU per `tools/list` of 10,000 tools (one 1.3 MB page), the gateway against
# the fixture writing the same bytes, each measured where the other runs.
#
#   perf/lists.sh                 # 5 rounds of 4 s per target
#   BASE_BIN=/path/to/old/release perf/lists.sh   # also an older gateway build ("base")
#
# Targets, each loaded in turn in every round by `mcpgw-load -m list=100 -c 1 -d 4 -w 1`
# on CPU 0 (one connection, one session, back-to-back lists):
#   fixture-cpu1  `mcpgw-fixture --tools 9999` on CPU 1 (pre-serialized page, one write)
#   gateway-cpu1  the gateway (1 worker, page_size 20000) on CPU 1, fronting a fixture
#   fixture-cpu0  the fixture on CPU 0, the load generator's core (the matrix's placement)
#   gateway-cpu0  the gateway on CPU 0
#   base-cpu1     BASE_BIN's gateway on CPU 1, if given
# The CPU of a target is its process's utime + stime over the run, per list (the user and
# kernel split from /proc/PID/stat). A list moves 1.3 MB through loopback TCP; most of its
# cost is the kernel's, and that depends on whether the reader shares the writer's core, so
# each ratio is taken between targets on the same core in the same round.
# ROUNDS (default 5), DUR (default 4). Ports 19710-19715.
set -euo pipefail
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/scratch/target-perf}
BIN=$CARGO_TARGET_DIR/release
W=${PERF_SCRATCH:-/work/scratch/perf-run}/lists
ROUNDS=${ROUNDS:-5}
DUR=${DUR:-4}
mkdir -p "$W"
rm -f "$W"/*.json "$W"/targets
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
fixture() { # NAME CPU PORT
  taskset -c "$2" nice -n -20 "$BIN/mcpgw-fixture" --listen "127.0.0.1:$3" --tools 9999 >"$W/$1.log" 2>&1 &
  pids+=($!)
  echo "$1:$3:$!" >>"$W/targets"
}
gateway() { # NAME CPU PORT BINDIR
  cat >"$W/$1.toml" <<CFG
[gateway]
listen = "127.0.0.1:$3"
workers = 1
driver = "uring"
page_size = 20000
idle_timeout_ms = 600000

[[upstream]]
name = "fx"
transport = "http"
url = "http://127.0.0.1:19710/mcp"
session = "per-client"
CFG
  taskset -c "$2" nice -n -20 "$4/mcpgw" run --config "$W/$1.toml" >"$W/$1.log" 2>&1 &
  pids+=($!)
  echo "$1:$3:$!" >>"$W/targets"
}
fixture fixture-cpu1 1 19710
sleep 0.5
gateway gateway-cpu1 1 19711 "$BIN"
fixture fixture-cpu0 0 19712
gateway gateway-cpu0 0 19713 "$BIN"
if [ -n "${BASE_BIN:-}" ]; then gateway base-cpu1 1 19714 "$BASE_BIN"; fi
for log in "$W"/*-cpu?.log; do
  case $log in *gateway*|*base*)
    for _ in $(seq 1 150); do grep -q 'catalog published.*tools=10000' "$log" && break; sleep 0.2; done
    grep -q 'catalog published.*tools=10000' "$log" || { echo "no catalog in $log" >&2; exit 1; } ;;
  esac
done
for round in $(seq 1 "$ROUNDS"); do
  while IFS=: read -r name port pid; do
    before=$(awk '{print $14, $15}' "/proc/$pid/stat")
    taskset -c 0 nice -n -20 "$BIN/mcpgw-load" --url "http://127.0.0.1:$port/mcp" --tool echo \
      -m list=100 -c 1 -d "$DUR" -w 1 -q --pid "$pid" --json "$W/$name-$round.json" >/dev/null 2>&1
    after=$(awk '{print $14, $15}' "/proc/$pid/stat")
    echo "$before $after" >"$W/$name-$round.ticks"
  done <"$W/targets"
done
python3 - "$W" "$ROUNDS" <<'PY'
import json, os, statistics, sys
w, rounds = sys.argv[1], int(sys.argv[2])
names = [l.split(':')[0] for l in open(os.path.join(w, 'targets'))]
def cpu(n, r):
    j = json.load(open(os.path.join(w, f'{n}-{r}.json')))
    us = [c for c in j['cpu'] if c['pid'] is not None][0]['us_per_req']
    u0, s0, u1, s1 = map(int, open(os.path.join(w, f'{n}-{r}.ticks')).read().split())
    u, s = u1 - u0, s1 - s0
    return us, us * u / max(u + s, 1)
pairs = [('gateway-cpu1', 'fixture-cpu1'), ('gateway-cpu0', 'fixture-cpu0')]
if 'base-cpu1' in names:
    pairs.append(('gateway-cpu1', 'base-cpu1'))
ratios = {p: [] for p in pairs}
for r in range(1, rounds + 1):
    row = []
    for n in names:
        us, user = cpu(n, r)
        row.append(f'{n} {us:.0f} us (user {user:.0f})')
    for a, b in pairs:
        ratios[(a, b)].append(cpu(a, r)[0] / cpu(b, r)[0])
    print(f'round {r}: ' + ', '.join(row))
for (a, b), rs in ratios.items():
    print(f'{a} / {b}: median {statistics.median(rs):.3f}x (rounds {min(rs):.3f}-{max(rs):.3f})')
PY
