#!/usr/bin/env bash
# Installs everything needed to build, test and demo strata on Debian 12 / Ubuntu 22.04+.
#
# Idempotent: when every package is already installed it does nothing (and needs no root),
# so the other scripts call it on every run.
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build pkg-config clang-format
  # libraries strata links against
  libfuse3-dev liburing-dev libzstd-dev libsqlite3-dev libssl-dev libtomlplusplus-dev
  libcli11-dev libfmt-dev libspdlog-dev libsystemd-dev libargon2-dev libcurl4-openssl-dev
  # tests
  libgtest-dev libgmock-dev
  # runtime and tools used by tests, benchmarks and the demo
  fuse3 zstd sqlite3 fio gocryptfs attr acl python3
  # a real S3 server (single-node Ceph RGW) for the S3 tier tests: scripts/s3-server.sh
  ceph-mon ceph-osd radosgw ceph-common
)

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "installed" ]]; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "setup: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "setup: installing ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  echo "setup: installing packages needs root; run: sudo $0" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
echo "setup: done"
