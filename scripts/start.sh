#!/usr/bin/env bash
# Builds riptide in release mode and starts the appliance with the embedded default configuration:
# kernel mode, data under ./data, the Iggy TCP protocol on 127.0.0.1:8090, development credentials
# iggy/iggy. Extra arguments go to riptide-dataplane (for example --config riptide.toml).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/start.sh [riptide-dataplane arguments...]
Installs the build dependencies (apt, needs root), builds riptide in release mode and starts the
appliance in the foreground. Stop it with Ctrl-C (SIGINT) or SIGTERM: it drains and syncs.
Environment overrides: IGGY_TCP_ADDRESS, IGGY_SYSTEM_PATH, IGGY_ROOT_USERNAME, IGGY_ROOT_PASSWORD,
and RIPTIDE_<SECTION>_<KEY> for any key of config/riptide.toml.
USAGE
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [ "$(id -u)" -eq 0 ]; then
  echo "start: checking build dependencies"
  bash scripts/install-deps.sh
else
  echo "start: not root, skipping the package check (run scripts/install-deps.sh as root if the build fails)"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "start: cargo not found; install the Rust toolchain (rustup) first" >&2
  exit 1
fi

echo "start: building riptide (release, with the dpdk backend compiled in)"
cargo build --release -p riptide-dataplane --features riptide-dataplane/dpdk

echo "start: starting riptide-dataplane (connect with iggy://iggy:iggy@127.0.0.1:8090)"
exec "$root/target/release/riptide-dataplane" "$@"
