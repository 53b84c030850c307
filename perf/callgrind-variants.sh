#!/usr/bin/env bash
# perf/callgrind-variants.sh: user-space instructions per tools/call of gateway variants,
# counted by callgrind (repeatable where the machine has no hardware counters).
#
#   perf/callgrind-variants.sh off metrics full guard
#
#   off      [gateway] metrics = false, no audit log
#   metrics  per-call metrics (the default)
#   full     metrics and the audit log
#   guard    metrics and [[guard.screen]] on every call (secrets + PII masked, injection flagged)
#   stateless  metrics, loaded by MCP 2026-07-28 clients (`mcpgw-load --stateless`: no
#            session, `_meta` and routing headers on every request); compare with metrics
#
# FIXTURE_FLAGS: extra flags of the fixture, e.g. `--dual-era` (it speaks 2026-07-28 too, so a
# stateless client's requests pass through untranslated).
#
# Uses the release binaries perf/run.sh builds ($CARGO_TARGET_DIR/release; build them first).
# The fixture and the load generator run on CPU 0, the gateway under callgrind on CPU 1 (all
# its threads counted, serialized). 2,000 warm-up calls, counters zeroed, then 10,000 calls of
# 1 KiB arguments and result over 4 connections; the count is that dump's total / calls.
# Valgrind hides SHA-NI from the program, so SHA-256 (the audit chain) runs its software path
# here: the audit figure is an upper bound for CPUs with SHA extensions.
set -euo pipefail
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/scratch/target-perf}
BIN=$CARGO_TARGET_DIR/release
W=${PERF_SCRATCH:-/work/scratch/perf-run}/callgrind-variants
mkdir -p "$W"
P_FX=19201 P_GW=19202
# shellcheck disable=SC2086 # FIXTURE_FLAGS: zero or more words
taskset -c 0 "$BIN/mcpgw-fixture" --listen 127.0.0.1:$P_FX ${FIXTURE_FLAGS:-} >"$W/fx.log" 2>&1 &
FX=$!
trap 'kill $FX 2>/dev/null || true' EXIT
sleep 1
load() { # CALLS [--json FILE]
  local n=$1
  shift
  taskset -c 0 "$BIN/mcpgw-load" --url "http://127.0.0.1:$P_GW/mcp" --tool fx__echo -c 4 -n "$n" \
    -w 0 -q --payload-bytes 1024 --result-bytes 1024 "$@" >/dev/null 2>&1 || true
}
variant() { # NAME EXTRA-[gateway]-LINES [LOAD-FLAG]
  local name=$1 flag=${3:-}
  cat >"$W/$name.toml" <<CFG
[gateway]
listen = "127.0.0.1:$P_GW"
workers = 1
driver = "uring"
idle_timeout_ms = 600000
drain_timeout_ms = 1000
$2

[[upstream]]
name = "fx"
transport = "http"
url = "http://127.0.0.1:$P_FX/mcp"
CFG
  rm -f "$W"/cg-"$name".*
  taskset -c 1 valgrind --tool=callgrind --callgrind-out-file="$W/cg-$name.%p.out" \
    "$BIN/mcpgw" run --config "$W/$name.toml" >"$W/gw-$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 600); do grep -q "mcpgw listening" "$W/gw-$name.log" && break; sleep 0.1; done
  # shellcheck disable=SC2086 # flag: zero or one word
  load 2000 $flag
  callgrind_control -z "$pid" >/dev/null 2>&1 || true
  # shellcheck disable=SC2086
  load 10000 $flag --json "$W/$name.json"
  sleep 0.5
  callgrind_control -d "$pid" >/dev/null 2>&1 || true
  sleep 1
  kill "$pid" 2>/dev/null || true
  sleep 3
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local ir ok
  ir=$(grep -h -m1 '^summary:' "$W"/cg-"$name".*.out.1 | awk '{s+=$2} END {print s+0}')
  ok=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['ok'])" "$W/$name.json")
  echo "$name: $ir instructions / $ok calls = $((ir / ok)) per call"
}
for v in "$@"; do
  case $v in
    off) variant off "metrics = false" ;;
    metrics) variant metrics "metrics = true" ;;
    full) variant full "metrics = true
[audit]
path = \"$W/audit.jsonl\"" ;;
    guard) variant guard "metrics = true
[[guard.screen]]
secrets = \"mask\"
pii = \"mask\"
injection = \"flag\"" ;;
    stateless) variant stateless "metrics = true" --stateless ;;
    *) echo "unknown variant $v (off, metrics, full, guard, stateless)" >&2; exit 2 ;;
  esac
done
