#!/usr/bin/env bash
# Runs every check and test of riptide, as CI does: formatting, clippy, and all tests of every
# crate, including the ones that need root, io_uring, XDP, network namespaces and hugepages.
# Installs what it needs first (apt packages, hugepages).
#
# Two builds are checked: the default feature set (what scripts/start.sh and scripts/bench.sh
# build) and the workspace with the DPDK backend. Every test binary runs under its own timeout,
# so a hang fails with the binary's name instead of eating the CI budget.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/test.sh [--quick]
Installs dependencies (apt, hugepages; needs root), then runs cargo fmt --check, cargo clippy
(default features and with dpdk) and every test binary under a timeout: the dataplane's tests
built with default features, then the whole workspace with the dpdk feature.
  --quick   skip fmt and clippy
Environment:
  RIPTIDE_TEST_THREADS             test threads per binary                  (default 4)
  RIPTIDE_TEST_BINARY_TIMEOUT_S    longest one test binary may run, seconds (default 900)
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

# This script is CI's command: a suite whose prerequisite (FUSE, io_uring, network namespaces,
# DPDK's lab) is missing fails with the reason instead of skipping.
export CI=true

echo "test: installing dependencies"
bash scripts/install-deps.sh

hugepages_wanted=256
if [ "$(cat /proc/sys/vm/nr_hugepages)" -lt "$hugepages_wanted" ]; then
  echo "test: reserving $hugepages_wanted 2 MiB hugepages for the DPDK tests"
  echo "$hugepages_wanted" > /proc/sys/vm/nr_hugepages || echo "test: could not reserve hugepages; DPDK tests use --no-huge"
fi

dpdk=(--features "riptide-dataplane/dpdk,riptide-bench/dpdk")
threads="${RIPTIDE_TEST_THREADS:-4}"
binary_timeout_s="${RIPTIDE_TEST_BINARY_TIMEOUT_S:-900}"

if [ "$quick" -eq 0 ]; then
  echo "test: cargo fmt --check"
  cargo fmt --all -- --check
  echo "test: cargo clippy (default features)"
  cargo clippy --workspace --all-targets -- -D warnings
  echo "test: cargo clippy (dpdk)"
  cargo clippy --workspace --all-targets "${dpdk[@]}" -- -D warnings
fi

failed=()

# The control process is a client of the data plane: it must not link it (issue 15).
echo "test: riptide-control links no io_uring, storage, dataplane or eBPF loader"
if cargo tree -p riptide-control -e normal --prefix none | awk '{print $1}' \
    | grep -E -x 'io-uring|riptide-storage|riptide-dataplane|aya'; then
  echo "test: riptide-control depends on the data plane's crates above" >&2
  failed+=("riptide-control dependency check")
fi

# Builds the test binaries of `cargo test --no-run "$@"` and runs each one under the timeout, in
# its package's directory as cargo test would. Failures are collected, not fatal, so one run
# reports every failing binary.
run_test_binaries() {
  local list
  list=$(mktemp)
  # Built once with the compiler's messages shown (an error stops here), then listed.
  cargo test --no-run "$@"
  cargo test --no-run --message-format=json "$@" 2>/dev/null | python3 -c '
import json, os, sys
for line in sys.stdin:
    try:
        message = json.loads(line)
    except ValueError:
        continue
    if message.get("reason") != "compiler-artifact" or not message.get("executable"):
        continue
    if not message.get("profile", {}).get("test"):
        continue
    name = message["target"]["name"]
    kind = message["target"]["kind"][0]
    print("\t".join([message["executable"], os.path.dirname(message["manifest_path"]), f"{name} ({kind})"]))
' > "$list"
  if [ ! -s "$list" ]; then
    echo "test: no test binaries were built" >&2
    exit 1
  fi
  local executable dir label status
  while IFS=$'\t' read -r executable dir label; do
    echo "test: $label"
    status=0
    (cd "$dir" && timeout --kill-after=30 "$binary_timeout_s" "$executable" --test-threads="$threads") || status=$?
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
      echo "test: $label did not finish within ${binary_timeout_s}s" >&2
      failed+=("$label (timeout)")
    elif [ "$status" -ne 0 ]; then
      failed+=("$label")
    fi
  done < "$list"
  rm -f "$list"
}

echo "test: the dataplane with default features (the build scripts/start.sh runs)"
cargo build -p riptide-dataplane --bins
run_test_binaries -p riptide-dataplane

echo "test: building every binary with the dpdk feature (tests start the real appliance)"
cargo build --workspace --bins "${dpdk[@]}"
run_test_binaries --workspace "${dpdk[@]}"

echo "test: doc tests"
timeout "$binary_timeout_s" cargo test --workspace --doc "${dpdk[@]}" || failed+=("doc tests")

if [ ${#failed[@]} -gt 0 ]; then
  echo "test: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "test: every check passed"
