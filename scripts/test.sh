#!/usr/bin/env bash
# Runs every check and test of riptide, as CI does: formatting, clippy, and all tests of every
# crate, including the ones that need root, io_uring, XDP, network namespaces and hugepages.
# Installs what it needs first (apt packages, hugepages).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/test.sh [--quick]
Installs dependencies (apt, hugepages; needs root), then runs cargo fmt --check, cargo clippy and
cargo test for the whole workspace with the dpdk feature. --quick skips fmt and clippy.
USAGE
}

quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "test: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [ "$(id -u)" -ne 0 ]; then
  echo "test: the suite needs root (io_uring on loop devices, XDP, network namespaces, hugepages)" >&2
  exit 1
fi

echo "test: installing dependencies"
bash scripts/install-deps.sh

hugepages_wanted=256
if [ "$(cat /proc/sys/vm/nr_hugepages)" -lt "$hugepages_wanted" ]; then
  echo "test: reserving $hugepages_wanted 2 MiB hugepages for the DPDK tests"
  echo "$hugepages_wanted" > /proc/sys/vm/nr_hugepages || echo "test: could not reserve hugepages; DPDK tests use --no-huge"
fi

features=(--features riptide-dataplane/dpdk)

if [ "$quick" -eq 0 ]; then
  echo "test: cargo fmt --check"
  cargo fmt --all -- --check
  echo "test: cargo clippy"
  cargo clippy --workspace --all-targets "${features[@]}" -- -D warnings
fi

echo "test: building every binary (tests start the real appliance)"
cargo build --workspace --bins "${features[@]}"

echo "test: cargo test"
cargo test --workspace --no-fail-fast "${features[@]}" -- --test-threads="${RIPTIDE_TEST_THREADS:-4}"
