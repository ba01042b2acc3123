#!/usr/bin/env bash
# Installs the Debian packages riptide needs to build and test: clang and the BPF headers for the
# eBPF programs, DPDK 22.11 for the dpdk backend, libclang for bindgen, and the tools the tests and
# scripts use. Idempotent: packages already present are not reinstalled.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/install-deps.sh [--dry-run]
Installs riptide's build and test dependencies with apt-get (needs root).
  --dry-run   print the packages that would be installed and exit
USAGE
}

PACKAGES=(
  build-essential pkg-config clang llvm libclang-dev
  libbpf-dev libxdp-dev linux-libc-dev bpftool
  libdpdk-dev dpdk librte-net-memif23
  iproute2 ethtool iputils-ping netcat-openbsd nftables
  linux-perf shellcheck ruby util-linux e2fsprogs fuse3
  chromium chromium-driver
  openssl
)

dry_run=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry_run=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install-deps: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
  esac
done

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi
echo "install-deps: missing packages: ${missing[*]}"
if [ "$dry_run" -eq 1 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: installing packages needs root; run: sudo $0" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "install-deps: apt-get update"
apt-get update -qq
echo "install-deps: apt-get install ${missing[*]}"
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
