#!/usr/bin/env bash
# Kernel bypass on both ends: the DPDK appliance on net_memif (the memif server) and riptide-bench
# as a userspace memif client (its own EAL, smoltcp, one pinned polling thread), side by side in
# one run with the lab's wire ceiling and with kernel mode over loopback, in ONE table.
#
#   ceiling  riptide-memif-ceiling: a trivial DPDK TCP sink/source on a memif server port (the
#            dataplane's polling lcore and smoltcp, no sessions, no storage) and the same memif
#            client moving bytes through it, one connection per actor: up (the producers'
#            direction) and down (the consumers')
#   memif    the appliance, [dpdk] vdevs = ["net_memif0"], one polling lcore; riptide-bench memif;
#            its storage shards block until the lcore wakes them (a write(2) per request)
#   memif-nap the same with [dpdk] shard_nap_us (--shard-nap-us): the shards nap while busy, so
#            the lcore pushes requests with no system call
#   kernel   the appliance in kernel mode (one io_uring network worker) on 127.0.0.1;
#            riptide-bench tcp
# Each mode runs the same pinned-producer and then pinned-consumer (reading what was produced).
# For the appliance process: system calls (perf stat, raw_syscalls:sys_enter per thread, with
# write(2) and clock_nanosleep apart) and context switches (/proc/<pid>/task/*/status) per 1000
# messages, in total and on the hot threads (DPDK's rte-worker-* polling lcore; kernel mode's
# riptide-net-* network workers). Each figure also as a fraction of the ceiling and of kernel
# mode. Then `perf trace -s` names the system calls of the polling lcore over a short memif run.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/bench-memif.sh [options]      (as root; needs perf and python3)
Builds release with the dpdk features (riptide-dataplane/dpdk, riptide-bench/dpdk) and prints one
table: the appliance over memif, the memif wire ceiling and kernel mode over loopback.

  --quick                 small sizes (about a minute)
  --producers N           producers, then as many consumers             (default 2)
  --batches N             batches per producer                          (default 200, quick 40)
  --message-size BYTES    payload bytes per message                     (default 1000)
  --messages-per-batch N  messages per batch                            (default 1000)
  --inflight N            requests in flight per connection             (default 1)
  --ack durable|memory    topic durability                              (default memory)
  --idle-backoff-us US    DPDK idle lcore sleep; 0 = busy polling       (default 50)
  --modes "..."           modes to run, in order    (default "memif memif-nap kernel")
  --shard-nap-us US       [dpdk] shard_nap_us of memif-nap              (default 100)
  --client-cpu N          CPU of the memif client's lcore               (default 0)
  --lcore-cpu N           CPU of the appliance's polling lcore          (default 1)
  --dataplane PATH        the riptide-dataplane binary to measure (e.g. an earlier build)
  --output DIR            keep logs and perf output here                (default: a temp dir)
  --skip-build            use the binaries already built
  -h, --help              this text
Environment: CARGO_TARGET_DIR (default <repo>/target) locates the binaries.
USAGE
}

producers=2; batches=""; message_size=1000; messages_per_batch=1000; inflight=1; ack=memory
idle_backoff_us=50; modes="memif memif-nap kernel"; shard_nap_us=100; output=""; build=1; quick=0; dataplane=""
client_cpu=0; lcore_cpu=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --producers) producers="$2"; shift ;;
    --batches) batches="$2"; shift ;;
    --message-size) message_size="$2"; shift ;;
    --messages-per-batch) messages_per_batch="$2"; shift ;;
    --inflight) inflight="$2"; shift ;;
    --ack) ack="$2"; shift ;;
    --idle-backoff-us) idle_backoff_us="$2"; shift ;;
    --modes) modes="$2"; shift ;;
    --shard-nap-us) shard_nap_us="$2"; shift ;;
    --client-cpu) client_cpu="$2"; shift ;;
    --lcore-cpu) lcore_cpu="$2"; shift ;;
    --dataplane) dataplane="$2"; shift ;;
    --output) output="$2"; shift ;;
    --skip-build) build=0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench-memif.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$batches" ]; then
  if [ "$quick" -eq 1 ]; then batches=40; else batches=200; fi
fi
[ "$(id -u)" -eq 0 ] || { echo "bench-memif.sh: run as root (DPDK runtime files, perf)" >&2; exit 1; }
for tool in perf python3; do
  command -v "$tool" >/dev/null || { echo "bench-memif.sh: $tool missing (scripts/install-deps.sh)" >&2; exit 1; }
done
for mode in $modes; do
  case "$mode" in memif|memif-nap|kernel) ;; *) echo "bench-memif.sh: unknown mode $mode" >&2; exit 2 ;; esac
done

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
release="$target/release"
if [ "$build" -eq 1 ]; then
  echo "bench-memif.sh: building release binaries (dpdk features)" >&2
  (cd "$repo" && cargo build --release -p riptide-dataplane -p riptide-bench \
    --features riptide-dataplane/dpdk,riptide-bench/dpdk >&2)
fi
[ -n "$dataplane" ] || dataplane="$release/riptide-dataplane"
for bin in "$dataplane" "$release/riptide-bench" "$release/riptide-memif-ceiling"; do
  [ -x "$bin" ] || { echo "bench-memif.sh: $bin missing (build failed?)" >&2; exit 1; }
done

APPLIANCE_IP=10.77.0.1
CLIENT_ADDRESS=10.77.0.2/24
PORT=8090
CEILING_PORT=8091
LOOPBACK=127.0.0.1

work="$(mktemp -d /var/tmp/riptide-bench-memif.XXXXXX)"
[ -n "$output" ] || output="$work/results"
mkdir -p "$output"
server_pid=""

# shellcheck source=scripts/lib/appliance.sh
source "$repo/scripts/lib/appliance.sh"
stop_server() {
  appliance_stop "$server_pid"
  server_pid=""
}
cleanup() {
  stop_server
  if [ "$output" = "$work/results" ]; then
    rm -rf "$work"/data.* "$work"/*.toml "$work"/*.sock
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# start_server MODE: a fresh data directory and riptide.toml; sets server_pid, address, socket.
start_server() {
  local mode="$1" data="$work/data.$1" config="$work/$1.toml"
  mkdir -p "$data"
  {
    printf '[system]\npath = "%s"\n\n' "$data"
    printf '[tcp]\naddress = "%s:%s"\n\n' "$LOOPBACK" "$PORT"
    if [ "$mode" = kernel ]; then
      printf '[dataplane]\nbackend = "kernel"\nnetwork_workers = 1\n'
    else
      printf '[dataplane]\nbackend = "dpdk"\n\n[dpdk]\n'
      printf 'lcores = [0, 1]\ncpus = [%s, %s]\n' "$client_cpu" "$lcore_cpu"
      printf 'no_huge = true\nmemory_mb = 512\nvdevs = ["net_memif0"]\n'
      printf 'ip_address = "%s"\nprefix_len = 24\nport = %s\nidle_backoff_us = %s\n' \
        "$APPLIANCE_IP" "$PORT" "$idle_backoff_us"
      if [ "$mode" = memif-nap ]; then printf 'shard_nap_us = %s\n' "$shard_nap_us"; fi
    fi
  } >"$config"
  IGGY_ROOT_USERNAME=iggy IGGY_ROOT_PASSWORD=iggy \
    "$dataplane" --config "$config" >"$output/server-$mode.log" 2>&1 &
  server_pid=$!
  appliance_wait_ready "$server_pid" "$data" "$output/server-$mode.log" >/dev/null
  socket="$data/runtime/memif.sock"
  if [ "$mode" = kernel ]; then address="$LOOPBACK:$PORT"; else address="$APPLIANCE_IP:$PORT"; fi
  echo "bench-memif.sh: $mode: riptide-dataplane (pid $server_pid) at $address" >&2
}

# The bench's transport arguments for a mode.
transport() {
  if [ "$1" = kernel ]; then
    echo "tcp --server-address $address"
  else
    echo "memif --socket $socket --server-address $address --ip-address $CLIENT_ADDRESS --cpu $client_cpu"
  fi
}


rows=()
# measure MODE NAME BENCH-ARGS...: one riptide-bench run with the appliance's system calls and
# context switches counted; appends a table row.
measure() {
  local mode="$1" name="$2"; shift 2
  local base="$output/$mode-$name" hot log
  hot="$(hot_threads "$mode")"
  ctx_snapshot "$server_pid" >"$base.ctx-before"
  perf stat -e raw_syscalls:sys_enter,syscalls:sys_enter_clock_nanosleep,syscalls:sys_enter_write \
    --per-thread -x, -p "$server_pid" -o "$base.perf" &
  local perf_pid=$!
  sleep 0.5   # perf attaches to every thread before the load starts
  # shellcheck disable=SC2046 # the transport's words
  if ! log="$("$release/riptide-bench" -m "$message_size" -P "$messages_per_batch" \
      -b "$batches" --ack "$ack" --inflight "$inflight" "$@" $(transport "$mode") \
      output -o "$base" 2>"$base.err")"; then
    kill -INT "$perf_pid" 2>/dev/null || true; wait "$perf_pid" 2>/dev/null || true
    echo "bench-memif.sh: $mode $name failed:" >&2; cat "$base.err" >&2
    rows+=("$mode $name FAILED")
    return 0
  fi
  kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
  ctx_snapshot "$server_pid" >"$base.ctx-after"
  echo "$log" >"$base.txt"
  local summary messages syscalls ctx
  summary="$(grep '^summary: ' <<<"$log" | head -1)"
  messages="$(sed -n 's/.*messages=\([0-9]*\).*/\1/p' <<<"$summary")"
  grep '^memif client lcore' <<<"$log" >"$base.client" || true
  # perf's per-thread lines: "comm-tid,count,,event,...".
  syscalls="$(awk -F, -v hot="$hot" '/sys_enter/ {
      comm = $1; sub(/-[0-9]+$/, "", comm); n = ($2 ~ /^[0-9]+$/) ? $2 : 0
      if ($4 ~ /clock_nanosleep/) { if (comm ~ hot) sleeps += n; next }
      if ($4 ~ /sys_enter_write/) { if (comm ~ hot) writes += n; next }
      total += n; if (comm ~ hot) lcore += n }
    END { print total + 0, lcore - sleeps, sleeps + 0, writes + 0 }' "$base.perf")"
  ctx="$(awk -v hot="$hot" 'NR == FNR { before[$1] = $3; next }
      { d = $3 - before[$1]; total += d; if ($2 ~ hot) lcore += d }
      END { print total + 0, lcore + 0 }' "$base.ctx-before" "$base.ctx-after")"
  read -r sys_total sys_hot sys_hot_sleeps sys_hot_writes <<<"$syscalls"
  rows+=("$mode $name $summary messages=$messages syscalls=$sys_total syscalls_hot=$sys_hot sleeps_hot=$sys_hot_sleeps writes_hot=$sys_hot_writes ctx=${ctx% *} ctx_hot=${ctx#* }")
  echo "bench-memif.sh: $mode $name done" >&2
}

# Which system calls the polling lcore makes: perf trace -s over a short producer and consumer run.
attribute() {
  local file="$output/$1-trace.txt" hot
  hot="$(hot_threads "$1")"
  perf trace -s -p "$server_pid" -o "$file" &
  local trace_pid=$!
  sleep 1
  local run batches_short=$(( batches / 4 > 0 ? batches / 4 : 1 ))
  for run in "pinned-producer -p $producers" "pinned-consumer -c $producers"; do
    # shellcheck disable=SC2086,SC2046 # the run's mode and its option, the transport's words
    "$release/riptide-bench" -m "$message_size" -P "$messages_per_batch" -b "$batches_short" \
      --ack "$ack" --inflight "$inflight" $run $(transport memif) >/dev/null 2>&1 || true
  done
  kill -INT "$trace_pid"; wait "$trace_pid" 2>/dev/null || true
  echo "(a producer run, then a consumer run, each of $(( producers * batches_short * messages_per_batch )) messages)" >"$file.hot"
  awk -v hot="$hot" '/^ [^ ].* \([0-9]+\), [0-9]+ events/ { keep = ($1 ~ hot) }
    keep && NF' "$file" >>"$file.hot"
}

# ceiling up|down: MB/s through the memif sink/source, the same client, as many connections as
# the bench has actors.
ceiling() {
  local bytes
  if [ "$quick" -eq 1 ]; then bytes=$(( 256 * 1024 * 1024 )); else bytes=$(( 1024 * 1024 * 1024 )); fi
  "$release/riptide-memif-ceiling" client "$1" --socket "$work/ceiling.sock" \
    --server-address "$APPLIANCE_IP:$CEILING_PORT" --ip-address "$CLIENT_ADDRESS" \
    --bytes "$bytes" --connections "$producers" --cpu "$client_cpu" 2>>"$output/ceiling-client.log" |
    sed -n 's/^ceiling: mb_per_sec=\([0-9.]*\).*/\1/p'
}

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
"$release/riptide-memif-ceiling" server --socket "$work/ceiling.sock" \
  --ip-address "$APPLIANCE_IP/24" --port "$CEILING_PORT" --cpu "$lcore_cpu" \
  >"$output/ceiling-server.log" 2>&1 &
ceiling_pid=$!
for _ in $(seq 1 100); do [ -S "$work/ceiling.sock" ] && break; sleep 0.1; done
ceiling_failed() {
  echo "bench-memif.sh: the memif ceiling failed; see $output/ceiling-server.log and ceiling-client.log" >&2
  exit 1
}
ceiling_up=$(ceiling up) || ceiling_failed
ceiling_down=$(ceiling down) || ceiling_failed
if [ -z "$ceiling_up" ] || [ -z "$ceiling_down" ]; then ceiling_failed; fi
kill "$ceiling_pid"; wait "$ceiling_pid" 2>/dev/null || true
echo "bench-memif.sh: memif ceilings: up $ceiling_up MB/s, down $ceiling_down MB/s" >&2

for mode in $modes; do
  start_server "$mode"
  measure "$mode" producer pinned-producer -p "$producers"
  measure "$mode" consumer pinned-consumer -c "$producers"
  [ "$mode" = kernel ] || attribute "$mode"
  stop_server
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
per_1k() { awk -v n="$1" -v m="$2" 'BEGIN { if (m > 0) printf "%.2f", n * 1000 / m; else print "n/a" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
kernel_mb() {
  local r
  for r in "${rows[@]}"; do
    read -r mode name rest <<<"$r"
    if [ "$mode" = kernel ] && [ "$name" = "$1" ] && [ "$rest" != FAILED ]; then field mb_per_sec "$rest"; return; fi
  done
  echo 0
}

echo
echo "riptide over memif (userspace both ends) vs kernel mode over loopback — $(date -u +%Y-%m-%dT%H:%MZ)," \
  "$(nproc) CPUs, $producers actors x $batches batches x $messages_per_batch x $message_size B, ack $ack," \
  "inflight $inflight, 1 polling lcore (CPU $lcore_cpu), memif client on CPU $client_cpu," \
  "idle backoff ${idle_backoff_us} us, dataplane $dataplane"
echo "load average before: $load_before, after: $load_after"
echo "memif wire ceiling (DPDK sink/source on a memif server lcore, the same client, $producers TCP connections): up $ceiling_up MB/s, down $ceiling_down MB/s"
printf '%-9s %-9s %8s %5s %6s %8s %8s %8s %8s %8s %9s %9s %9s %9s %9s\n' mode run MB/s ceil kernel \
  msgs/s msgs/lc p50_ms p99_ms sys/1k sys_hot/1k write_hot sleep_hot ctxsw/1k ctx_hot/1k
for r in "${rows[@]}"; do
  read -r mode name rest <<<"$r"
  if [ "$rest" = FAILED ]; then printf '%-9s %-9s FAILED\n' "$mode" "$name"; continue; fi
  messages=$(field messages "$rest")
  if [ "$name" = producer ]; then ceil="$ceiling_up"; else ceil="$ceiling_down"; fi
  mb=$(field mb_per_sec "$rest")
  printf '%-9s %-9s %8s %5s %6s %8s %8s %8s %8s %8s %9s %9s %9s %9s %9s\n' "$mode" "$name" "$mb" \
    "$(ratio "$mb" "$ceil")" "$(ratio "$mb" "$(kernel_mb "$name")")" \
    "$(field msg_per_sec "$rest")" "$(field msg_per_sec "$rest")" \
    "$(awk -v u="$(field p50_us "$rest")" 'BEGIN { printf "%.3f", u / 1000 }')" \
    "$(awk -v u="$(field p99_us "$rest")" 'BEGIN { printf "%.3f", u / 1000 }')" \
    "$(per_1k "$(field syscalls "$rest")" "$messages")" "$(per_1k "$(field syscalls_hot "$rest")" "$messages")" \
    "$(per_1k "$(field writes_hot "$rest")" "$messages")" "$(per_1k "$(field sleeps_hot "$rest")" "$messages")" \
    "$(per_1k "$(field ctx "$rest")" "$messages")" "$(per_1k "$(field ctx_hot "$rest")" "$messages")"
done
echo "ceil = MB/s / the memif ceiling of its direction; kernel = MB/s / kernel mode's over loopback;"
echo "msgs/lc = msgs/s per polling lcore (memif) or network worker (kernel): one of each here."
echo "per 1000 messages: sys = system calls of the appliance, all threads; sys_hot = those of the hot"
echo "  threads, DPDK's rte-worker-* (the polling lcore) or kernel mode's riptide-net-* (network worker),"
echo "  without their sleeps; write_hot = their write(2)s (the shard wakeup eventfd); sleep_hot ="
echo "  clock_nanosleep of the hot threads (the idle back-off); ctxsw = voluntary + involuntary context"
echo "  switches (all threads / hot threads)"
for mode in memif memif-nap; do
  for base in "$output/$mode-producer" "$output/$mode-consumer"; do
    if [ -s "$base.client" ]; then echo "$(basename "$base"): $(cat "$base.client")"; fi
  done
done
for mode in memif memif-nap; do
  [ -s "$output/$mode-trace.txt.hot" ] || continue
  echo
  echo "$mode: system calls of the polling lcore (perf trace -s):"
  cat "$output/$mode-trace.txt.hot"
done
echo "results: $output"
