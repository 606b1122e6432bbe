#!/usr/bin/env bash
# Where the landing's CPU goes: runs `adit bench ingest` with the release binary BIN and, once
# the pipeline's drain of the backlog starts, samples the process with `perf record` for 2.5 s;
# prints the bench's report, then the symbols with the most samples (self time).
#
#   scripts/profile_ingest.sh target/release/adit /tmp/ingest [extra `bench ingest` arguments]
#
# Leaves OUT.txt (the report), OUT.perf (the samples, for `perf report -i`) and OUT.flat.
# Needs `perf` (Debian's linux-perf) and kernel.perf_event_paranoid ≤ 2 for your own processes.
set -euo pipefail
bin=${1:?usage: profile_ingest.sh BIN OUT [bench ingest arguments]}
out=${2:?usage: profile_ingest.sh BIN OUT [bench ingest arguments]}
shift 2
command -v perf >/dev/null || { echo "profile_ingest: perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
rm -f "$out.err"
"$bin" bench ingest --events 400000 --latency-for 3s --rounds 1 "$@" >"$out.txt" 2>"$out.err" &
pid=$!
until grep -q "pipeline drain" "$out.err" 2>/dev/null; do
  kill -0 "$pid" 2>/dev/null || { cat "$out.err" >&2; exit 1; }
  sleep 0.05
done
sleep 0.3
perf record -F 999 -g -o "$out.perf" -p "$pid" -- sleep 2.5 >/dev/null 2>&1
wait "$pid"
cat "$out.txt"
perf report -i "$out.perf" --no-children -g none --sort symbol --stdio 2>/dev/null \
  | grep "%" | cut -c1-160 | sed 's/  */ /g' | head -40 | tee "$out.flat"
