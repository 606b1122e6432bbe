#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test of the workspace
# (with cargo-nextest) against real servers the tests start themselves (a private nats-server
# per test, temp Delta tables). Builds once, in debug, into a target folder outside the clone,
# with clippy's lints (-D warnings) run by the compiler in that same build (scripts/build.sh);
# cargo-machete (unused dependencies) and cargo-deny (licenses, bans, sources, advisories:
# scripts/deny.sh) must pass before the tests run. Each step's time is printed at its end and
# all of them at the close, so a CI log shows where the run's time went.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=build.sh
source scripts/build.sh

times=()
# `step NAME COMMAND...`: runs the command and records how long it took.
step() {
  local name="$1" started=$SECONDS
  shift
  "$@"
  times+=("$(printf '%5d s  %s' $((SECONDS - started)) "$name")")
  echo "test.sh: $name took $((SECONDS - started)) s" >&2
}
report() {
  local rc=$?
  echo "test.sh: where the time went (exit $rc):" >&2
  printf '  %s\n' "${times[@]}" >&2
}
trap report EXIT

# What the build itself needs (a C/C++ compiler, cmake, protoc); the rest is installed beside it.
step "setup for the build" ./scripts/setup.sh build
# No two files of a crate import each other, directly or round a circle (first: it takes a
# second, and a circle found after the build would have cost the build).
step "import cycles" python3 scripts/import_cycles.py
# Beside the build, niced so it keeps its pace: the rest of what the tests need
# (scripts/setup.sh: servers, clients, a browser, mdBook) and the cargo tools the steps after
# the build run (scripts/tools.sh). On a fresh machine apt's and pip's downloads wait on the
# network, not the cores, and the cargo installs take the core the build leaves idle while it
# compiles one large crate or links. Their log is shown once they end. (Run side by side
# rather than one after the other, the two cargo installs took more of the cores from the
# build than they saved: on one fresh machine the build had reached ballista-executor after
# 37 min against 24; 2026-12-01.)
prep_log="$(mktemp)"
{ nice -n 10 ./scripts/setup.sh && nice -n 10 ./scripts/tools.sh; } >"$prep_log" 2>&1 &
prep_pid=$!
# Waits for the setup and the tools, showing what they printed.
prepared() {
  local rc=0
  wait "$prep_pid" || rc=$?
  cat "$prep_log" >&2
  rm -f "$prep_log"
  [ "$rc" -eq 0 ] || echo "test.sh: the setup or the cargo tools failed (exit $rc)" >&2
  return "$rc"
}
# The build, clippy's lints included.
step build adit_build lint
step "setup and tools, past the build" prepared
# No unused dependency.
step machete cargo machete
# Supply chain: licenses, banned crates, sources and the RustSec advisories (deny.toml).
step deny ./scripts/deny.sh
# The book: its links and summary whole, built by mdBook without a warning. Its reference pages
# and shell sessions are tests below (tests/it/reference, tests/it/book.rs).
step book ./scripts/book.sh
# Every test of the workspace in one queue (.config/nextest.toml: four at a time, the heavy
# multi-process tests taking turns); the workspace has no doc tests. nextest builds nothing
# here: the build above made every test binary with the settings scripts/build.sh exported.
step tests cargo nextest run --workspace --no-fail-fast "$@"
