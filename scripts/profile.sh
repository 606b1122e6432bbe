#!/usr/bin/env bash
# Where a bench's CPU goes: runs `adit bench ingest` or `adit bench pool` with the release
# binary BIN and, once the phase measured starts (the landing's drain of the backlog; the first
# round's miners submitting shares), samples the process with `perf record`; prints the bench's
# report, then the CPU by thread and the symbols with the most samples (self time).
#
#   scripts/profile.sh ingest target/release/adit /tmp/ingest [extra `bench ingest` arguments]
#   scripts/profile.sh pool target/release/adit /tmp/pool [extra `bench pool` arguments]
#
# Leaves OUT.txt (the report), OUT.perf (the samples, for `perf report -i`), OUT.threads and
# OUT.flat. Needs `perf` (Debian's linux-perf) and kernel.perf_event_paranoid ≤ 2 for your own
# processes.
set -euo pipefail
usage="usage: profile.sh ingest|pool BIN OUT [bench arguments]"
what=${1:?$usage}
bin=${2:?$usage}
out=${3:?$usage}
shift 3
case "$what" in
  ingest)
    args=(bench ingest --events 400000 --latency-for 3s --rounds 1)
    marker="pipeline drain" settle=0.3 length=2.5 ;;
  pool)
    args=(bench pool --threads 2 --connections 16 --shares 60 --rounds 1 --idle 0 --servers 1)
    marker="submitting through the TCP server" settle=0.5 length=5 ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
command -v perf >/dev/null || { echo "profile: perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
rm -f "$out.err"
"$bin" "${args[@]}" "$@" >"$out.txt" 2>"$out.err" &
pid=$!
until grep -q "$marker" "$out.err" 2>/dev/null; do
  kill -0 "$pid" 2>/dev/null || { cat "$out.err" >&2; exit 1; }
  sleep 0.05
done
sleep "$settle"
perf record -F 999 -g -o "$out.perf" -p "$pid" -- sleep "$length" >/dev/null 2>&1
wait "$pid"
cat "$out.txt"
echo "-- CPU by thread --"
perf report -i "$out.perf" --no-children -g none --sort comm --stdio 2>/dev/null \
  | grep "%" | head -12 | tee "$out.threads"
echo "-- symbols (self) --"
perf report -i "$out.perf" --no-children -g none --sort symbol --stdio 2>/dev/null \
  | grep "%" | cut -c1-160 | sed 's/  */ /g' | head -40 | tee "$out.flat"
