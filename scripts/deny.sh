#!/usr/bin/env bash
# Supply chain, run by the test command: cargo-deny over the dependency tree (deny.toml) —
# licenses, banned crates, sources, and the advisories of the local copy of the RustSec
# database at ../shared/advisory-db. cargo-deny reads a database only as a git checkout under
# its db-path, named after its URL, so the copy is committed into one in a temp folder; nothing
# is fetched. Without the copy the advisory check says loudly that it did not run.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/tools.sh cargo-deny
# cargo-deny reads every platform's crates (cargo metadata); a build fetched only this one's.
cargo fetch --locked
cargo deny --offline --locked check --hide-inclusion-graph bans licenses sources
db=../shared/advisory-db
if [ ! -d "$db/crates" ]; then
  echo "deny.sh: THE ADVISORY CHECK DID NOT RUN: no copy of the RustSec database at $db" >&2
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The folder name cargo-deny gives the default database URL (https://github.com/rustsec/advisory-db).
repo="$tmp/advisory-db-3157b0e258782691"
cp -r "$db" "$repo"
git -C "$repo" init -q
git -C "$repo" add -A
git -C "$repo" -c user.name=adit -c user.email=adit@localhost commit -qm "local copy of the RustSec database"
sed "s|^db-path = .*|db-path = \"$tmp\"|" deny.toml > "$tmp/deny.toml"
cargo deny --offline --locked --config "$tmp/deny.toml" check --hide-inclusion-graph advisories
