#!/usr/bin/env bash
# Replication's cost, measured: three riptide nodes on this machine (loopback addresses, one data
# directory each on the same disk) against one node, in one run, repeated.
#
# For each run, in turn:
#   one node,   durability persisted:  pinned producer, then pinned consumer  (the reference)
#   cluster,    durability persisted:  acknowledged once the leader's log is synced
#   cluster,    durability replicated: acknowledged once a majority's logs are synced (committed)
# Consumers read from the leader what its producer wrote. The table gives MB/s and p99 as the
# median over the runs with their min-max spread, and each cluster figure as a fraction of the
# one-node figure (and replicated as a fraction of the cluster's persisted).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/bench-cluster.sh [options]
Builds riptide in release mode, starts a 3-node cluster and a single node on loopback, and prints
producer and consumer MB/s and p99 for persisted and replicated topics next to the single node.

  --quick                 small sizes (about two minutes)
  --runs N                repetitions of the whole set                (default 3, quick 2)
  --producers N           producers (and consumers)                   (default 2)
  --batches N             batches per producer                        (default 100, quick 30)
  --message-size BYTES    payload bytes per message                   (default 1000)
  --messages-per-batch N  messages per batch                          (default 1000)
  --data-parent DIR       where the data directories are created      (default /var/tmp)
  --skip-build            use the binaries already built
  -h, --help              this text
Environment: CARGO_TARGET_DIR (default <repo>/target) locates the binaries.
USAGE
}

runs=""; producers=2; batches=""; message_size=1000; messages_per_batch=1000
data_parent=/var/tmp; build=1; quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --runs) runs="$2"; shift ;;
    --producers) producers="$2"; shift ;;
    --batches) batches="$2"; shift ;;
    --message-size) message_size="$2"; shift ;;
    --messages-per-batch) messages_per_batch="$2"; shift ;;
    --data-parent) data_parent="$2"; shift ;;
    --skip-build) build=0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench-cluster.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
if [ "$quick" -eq 1 ]; then runs="${runs:-2}"; batches="${batches:-30}"; else runs="${runs:-3}"; batches="${batches:-100}"; fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
release="${CARGO_TARGET_DIR:-$repo/target}/release"
if [ "$build" -eq 1 ]; then
  echo "bench-cluster.sh: building release binaries" >&2
  (cd "$repo" && cargo build --release -p riptide-dataplane -p riptide-bench >&2)
fi
for bin in riptide-dataplane riptide-bench riptide-cluster-leader; do
  [ -x "$release/$bin" ] || { echo "bench-cluster.sh: $release/$bin missing (build failed?)" >&2; exit 1; }
done

# shellcheck source=scripts/lib/appliance.sh
source "$repo/scripts/lib/appliance.sh"
work="$(mktemp -d "$data_parent/riptide-bench-cluster.XXXXXX")"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do appliance_stop "$pid"; done
  rm -rf "$work"
}
trap cleanup EXIT

cluster_name=bench
export RIPTIDE_CLUSTER_SECRET="bench-cluster-secret-$$-$RANDOM"
# Node i (1..3) serves clients on 127.0.0.1:(28000 + 100 i) and peers on the next port.
tcp_port() { echo $(( 28000 + 100 * $1 )); }
replication_port() { echo $(( 28001 + 100 * $1 )); }
members=""
for i in 1 2 3; do
  members+="  { id = $i, name = \"node-$i\", replication_address = \"127.0.0.1:$(replication_port "$i")\", tcp_address = \"127.0.0.1:$(tcp_port "$i")\" },"$'\n'
done

# start_node NAME CONFIG_TEXT: starts riptide-dataplane on $work/NAME; prints its tcp address.
start_node() {
  local name="$1" text="$2"
  mkdir -p "$work/$name"
  printf '%s' "$text" >"$work/$name.toml"
  "$release/riptide-dataplane" --config "$work/$name.toml" >"$work/$name.log" 2>&1 &
  pids+=("$!")
  appliance_wait_ready "$!" "$work/$name" "$work/$name.log" >/dev/null
}

# One network worker and one shard per node: three nodes share the machine's cores.
common="[dataplane]
network_workers = 1
storage_shards = 1

[root]
username = \"iggy\"
password = \"iggy\"
"
echo "bench-cluster.sh: starting 3 cluster nodes and 1 single node under $work" >&2
for i in 1 2 3; do
  start_node "node-$i" "[system]
path = \"$work/node-$i\"

[tcp]
address = \"127.0.0.1:$(tcp_port "$i")\"

$common
[cluster]
enabled = true
name = \"$cluster_name\"
node_name = \"node-$i\"
node_id = $i
replication_address = \"127.0.0.1:$(replication_port "$i")\"
members = [
$members]
"
done
single_address="127.0.0.1:$(tcp_port 9)"
start_node single "[system]
path = \"$work/single\"

[tcp]
address = \"$single_address\"

$common"
leader_line=$("$release/riptide-cluster-leader" --replication-address "127.0.0.1:$(replication_port 1)" --cluster-name "$cluster_name")
leader_address=$(sed -n 's/.*leader_tcp_address=\([^ ]*\).*/\1/p' <<<"$leader_line")
echo "bench-cluster.sh: cluster leader at $leader_address ($leader_line)" >&2

# results: "setup actor mb_per_sec p99_us" lines, one per benchmark and run.
results="$work/results.txt"
: >"$results"
# bench SETUP ADDRESS ACK MODE ARGS...: one riptide-bench run; records producer/consumer summary.
bench() {
  local setup="$1" address="$2" ack="$3" mode="$4"; shift 4
  local log
  if ! log=$("$release/riptide-bench" -m "$message_size" -P "$messages_per_batch" -b "$batches" \
      --ack "$ack" --verify "$mode" "$@" tcp --server-address "$address" 2>"$work/bench.err"); then
    echo "bench-cluster.sh: $setup $mode failed:" >&2; cat "$work/bench.err" >&2
    for i in 1 2 3; do echo "--- node-$i log (tail)" >&2; tail -20 "$work/node-$i.log" >&2; done
    exit 1
  fi
  grep '^summary: ' <<<"$log" | while read -r _ actor fields; do
    mbps=$(sed -n 's/.*mb_per_sec=\([^ ]*\).*/\1/p' <<<"$fields")
    p99=$(sed -n 's/.*p99_us=\([^ ]*\).*/\1/p' <<<"$fields")
    echo "$setup $actor $mbps $p99" >>"$results"
  done
}

for run in $(seq 1 "$runs"); do
  echo "bench-cluster.sh: run $run of $runs" >&2
  for setup in single:persisted cluster:persisted cluster:replicated; do
    where="${setup%%:*}"; durability="${setup##*:}"
    address="$single_address"; ack=durable
    [ "$where" = single ] || address="$leader_address"
    [ "$durability" = replicated ] && ack=replicated
    bench "$setup" "$address" "$ack" pinned-producer -p "$producers"
    bench "$setup" "$address" "$ack" pinned-consumer -c "$producers"
  done
done

# stats SETUP ACTOR COLUMN: "median min max" of column 3 (MB/s) or 4 (p99 us) over the runs.
stats() {
  awk -v s="$1" -v a="$2" -v c="$3" '$1 == s && $2 == a { print $c }' "$results" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) { print "n/a n/a n/a"; exit }
      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m, v[1], v[NR] }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

echo
echo "riptide cluster bench — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, 3 nodes + 1 single node on loopback, data on $(df --output=source "$data_parent" | tail -1)"
echo "$runs runs x $producers producers x $batches batches x $messages_per_batch x $message_size B; medians with min-max over the runs"
printf '%-22s %-9s %26s %26s  %s\n' setup actor "MB/s (min-max)" "p99 ms (min-max)" "ratio"
for actor in producer consumer; do
  read -r single_mbps _ _ < <(stats single:persisted "$actor" 3)
  read -r persisted_mbps _ _ < <(stats cluster:persisted "$actor" 3)
  for setup in single:persisted cluster:persisted cluster:replicated; do
    read -r mbps mbps_min mbps_max < <(stats "$setup" "$actor" 3)
    read -r p99 p99_min p99_max < <(stats "$setup" "$actor" 4)
    case "$setup" in
      single:persisted) note="1.00 (reference)" ;;
      cluster:persisted) note="$(ratio "$mbps" "$single_mbps") of one node" ;;
      cluster:replicated) note="$(ratio "$mbps" "$single_mbps") of one node, $(ratio "$mbps" "$persisted_mbps") of cluster persisted" ;;
    esac
    printf '%-22s %-9s %26s %26s  %s\n' "$setup" "$actor" \
      "$(printf '%.1f (%.1f-%.1f)' "$mbps" "$mbps_min" "$mbps_max")" \
      "$(awk -v a="$p99" -v b="$p99_min" -v c="$p99_max" 'BEGIN { printf "%.2f (%.2f-%.2f)", a/1000, b/1000, c/1000 }')" \
      "$note"
  done
done
echo "What bounds the cluster here: its three nodes share $(nproc) CPUs and one disk, so every"
echo "replicated byte is written six times to the same device (each node's Raft log, synced, and"
echo "its partition segment) and crosses loopback twice more (leader to each follower)."
echo "A persisted send is acknowledged from the leader's log before it commits, but polls read"
echo "committed (applied) messages: the persisted consumer that follows its producer waits for the"
echo "replication backlog, so its figure is the cluster's replication rate, not the leader's reads."
