#!/usr/bin/env bash
# SQL latency through the HTTP API: the median of N runs of a few typical queries against the
# tables under TABLES, served by the adit binary BIN. Used to compare builds on the same data:
#   scripts/bench-sql.sh target/release/adit /path/to/tables [runs]
set -euo pipefail
bin="$1"; tables="$2"; runs="${3:-21}"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
nats_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
store=$(mktemp -d)
nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$store" >/dev/null 2>&1 &
nats_pid=$!
trap 'kill $adit_pid $nats_pid 2>/dev/null; rm -rf "$store"' EXIT
sleep 0.5
"$bin" query --tables "$tables" --listen "127.0.0.1:$port" --nats-url "nats://127.0.0.1:$nats_port" >/dev/null 2>&1 &
adit_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
queries=(
  "SELECT 1"
  "SELECT count(*) FROM energy_readings"
  "SELECT site, avg(power_w) FROM energy_readings GROUP BY site"
  "SELECT * FROM energy_readings WHERE machine = (SELECT min(machine) FROM energy_readings) ORDER BY ts DESC LIMIT 100"
  "SELECT machine, sum(energy_wh) AS e FROM machine_energy_1m GROUP BY machine ORDER BY e DESC LIMIT 5"
)
for q in "${queries[@]}"; do
  times=()
  for _ in $(seq "$runs"); do
    t=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --data-binary "$q" -H 'content-type: text/plain' "http://127.0.0.1:$port/api/v1/sql")
    [[ "${t%% *}" == 200 ]] || { echo "query failed ($t): $q" >&2; exit 1; }
    times+=("${t##* }")
  done
  median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]*1000}')
  printf '%8.1f ms  %s\n' "$median" "$q"
done
