#!/usr/bin/env bash
# perf/payload.sh: CPU per tools/call at one payload size, the floor proxy against gateway
# builds, in interleaved rounds (the ratio to the floor is taken within each round).
#
#   perf/payload.sh                              # 256 KiB each way, the build under test
#   PAYLOAD=16384 perf/payload.sh
#   BASE_BIN=/path/to/old/release perf/payload.sh   # an older gateway build beside it
#
# The fixture and the load generator run on CPU 0; the floor (`mcpgw-floor`, io_uring, one
# thread) and each gateway (one worker, io_uring, `session = "per-client"`) on CPU 1. Each
# round runs `mcpgw-load -c CONNS -d 4 -w 1 --payload-bytes P --result-bytes P` against each in
# turn (CONNS connections, default 4; the matrix uses 16). A target's CPU is its process's
# utime + stime per call (the user share and minor page faults from /proc/PID/stat). ROUNDS (default 5), DUR
# (default 4). Ports 19720-19732.
set -euo pipefail
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/scratch/target-perf}
BIN=$CARGO_TARGET_DIR/release
W=${PERF_SCRATCH:-/work/scratch/perf-run}/payload
P=${PAYLOAD:-262144}
ROUNDS=${ROUNDS:-5}
DUR=${DUR:-4}
CONNS=${CONNS:-4}
mkdir -p "$W"
rm -f "$W"/*.json "$W"/*.ticks "$W"/targets
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
taskset -c 0 nice -n -20 "$BIN/mcpgw-fixture" --listen 127.0.0.1:19720 >"$W/fixture.log" 2>&1 &
pids+=($!)
sleep 0.5
taskset -c 1 nice -n -20 "$BIN/mcpgw-floor" --listen 127.0.0.1:19721 --upstream 127.0.0.1:19720 \
  --driver uring --threads 1 >"$W/floor.log" 2>&1 &
pids+=($!)
echo "floor:19721:$!:echo" >>"$W/targets"
gateway() { # NAME PORT BINDIR
  cat >"$W/$1.toml" <<CFG
[gateway]
listen = "127.0.0.1:$2"
workers = 1
driver = "uring"
idle_timeout_ms = 600000

[[upstream]]
name = "fx"
transport = "http"
url = "http://127.0.0.1:19720/mcp"
session = "per-client"
CFG
  taskset -c 1 nice -n -20 "$3/mcpgw" run --config "$W/$1.toml" >"$W/$1.log" 2>&1 &
  pids+=($!)
  echo "$1:$2:$!:fx__echo" >>"$W/targets"
}
gateway gateway 19730 "$BIN"
if [ -n "${BASE_BIN:-}" ]; then gateway base 19731 "$BASE_BIN"; fi
sleep 2
for round in $(seq 1 "$ROUNDS"); do
  while IFS=: read -r name port pid tool; do
    before=$(awk '{print $14, $15, $10}' "/proc/$pid/stat")
    taskset -c 0 nice -n -20 "$BIN/mcpgw-load" --url "http://127.0.0.1:$port/mcp" --tool "$tool" \
      -c "$CONNS" -d "$DUR" -w 1 -q --payload-bytes "$P" --result-bytes "$P" --pid "$pid" \
      --json "$W/$name-$round.json" >/dev/null 2>&1
    after=$(awk '{print $14, $15, $10}' "/proc/$pid/stat")
    echo "$before $after" >"$W/$name-$round.ticks"
  done <"$W/targets"
done
python3 - "$W" "$ROUNDS" "$P" <<'PY'
import json, os, statistics, sys
w, rounds, p = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names = [l.split(':')[0] for l in open(os.path.join(w, 'targets'))]
def cpu(n, r):
    j = json.load(open(os.path.join(w, f'{n}-{r}.json')))
    us = [c for c in j['cpu'] if c['pid'] is not None][0]['us_per_req']
    u0, s0, f0, u1, s1, f1 = map(int, open(os.path.join(w, f'{n}-{r}.ticks')).read().split())
    return us, us * (u1 - u0) / max(u1 - u0 + s1 - s0, 1), (f1 - f0) / max(j['ok'], 1)
for r in range(1, rounds + 1):
    row = ', '.join(f'{n} {cpu(n, r)[0]:.1f} us (user {cpu(n, r)[1]:.1f}, {cpu(n, r)[2]:.1f} page faults)' for n in names)
    print(f'round {r}: {row}')
print(f'payload {p} bytes each way:')
for n in names[1:]:
    rs = [cpu(n, r)[0] / cpu('floor', r)[0] for r in range(1, rounds + 1)]
    med = statistics.median(cpu(n, r)[0] for r in range(1, rounds + 1))
    user = statistics.median(cpu(n, r)[1] for r in range(1, rounds + 1))
    print(f'{n} / floor: median {statistics.median(rs):.2f}x (rounds {min(rs):.2f}-{max(rs):.2f}); '
          f'CPU median {med:.1f} us per call, user {user:.1f} us')
PY
