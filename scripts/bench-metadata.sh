#!/usr/bin/env bash
# What metadata changes cost the data path: a pinned producer's p99 latency alone, and while
# riptide-metadata-churn creates and deletes --streams streams next to it (each change durable
# before its reply), on a fresh appliance per run. With --baseline DIR the same runs go against
# the riptide-dataplane in DIR too, alternating, so two builds are compared in one sitting.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/bench-metadata.sh [options]
Prints one row per run: build, producer MB/s and p99 alone, p99 with metadata churn beside it, the
ratio, and the churn's own rate and p99; then the median of each build.

  --runs N            runs per build, alternating builds                 (default 3)
  --streams N         streams created then deleted per churn round       (default 1000)
  --batches N         batches of the producer                            (default 400)
  --messages-per-batch N                                                 (default 100)
  --baseline DIR      a directory holding another riptide-dataplane build to compare
  --data-parent DIR   where fresh data directories are created           (default /var/tmp)
  --skip-build        use the release binaries already built
  -h, --help          this text
USAGE
}

runs=3; streams=1000; batches=400; messages_per_batch=100
baseline=""; data_parent=/var/tmp; build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift ;;
    --streams) streams="$2"; shift ;;
    --batches) batches="$2"; shift ;;
    --messages-per-batch) messages_per_batch="$2"; shift ;;
    --baseline) baseline="$2"; shift ;;
    --data-parent) data_parent="$2"; shift ;;
    --skip-build) build=0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench-metadata.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
release="${CARGO_TARGET_DIR:-$repo/target}/release"
# shellcheck source=scripts/lib/appliance.sh
source "$repo/scripts/lib/appliance.sh"
if [ "$build" -eq 1 ]; then
  echo "bench-metadata.sh: building release binaries" >&2
  (cd "$repo" && cargo build --release -p riptide-dataplane -p riptide-bench >&2)
fi
builds=("current=$release/riptide-dataplane")
[ -z "$baseline" ] || builds+=("baseline=$baseline/riptide-dataplane")
for entry in "${builds[@]}"; do
  [ -x "${entry#*=}" ] || { echo "bench-metadata.sh: ${entry#*=} missing" >&2; exit 1; }
done

work="$(mktemp -d "$data_parent/riptide-bench-metadata.XXXXXX")"
server_pid=""; churn_pid=""
cleanup() {
  [ -z "$churn_pid" ] || kill "$churn_pid" 2>/dev/null || true
  appliance_stop "$server_pid"
  rm -rf "$work"
}
trap cleanup EXIT

# producer ADDRESS: one pinned producer, durable acknowledgements; prints "mb_per_sec p99_us".
producer() {
  "$release/riptide-bench" -m 1000 -P "$messages_per_batch" -b "$batches" --ack durable \
    pinned-producer -p 1 tcp --server-address "$1" 2>>"$work/bench.err" \
    | awk '/^summary: producer/ { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
             print v["mb_per_sec"], v["p99_us"] }'
}

rows=()
for run in $(seq 1 "$runs"); do
  for entry in "${builds[@]}"; do
    name="${entry%%=*}"; binary="${entry#*=}"
    data="$work/data.$name.$run"; mkdir -p "$data"
    IGGY_SYSTEM_PATH="$data" IGGY_TCP_ADDRESS=127.0.0.1:0 IGGY_ROOT_USERNAME=iggy IGGY_ROOT_PASSWORD=iggy \
      "$binary" >"$work/server.$name.$run.log" 2>&1 &
    server_pid=$!
    address=$(appliance_wait_ready "$server_pid" "$data" "$work/server.$name.$run.log")
    read -r alone_mb alone_p99 < <(producer "$address")
    "$release/riptide-metadata-churn" --server-address "$address" --streams "$streams" --rounds 0 \
      >"$work/churn.out" 2>>"$work/bench.err" &
    churn_pid=$!
    sleep 0.5
    read -r churn_mb churn_p99 < <(producer "$address")
    kill -TERM "$churn_pid"; wait "$churn_pid" || true; churn_pid=""
    churn=$(cat "$work/churn.out")
    appliance_stop "$server_pid"; server_pid=""; rm -rf "$data"
    ratio=$(awk -v a="$churn_p99" -v b="$alone_p99" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    rows+=("$name $run $alone_mb $alone_p99 $churn_mb $churn_p99 $ratio $churn")
    echo "bench-metadata.sh: $name run $run done" >&2
  done
done

printf '%-9s %3s %12s %10s %12s %12s %8s  %s\n' build run "alone MB/s" "alone p99" "churn MB/s" "churn p99" "p99 x" "churn"
for row in "${rows[@]}"; do
  # Seven columns, then the churn tool's own words (several) as one.
  # shellcheck disable=SC2086
  set -- $row
  printf '%-9s %3s %12s %10s %12s %12s %8s  %s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$7" "${*:8}"
done
echo
echo "median per build (p99 in us):"
for entry in "${builds[@]}"; do
  name="${entry%%=*}"
  printf '%s\n' "${rows[@]}" | awk -v n="$name" '$1 == n { a[++c] = $4; b[c] = $6; r[c] = $7 }
    function median(x, k,   i, j, t) { for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
      return x[int((k + 1) / 2)] }
    END { if (c) printf "  %-9s alone %s, with churn %s, ratio %s (%d runs)\n", n, median(a, c), median(b, c), median(r, c), c }'
done
