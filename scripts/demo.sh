#!/usr/bin/env bash
# The demo command: installs what adit needs, builds it, and runs `adit demo` (a simulated farm
# flowing through NATS JetStream and the pipelines into Delta tables, the SQL API on :8080).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/adit/target}"
# The very build the test command makes (same targets, so the same features): running one
# script after the other compiles the workspace once.
cargo build --workspace --all-targets
exec "$CARGO_TARGET_DIR/debug/adit" demo "$@"
