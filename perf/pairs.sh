#!/usr/bin/env bash
# perf/pairs.sh: CPU per tools/call of gateway variants in interleaved rounds, as ratios to
# a reference measured in the same round.
#
#   perf/pairs.sh audit   # metrics + the audit log on ("full") vs both off ("off"); with
#                         # BASE_BIN=/path/to/old/release also an older build with both on
#   perf/pairs.sh era     # one gateway (metrics on), loaded by legacy-era clients (one MCP
#                         # session per connection, "legacy": the reference) and by MCP
#                         # 2026-07-28 clients (`mcpgw-load --stateless`, "stateless")
#   perf/pairs.sh stateless  # one gateway (metrics on) in front of a fixture of both eras
#                         # (`mcpgw-fixture --dual-era`: a 2026-07-28 client's requests pass
#                         # through untranslated): legacy clients ("legacy", the reference)
#                         # and 2026-07-28 ones ("stateless"), each also as one-call clients
#                         # (`--calls-per-session 1`: a new connection, and for legacy a new
#                         # session and its DELETE, per call: "legacy-1", "stateless-1")
#   perf/pairs.sh guard   # screening of every call (secrets and PII masked, injection
#                         # flagged: "screened") vs none ("plain"), both with metrics on; the
#                         # call's text is prose (perf/prose.txt, one email address in each
#                         # 1 KiB) and the echo returns it, so both directions are scanned
#
# ROUNDS (default 8); LOAD: the payload flags (default `--payload-bytes 1024 --result-bytes
# 1024`; guard: `--payload-bytes 1024 --text-file perf/prose.txt`). The fixture and the load generator run on CPU 0, every gateway (all its
# threads, the audit writer included) on CPU 1, one worker each. Each round runs `mcpgw-load
# -c 16 -d 4 -w 1 --payload-bytes 1024 --result-bytes 1024 --pid GW` for each variant in turn;
# the ratio is the gateway's CPU time per call (utime + stime of its process) against the
# reference's in the same round. Prints every round and the median.
set -euo pipefail
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/scratch/target-perf}
BIN=$CARGO_TARGET_DIR/release
W=${PERF_SCRATCH:-/work/scratch/perf-run}/pairs
ROUNDS=${ROUNDS:-8}
MODE=${1:-audit}
HERE=$(cd "$(dirname "$0")" && pwd)
if [ "$MODE" = guard ]; then
  LOAD=${LOAD:---payload-bytes 1024 --text-file $HERE/prose.txt}
else
  LOAD=${LOAD:---payload-bytes 1024 --result-bytes 1024}
fi
mkdir -p "$W"
rm -f "$W"/*.json "$W"/audit-*.jsonl
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
FIXTURE_FLAGS=""
if [ "$MODE" = stateless ]; then FIXTURE_FLAGS="--dual-era"; fi
# shellcheck disable=SC2086 # zero or one word
taskset -c 0 nice -n -20 "$BIN/mcpgw-fixture" --listen 127.0.0.1:19401 $FIXTURE_FLAGS >"$W/fx.log" 2>&1 &
pids+=($!)
sleep 0.5
gateway() { # NAME PORT BINDIR EXTRA-[gateway]-LINES [LOAD-FLAGS]
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
  echo "$1:$2:$!:${5:-}" >>"$W/gateways"
}
load_too() { # NAME LOAD-FLAGS: another load of the gateway listed last
  local last
  last=$(tail -1 "$W/gateways")
  IFS=: read -r _ port pid _ <<<"$last"
  echo "$1:$port:$pid:$2" >>"$W/gateways"
}
rm -f "$W/gateways"
case $MODE in
  audit)
    gateway full 19402 "$BIN" "metrics = true
[audit]
path = \"$W/audit-full.jsonl\""
    gateway off 19403 "$BIN" "metrics = false"
    if [ -n "${BASE_BIN:-}" ]; then
      gateway base 19404 "$BASE_BIN" "metrics = true
[audit]
path = \"$W/audit-base.jsonl\""
    fi
    ;;
  era)
    gateway legacy 19402 "$BIN" "metrics = true"
    load_too stateless --stateless
    ;;
  stateless)
    gateway legacy 19402 "$BIN" "metrics = true"
    load_too stateless --stateless
    load_too legacy-1 "--calls-per-session 1"
    load_too stateless-1 "--stateless --calls-per-session 1"
    ;;
  guard)
    gateway screened 19402 "$BIN" "metrics = true

[[guard.screen]]
secrets = \"mask\"
pii = \"mask\"
injection = \"flag\""
    gateway plain 19403 "$BIN" "metrics = true"
    ;;
  *) echo "unknown mode $MODE (audit, era, stateless, guard)" >&2; exit 2 ;;
esac
sleep 2
for round in $(seq 1 "$ROUNDS"); do
  while IFS=: read -r name port pid flags; do
    # shellcheck disable=SC2086 # flags and LOAD: zero or more words
    taskset -c 0 nice -n -20 "$BIN/mcpgw-load" --url "http://127.0.0.1:$port/mcp" --tool fx__echo \
      -c 16 -d 4 -w 1 -q $LOAD --pid "$pid" $flags \
      --json "$W/$name-$round.json" >/dev/null 2>&1
  done <"$W/gateways"
done
REF=off
if [ "$MODE" = era ] || [ "$MODE" = stateless ]; then REF=legacy; fi
if [ "$MODE" = guard ]; then REF=plain; fi
python3 - "$W" "$ROUNDS" "$REF" <<'PY'
import json, statistics, sys, os
w, rounds, ref = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names = [l.split(':')[0] for l in open(os.path.join(w, 'gateways'))]
def cpu(n, r):
    j = json.load(open(os.path.join(w, f'{n}-{r}.json')))
    return [c for c in j['cpu'] if c['name'] == 'mcpgw'][0]['us_per_req']
ratios = {n: [] for n in names if n != ref}
for r in range(1, rounds + 1):
    off = cpu(ref, r)
    row = [f'round {r}: {ref} {off:.2f} us/call']
    for n in ratios:
        c = cpu(n, r)
        ratios[n].append(c / off)
        row.append(f'{n} {c:.2f} ({c / off:.3f}x)')
    print(', '.join(row))
for n, rs in ratios.items():
    print(f'{n} / {ref}: median {statistics.median(rs):.3f}x (rounds {min(rs):.3f}-{max(rs):.3f})')
PY
if [ "$MODE" = audit ]; then wc -l "$W"/audit-*.jsonl; fi
