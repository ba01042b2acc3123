#!/usr/bin/env bash
# Measures Iggy's HTTP API (served by riptide-control as a client of the dataplane) against the
# same sends and polls over the Iggy TCP protocol, in one run on a freshly started appliance:
# MB/s (median and spread over the runs) and p99 per request, side by side, with the HTTP/TCP
# ratio. Both use the official iggy SDK (HttpClient and IggyClient), one request at a time.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/bench-http.sh [options]
Builds riptide in release mode, starts riptide-control (which starts riptide-dataplane) on a fresh
data directory with the HTTP API on a free port, and runs riptide-http-bench: sends of MESSAGES x
SIZE bytes per request and polls of the same back, over HTTP and over TCP, printing one table.

  --requests N        requests per phase and run                        (default 100)
  --messages N        messages per request                              (default 1000)
  --message-size B    payload bytes per message                         (default 1024)
  --runs N            runs (for the median and the spread)              (default 3)
  --data-parent DIR   where the fresh data directory is created         (default /var/tmp)
  --skip-build        use the binaries already built
  -h, --help          this text
Environment: CARGO_TARGET_DIR (default <repo>/target) locates the binaries.
Run it alone on the machine (e.g. flock on a shared lock file): it measures CPU-bound paths.
USAGE
}

requests=100; messages=1000; message_size=1024; runs=3; data_parent=/var/tmp; build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --requests) requests="$2"; shift ;;
    --messages) messages="$2"; shift ;;
    --message-size) message_size="$2"; shift ;;
    --runs) runs="$2"; shift ;;
    --data-parent) data_parent="$2"; shift ;;
    --skip-build) build=0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench-http.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
release="$target/release"
if [ "$build" -eq 1 ]; then
  echo "bench-http.sh: building release binaries" >&2
  (cd "$repo" && cargo build --release -p riptide-dataplane -p riptide-control >&2)
fi
for bin in riptide-dataplane riptide-control riptide-http-bench; do
  [ -x "$release/$bin" ] || { echo "bench-http.sh: $release/$bin missing (build failed?)" >&2; exit 1; }
done

work="$(mktemp -d "$data_parent/riptide-bench-http.XXXXXX")"
control_pid=""
# Stops riptide-control (SIGTERM: it stops the dataplane, which syncs) and removes the data.
cleanup() {
  if [ -n "$control_pid" ]; then
    kill "$control_pid" 2>/dev/null || true
    for _ in $(seq 1 600); do
      kill -0 "$control_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$control_pid" 2>/dev/null || true
    wait "$control_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# One request holds MESSAGES x SIZE bytes as base64 JSON: leave room for it.
body_limit=$(( messages * (message_size * 4 / 3 + 200) + 65536 ))
echo "bench-http.sh: starting riptide-control (data $work/data)" >&2
IGGY_SYSTEM_PATH="$work/data" IGGY_TCP_ADDRESS=127.0.0.1:0 IGGY_ROOT_USERNAME=iggy IGGY_ROOT_PASSWORD=iggy \
  RIPTIDE_CONTROL_ADDRESS=127.0.0.1:0 RIPTIDE_HTTP_ADDRESS=127.0.0.1:0 RIPTIDE_HTTP_BODY_LIMIT_BYTES="$body_limit" \
  "$release/riptide-control" --dataplane-bin "$release/riptide-dataplane" >"$work/control.log" 2>&1 &
control_pid=$!

tcp=""; http=""
for _ in $(seq 1 600); do
  if [ -f "$work/data/runtime/current_config.toml" ] && [ -f "$work/data/runtime/http_address" ]; then
    tcp=$(awk '/^\[/{t=($0=="[tcp]")} t && /^address/ {gsub(/"/, "", $3); print $3}' "$work/data/runtime/current_config.toml")
    http=$(cat "$work/data/runtime/http_address")
    [ -n "$tcp" ] && [ -n "$http" ] && break
  fi
  kill -0 "$control_pid" 2>/dev/null || { echo "bench-http.sh: riptide-control exited; log:" >&2; cat "$work/control.log" >&2; exit 1; }
  sleep 0.1
done
if [ -z "$tcp" ] || [ -z "$http" ]; then
  echo "bench-http.sh: the appliance did not come up" >&2
  cat "$work/control.log" >&2
  exit 1
fi
echo "bench-http.sh: dataplane at $tcp, HTTP API at $http" >&2

"$release/riptide-http-bench" --http "http://$http" --tcp "$tcp" --requests "$requests" \
  --messages "$messages" --message-size "$message_size" --runs "$runs"
