#!/usr/bin/env bash
# The demo command: installs what adit needs, builds it, and runs `adit demo` (a simulated farm
# flowing through NATS JetStream and the pipelines into Delta tables, the SQL API on :8080).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# The very build the test command makes (scripts/build.sh: same targets, same compiler
# settings): running one script after the other compiles the workspace once.
# shellcheck source=build.sh
source scripts/build.sh
adit_build
exec "$CARGO_TARGET_DIR/debug/adit" demo "$@"
