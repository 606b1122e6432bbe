#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test of the workspace
# (with cargo-nextest) against real servers the tests start themselves (a private nats-server
# per test, temp Delta tables). Builds once, in debug, into a target folder outside the clone; clippy with
# -D warnings, cargo-machete (unused dependencies) and cargo-deny (licenses, bans, sources,
# advisories: scripts/deny.sh) must pass before the tests run.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/adit/target}"
export CARGO_TERM_COLOR=never
cargo build --workspace --all-targets
# Lints: clippy with warnings as errors, and no unused dependency.
cargo clippy --workspace --all-targets -- -D warnings
command -v cargo-machete >/dev/null || cargo install cargo-machete --locked --version 0.9.2
cargo machete
# Supply chain: licenses, banned crates, sources and the RustSec advisories (deny.toml).
./scripts/deny.sh
# No two files of a crate import each other, directly or round a circle.
python3 scripts/import_cycles.py
# The book: its links and summary whole, built by mdBook without a warning. Its reference pages
# and shell sessions are tests below (tests/it/reference, tests/it/book.rs).
./scripts/book.sh
# Every test of the workspace in one queue (.config/nextest.toml: two at a time, the heavy
# multi-process tests taking turns); the workspace has no doc tests.
command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked
cargo nextest run --workspace --no-fail-fast "$@"
