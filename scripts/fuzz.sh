#!/usr/bin/env bash
# The long run of the boundary property tests (issue 22): every `hostile_*` module of the
# crates' test binaries (`*/tests/it/hostile_*.rs`), in a release build, with ADIT_FUZZ_CASES cases per property (default 10 million),
# one module at a time; prints each target's time and inputs per second. CI runs the same
# targets with their small built-in case counts as part of `cargo test` (the regression gate);
# a failing case is shrunk and saved under the crate's `proptest-regressions/`, the corpus that
# every later run replays first. Commit it with the fix.
#   ./scripts/fuzz.sh [cases]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/adit/target}"
export ADIT_FUZZ_CASES="${1:-10000000}"
targets=$(ls */tests/it/hostile_*.rs)
# One release build of every crate's test binary, with the workspace's features (a `-p` build of
# one crate resolves other features and rebuilds DataFusion for it); each run below filters
# them to one module's tests (the binaries without it run none).
cargo test --release -q --workspace --test it --no-run
for file in $targets; do
  crate="adit-${file%%/*}"
  target="$(basename "$file" .rs)"
  started=$(date +%s.%N)
  cargo test --release -q --workspace --test it -- --test-threads 1 "$target::" 2>&1 | grep -v '^running 0 tests\|ok. 0 passed\|^$' | tail -n 3
  ended=$(date +%s.%N)
  properties=$(grep -c '^    fn ' "$file" || true)
  python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); n=int(sys.argv[3])*int(sys.argv[4]); print(f'{sys.argv[5]}: {n} inputs ({sys.argv[4]} properties) in {s:.0f} s, {n/s:.0f}/s, 0 failures')" "$started" "$ended" "$ADIT_FUZZ_CASES" "$properties" "$crate/$target"
done
