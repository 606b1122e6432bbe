#!/usr/bin/env bash
# The cargo tools the test command runs after its build, installed from crates.io where this
# machine lacks them: cargo-machete (unused dependencies), cargo-deny at the version deny.toml
# is written for (scripts/deny.sh) and cargo-nextest (the tests). Idempotent. The test command
# runs it beside the build, niced: on a fresh machine the three compile for minutes (cargo-deny
# alone about four), mostly on the core the build leaves idle while it compiles one large crate
# or links a test binary, so they no longer add their whole time to the run.
#
#     ./scripts/tools.sh [cargo-machete|cargo-deny|cargo-nextest]...   (all three by default)
set -euo pipefail
# Each install in its own temporary folder: the test command's target folder is the build's,
# and two cargo processes in one folder take turns on its lock.
unset CARGO_TARGET_DIR RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS

tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(cargo-machete cargo-deny cargo-nextest)
for tool in "${tools[@]}"; do
  case "$tool" in
    cargo-machete)
      command -v cargo-machete >/dev/null || cargo install cargo-machete --locked --version 0.9.2
      ;;
    cargo-deny)
      cargo deny --version 2>/dev/null | grep -q ' 0.20.2' ||
        cargo install cargo-deny --locked --version 0.20.2 --force
      ;;
    cargo-nextest)
      command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked
      ;;
    *)
      echo "tools.sh: no such tool: $tool (cargo-machete, cargo-deny or cargo-nextest)" >&2
      exit 2
      ;;
  esac
done
