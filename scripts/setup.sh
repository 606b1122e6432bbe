#!/usr/bin/env bash
# Installs what adit needs on a fresh Debian/Ubuntu machine: the Rust toolchain's C/C++ needs,
# cmake (RandomX), protoc (the cluster's gRPC code), nats-server, mosquitto (MQTT adapter tests),
# snmpd (Net-SNMP's agent, standing in for a rack PDU in the outlet-control test), monerod and monero-wallet-rpc
# (end-to-end mining and payment tests), DuckDB's Python package (the cross-check test) and
# moto's S3 server (the object-store test), aiosmtpd (the email notification test),
# Prometheus's promtool (the monitoring test), systemd-analyze (the install test), podman,
# podman-compose and mmdebstrap (the container test), Chromium with Python Playwright (the
# dashboard's headless-browser test; Debian's chromium, no browser download), and OpenLEADR's
# OpenADR 3.1 VTN (`cargo install openleadr-vtn`) with a PostgreSQL server for it (the 3.1
# demand-response test starts its own), and mdBook (the book in docs/). Idempotent: skips what
# is already there.
#
#     ./scripts/setup.sh          everything
#     ./scripts/setup.sh build    only what the build needs (the test command installs the rest
#                                 beside the build)
set -euo pipefail
# cargo installs below each build in a temporary folder of their own: the test command's target
# folder is the workspace build's, whose lock they would wait on.
unset CARGO_TARGET_DIR RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS

# `apt_install PACKAGE...`: Debian's packages, as root.
apt_install() {
  [ $# -gt 0 ] || return 0
  echo "setup: installing $*" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# The build's own needs: a C/C++ compiler, cmake (RandomX) and protoc (the cluster's gRPC code).
need_apt=()
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
command -v c++ >/dev/null 2>&1 || need_apt+=(build-essential)
if [ "${1:-}" = build ]; then
  apt_install "${need_apt[@]}"
  exit 0
fi
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need_apt+=(nats-server)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v snmpd >/dev/null 2>&1 || [ -x /usr/sbin/snmpd ] || need_apt+=(snmpd)
{ command -v monerod && command -v monero-wallet-rpc; } >/dev/null 2>&1 || need_apt+=(monero)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
# The container test: podman with runc and netavark, podman-compose, and mmdebstrap to build
# the base image from Debian's packages (no image registry is reachable).
for tool in podman podman-compose mmdebstrap runc; do
  command -v "$tool" >/dev/null 2>&1 || need_apt+=("$tool")
done
[ -x /usr/lib/podman/netavark ] || need_apt+=(netavark)
[ -x /usr/lib/podman/aardvark-dns ] || need_apt+=(aardvark-dns)
# netavark sets up a container network's firewall with iptables (a fresh machine has none:
# a build step's network then fails with "netavark: No such file or directory").
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || need_apt+=(iptables)
command -v objcopy >/dev/null 2>&1 || need_apt+=(binutils)
# The book's shell sessions (tests/it/book.rs) call curl, as a reader would.
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || need_apt+=(postgresql)
# openleadr-vtn builds Paho MQTT's C library and links OpenSSL.
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
[ -f /usr/include/openssl/ssl.h ] || need_apt+=(libssl-dev)

apt_install "${need_apt[@]}"

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust from your distribution or rustup first" >&2
  exit 1
fi

pip_install() {
  python3 -m pip install --quiet "$@" 2>/dev/null || python3 -m pip install --quiet --break-system-packages "$@"
}
if ! python3 -c "import duckdb" 2>/dev/null; then
  echo "setup: installing the duckdb Python package (DuckDB cross-check test)" >&2
  pip_install duckdb
fi
if ! python3 -c "import aiosmtpd" 2>/dev/null; then
  echo "setup: installing aiosmtpd (a real SMTP server for the email notification test)" >&2
  pip_install aiosmtpd
fi
if ! python3 -c "import moto.server, flask" 2>/dev/null; then
  echo "setup: installing moto's S3 server (object-store test)" >&2
  pip_install "moto[server]"
fi
# OpenLEADR's OpenADR 3.1 VTN (the 3.1 demand-response test). Not `--locked`: its lock file
# names crate versions the registry no longer serves. SQLX_OFFLINE: its queries are checked
# against the cache it ships, not a database.
if ! command -v openleadr-vtn >/dev/null 2>&1 && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/openleadr-vtn" ]; then
  echo "setup: installing openleadr-vtn 0.2.8 (a real OpenADR 3.1 VTN; a few minutes to build)" >&2
  SQLX_OFFLINE=true cargo install openleadr-vtn --version 0.2.8 --quiet \
    --no-default-features --features postgres,internal-oauth
fi
if ! python3 -c "import openleadr" 2>/dev/null; then
  echo "setup: installing openleadr (a real OpenADR 2.0b VTN for the demand-response test)" >&2
  pip_install openleadr
fi
if ! python3 -c "import psycopg" 2>/dev/null; then
  echo "setup: installing psycopg (a real PostgreSQL client for the wire protocol test)" >&2
  pip_install "psycopg[binary]"
fi
if ! python3 -c "import adbc_driver_flightsql.dbapi, pyarrow" 2>/dev/null; then
  echo "setup: installing the ADBC Flight SQL driver (a real Arrow Flight SQL client)" >&2
  pip_install adbc-driver-flightsql pyarrow
fi
if ! python3 -c "import playwright.sync_api" 2>/dev/null; then
  echo "setup: installing playwright (drives Debian's chromium in the dashboard test)" >&2
  pip_install playwright
fi
# mdBook builds the book (docs/) in the test command.
if ! command -v mdbook >/dev/null 2>&1 && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/mdbook" ]; then
  echo "setup: installing mdbook (builds the book in docs/)" >&2
  cargo install mdbook --locked --version 0.5.4 --quiet
fi
