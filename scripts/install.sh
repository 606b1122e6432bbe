#!/usr/bin/env bash
# Installs a built adit: the binary, a config with every key (commented out, from
# docs/src/reference/adit.example.toml) and an environment file unless they exist, and the
# systemd units (deploy/systemd).
#
#   scripts/install.sh [--root DIR] [--prefix /usr/local] [--bin target/release/adit]
#
# --root installs into another filesystem root (a package's staging folder, or a test's
# temporary one); there no user is created and systemd is not told. Into / (as root) it creates
# the system user `adit` and runs `systemctl daemon-reload`; enable with
# `systemctl enable --now adit` (and `adit-worker@<name>` on worker machines).
set -euo pipefail
cd "$(dirname "$0")/.."

root=/
prefix=/usr/local
bin="${CARGO_TARGET_DIR:-target}/release/adit"
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="$2"; shift 2 ;;
    --prefix) prefix="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    *) echo "install.sh: unknown option $1 (see the header of scripts/install.sh)" >&2; exit 2 ;;
  esac
done
case "$prefix" in
  /*) ;;
  *) echo "install.sh: --prefix must be an absolute path, not $prefix" >&2; exit 2 ;;
esac
if [ ! -x "$bin" ]; then
  echo "install.sh: no adit binary at $bin; build one (cargo build --release) or pass --bin" >&2
  exit 1
fi

dest() { printf '%s%s' "${root%/}" "$1"; }

install -d -m 0755 "$(dest "$prefix/bin")" "$(dest /etc/systemd/system)"
install -d -m 0750 "$(dest /etc/adit)"
install -m 0755 "$bin" "$(dest "$prefix/bin/adit")"

# The config: every key of the example (docs/src/reference/adit.example.toml), commented out,
# so the defaults hold until a line is uncommented. An existing config is never overwritten.
config="$(dest /etc/adit/adit.toml)"
if [ ! -e "$config" ]; then
  {
    echo "# adit's configuration: every key with its default or an example, commented out."
    echo "# Uncomment and edit; see the book's configuration reference (docs/src/reference/config.md)."
    sed -e 's/^\([^#]\)/# \1/' docs/src/reference/adit.example.toml
  } >"$config"
  chmod 0640 "$config"
fi
envfile="$(dest /etc/adit/adit.env)"
if [ ! -e "$envfile" ]; then
  printf '# Environment of the adit service: ADIT_ROLES, ADIT_LOG, ADIT_* config keys.\n# ADIT_ROLES=pipelines,query\n' >"$envfile"
  chmod 0640 "$envfile"
fi

for unit in adit.service adit-worker@.service; do
  sed "s|@BINDIR@|$prefix/bin|g" "deploy/systemd/$unit" >"$(dest "/etc/systemd/system/$unit")"
  chmod 0644 "$(dest "/etc/systemd/system/$unit")"
done

if [ "$root" = "/" ]; then
  if ! id adit >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/adit --shell /usr/sbin/nologin adit
  fi
  chgrp adit /etc/adit /etc/adit/adit.toml /etc/adit/adit.env
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
  fi
fi
echo "install.sh: installed $prefix/bin/adit, /etc/adit and the units into $root" >&2
