#!/usr/bin/env bash
# Bounded fuzz smoke for CI: builds every target with libFuzzer's coverage instrumentation on
# the machine's stable Rust (no nightly, no cargo-fuzz, no sanitizer) and runs each one for
# SMOKE_SECS seconds (default 10) from its seed corpus in corpus/<target>/. New inputs go to
# a temporary directory, so the seeds stay as written. Exits non-zero at the first crash and
# keeps the crashing input in artifacts/<target>/.
#
# Needs: cargo + rustc (stable), a C++ compiler (libfuzzer-sys builds libFuzzer from source),
# network to crates.io on a fresh machine, and the root crate's `fuzzing` feature.
set -euo pipefail
cd "$(dirname "$0")"

secs=${SMOKE_SECS:-10}
host=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
# What `cargo fuzz build -s none` passes, less the nightly-only flags. With an explicit
# --target, RUSTFLAGS reach only the target's crates, not build scripts or proc macros.
export RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cllvm-args=-simplifycfg-branch-fold-threshold=0 \
-Cdebug-assertions -Coverflow-checks --cfg fuzzing"

echo "== fuzz smoke: build ($host)"
cargo build --release --target "$host" --bins

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
for src in fuzz_targets/*.rs; do
  t=$(basename "$src" .rs)
  mkdir -p "$work/$t" "artifacts/$t"
  log="$work/$t.log"
  if "$CARGO_TARGET_DIR/$host/release/$t" -max_total_time="$secs" -timeout=10 \
      -print_final_stats=1 -artifact_prefix="artifacts/$t/" "$work/$t" "corpus/$t" \
      >"$log" 2>&1; then
    passed=$((passed + 1))
    echo "fuzz smoke $t: ok, $(grep -m1 -E '^Done [0-9]+ runs' "$log")"
  else
    failed=$((failed + 1))
    echo "fuzz smoke $t: FAILED"
    tail -n 60 "$log"
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
