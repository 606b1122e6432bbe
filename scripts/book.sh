#!/usr/bin/env bash
# Builds the book (docs/, mdBook) into $CARGO_TARGET_DIR/book and fails on any warning or error
# mdBook prints (a missing page, a broken include); scripts/check_docs.py has checked the links
# and the summary first. The reference pages and the shell sessions are checked by tests
# (tests/it/reference, tests/it/book.rs).
#
#     ./scripts/book.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${CARGO_TARGET_DIR:-$HOME/.cache/adit/target}/book}"
python3 scripts/check_docs.py
# setup.sh installs mdBook with cargo install: on PATH, or in cargo's own bin folder.
mdbook="$(command -v mdbook || echo "${CARGO_HOME:-$HOME/.cargo}/bin/mdbook")"
[ -x "$mdbook" ] || { echo "book: mdbook not found (./scripts/setup.sh installs it)" >&2; exit 1; }
log="$("$mdbook" build docs --dest-dir "$out" 2>&1)" || { echo "$log" >&2; exit 1; }
if grep -E '\b(WARN|ERROR)\b' <<<"$log" >&2; then
  echo "book: mdBook warned (above); the book must build clean" >&2
  exit 1
fi
echo "book: built into $out ($(find "$out" -name '*.html' | wc -l) pages)"
