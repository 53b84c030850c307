#!/usr/bin/env bash
# perf/audit-pairs.sh: CPU per tools/call with metrics + the audit log on vs both off, in
# interleaved pairs (and, with BASE_BIN, a third gateway from another build with the audit
# log on, measured in the same rounds).
#
#   perf/audit-pairs.sh                 # 8 rounds, binaries from $CARGO_TARGET_DIR/release
#   BASE_BIN=/path/to/old/release perf/audit-pairs.sh
#
# The fixture and the load generator run on CPU 0, every gateway (all its threads, the audit
# writer included) on CPU 1, one worker each. Each round runs `mcpgw-load -c 16 -d 4 -w 1
# --payload-bytes 1024 --result-bytes 1024 --pid GW` against each gateway in turn; the ratio
# is the gateway's CPU time per call (utime + stime of its process) against the off one's in
# the same round. Prints every round and the median.
set -euo pipefail
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/scratch/target-perf}
BIN=$CARGO_TARGET_DIR/release
W=${PERF_SCRATCH:-/work/scratch/perf-run}/audit-pairs
ROUNDS=${ROUNDS:-8}
mkdir -p "$W"
rm -f "$W"/*.json "$W"/audit-*.jsonl
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
taskset -c 0 nice -n -20 "$BIN/mcpgw-fixture" --listen 127.0.0.1:19401 >"$W/fx.log" 2>&1 &
pids+=($!)
sleep 0.5
gateway() { # NAME PORT BINDIR EXTRA-[gateway]-LINES
  cat >"$W/$1.toml" <<CFG
[gateway]
listen = "127.0.0.1:$2"
workers = 1
driver = "uring"
idle_timeout_ms = 600000
$4

[[upstream]]
name = "fx"
transport = "http"
url = "http://127.0.0.1:19401/mcp"
CFG
  taskset -c 1 nice -n -20 "$3/mcpgw" run --config "$W/$1.toml" >"$W/$1.log" 2>&1 &
  pids+=($!)
  echo "$1:$2:$!" >>"$W/gateways"
}
rm -f "$W/gateways"
gateway full 19402 "$BIN" "metrics = true
[audit]
path = \"$W/audit-full.jsonl\""
gateway off 19403 "$BIN" "metrics = false"
if [ -n "${BASE_BIN:-}" ]; then
  gateway base 19404 "$BASE_BIN" "metrics = true
[audit]
path = \"$W/audit-base.jsonl\""
fi
sleep 2
for round in $(seq 1 "$ROUNDS"); do
  while IFS=: read -r name port pid; do
    taskset -c 0 nice -n -20 "$BIN/mcpgw-load" --url "http://127.0.0.1:$port/mcp" --tool fx__echo \
      -c 16 -d 4 -w 1 -q --payload-bytes 1024 --result-bytes 1024 --pid "$pid" \
      --json "$W/$name-$round.json" >/dev/null 2>&1
  done <"$W/gateways"
done
python3 - "$W" "$ROUNDS" <<'PY'
import json, statistics, sys, os
w, rounds = sys.argv[1], int(sys.argv[2])
names = [l.split(':')[0] for l in open(os.path.join(w, 'gateways'))]
def cpu(n, r):
    j = json.load(open(os.path.join(w, f'{n}-{r}.json')))
    return [c for c in j['cpu'] if c['name'] == 'mcpgw'][0]['us_per_req']
ratios = {n: [] for n in names if n != 'off'}
for r in range(1, rounds + 1):
    off = cpu('off', r)
    row = [f'round {r}: off {off:.2f} us/call']
    for n in ratios:
        c = cpu(n, r)
        ratios[n].append(c / off)
        row.append(f'{n} {c:.2f} ({c / off:.3f}x)')
    print(', '.join(row))
for n, rs in ratios.items():
    print(f'{n} / off: median {statistics.median(rs):.3f}x (rounds {min(rs):.3f}-{max(rs):.3f})')
PY
wc -l "$W"/audit-*.jsonl
