#!/usr/bin/env bash
# The one build both commands make (scripts/demo.sh, scripts/test.sh): every target of the
# workspace in the dev profile, with clippy's lints run by the compiler itself. Cargo hands
# adit's own crates to clippy-driver (RUSTC_WORKSPACE_WRAPPER), which is rustc plus clippy's
# lints and writes the same artifacts; `-D warnings` makes a lint fail the build. So clippy
# costs no second pass over the workspace (`cargo clippy` after `cargo build` checked every
# crate and every dependency again), and whichever command runs second compiles nothing.
#
# Run it to build (`./scripts/build.sh`), or source it and call `adit_build` to keep the
# settings exported: cargo nextest must see the same ones, or it compiles adit's crates again
# without the wrapper.

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/adit/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# clippy-driver from the toolchain cargo runs (rustup's proxy folder has none on some installs).
adit_clippy_driver() {
  local driver
  driver="$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver || true)"
  [ -n "$driver" ] && [ -x "$driver" ] && echo "$driver"
}

# `adit_build lint`: the lints must pass (the test command); `adit_build` alone builds without
# clippy when this toolchain has none (the demo), saying so.
adit_build() {
  local driver
  if driver="$(adit_clippy_driver)"; then
    export RUSTC_WORKSPACE_WRAPPER="$driver"
    # clippy-driver reads its own arguments from here, each followed by the separator.
    export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
  elif [ "${1:-}" = lint ]; then
    echo "build: clippy-driver not found; install clippy (rustup component add clippy)" >&2
    return 1
  else
    echo "build: clippy-driver not found; building without clippy's lints" >&2
  fi
  cargo build --workspace --all-targets
}

# Run rather than sourced: build, requiring the lints.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  cd "$(dirname "$0")/.."
  adit_build lint
fi
