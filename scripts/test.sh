#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test of the workspace
# against real servers the tests start themselves (a private nats-server per test, temp
# Delta tables). Builds once, in debug, into a target folder outside the clone.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/adit/target}"
export CARGO_TERM_COLOR=never
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast "$@"
