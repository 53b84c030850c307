#!/usr/bin/env bash
# perf/inproc.sh: one tools/call through the whole gateway in one process
# (mcpgw::bench::Harness: the HTTP server loop, every pipeline phase, the HTTP upstream
# client, an in-memory MCP server; no socket, so no kernel time):
#
#   perf/inproc.sh                # all cases
#   CASES=legacy perf/inproc.sh   # one
#
# 1. heap allocations per call, counted by benches/alloc.rs's counting global allocator
#    over 10,000 calls after 1,000 warm-up calls;
# 2. user-space instructions per call, counted by callgrind on the main thread (where the
#    worker's pipeline, the client and the in-memory server run): two runs of the same
#    binary (N and 11 N calls after the warm-up), their difference divided by 10 N, so
#    start-up and warm-up cancel out. N = 1,000 (100 for legacy_256k). perf/cgdiff.py also
#    gives the figure without the clock source, whose count of reads under valgrind varies
#    from run to run (the rest does not); that is the figure to compare.
# The in-memory server's and client's own share is in both figures (small: see
# `memory_upstream_answer` in benches/call.rs). Timings: `cargo bench --features bench --bench call`.
set -euo pipefail
cd "$(dirname "$0")/.."
W=${PERF_SCRATCH:-/work/scratch/perf-run}/inproc
mkdir -p "$W"
BIN=$(cargo bench --no-run --features bench --bench alloc --message-format=json 2>/dev/null |
  python3 -c 'import json, sys
for m in map(json.loads, sys.stdin):
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "alloc":
        print(m["executable"])')
CASES=${CASES:-legacy stateless legacy_256k}
for c in $CASES; do
  "$BIN" --calls 10000 --case "$c"
done
for c in $CASES; do
  n=1000
  [ "$c" = legacy_256k ] && n=100
  for k in 1 11; do
    rm -f "$W/cg-$c-$k.out"*
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$W/cg-$c-$k.out" \
      "$BIN" --calls $((k * n)) --case "$c" >/dev/null 2>&1
  done
  # The main thread (the worker's pipeline, the client and the in-memory server).
  echo "$c: $(python3 perf/cgdiff.py "$W/cg-$c-1.out-01" "$W/cg-$c-11.out-01" $((10 * n))) (callgrind, $W/cg-$c-{1,11}.out-01)"
done
