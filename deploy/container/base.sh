#!/usr/bin/env bash
# Builds a Debian base image for adit's container from Debian's own packages, for hosts that
# reach Debian's mirrors but no image registry: a minimal bookworm with ca-certificates and
# nats-server (so the one image serves both services of compose.yaml), made by mmdebstrap and
# imported into podman as TAG (default localhost/adit-base:bookworm).
#   ./base.sh && BASE=localhost/adit-base:bookworm NATS_IMAGE=localhost/adit-base:bookworm podman-compose up -d
set -euo pipefail
tag="${1:-localhost/adit-base:bookworm}"
for tool in mmdebstrap podman; do
  command -v "$tool" >/dev/null || { echo "base.sh: $tool is missing (apt-get install $tool)" >&2; exit 2; }
done
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mmdebstrap --quiet --variant=minbase --include=ca-certificates,nats-server bookworm "$tmp/base.tar"
podman import --quiet --change 'CMD ["/bin/bash"]' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  "$tmp/base.tar" "$tag"
