#!/usr/bin/env bash
# DPDK mode against kernel mode on the same veth wire, side by side in one run, in ONE table.
#
# A network namespace holds the client end of a veth pair; riptide-bench runs there, over the
# kernel's TCP stack. The appliance (a fresh data directory per mode) serves the other end:
#   af_xdp     DPDK, net_af_xdp with riptide's XDP program (one polling lcore: DPDK 22.11's af_xdp
#              PMD takes one queue from a veth)
#   af_packet  DPDK, net_af_packet (qpairs = polling lcores)
#   kernel     kernel mode (io_uring network workers) listening on the veth's host address
# Each mode runs the same pinned-producer and then pinned-consumer (reading what was produced).
# For the appliance process: system calls (perf stat, raw_syscalls:sys_enter per thread) and
# context switches (/proc/<pid>/task/<tid>/status) per 1000 messages, in total and on the hot
# threads (DPDK's lcore-worker-* polling lcores; kernel mode's riptide-net-* network workers).
# The ceilings, measured in the same run: one kernel TCP connection over the same veth, each way.
# Both veth ends and every mode run at one MTU (--mtu, jumbo frames by default). DPDK 22.11's
# af_xdp takes one page per frame, so it runs at the largest MTU it takes (--af-xdp-mtu); kernel
# mode and the ceilings are then measured at that MTU too, so every row has a kernel row and a
# ceiling on the same wire. Then, per DPDK mode, `perf trace -s` over a short producer and consumer run names the calls the
# polling lcores made (the PMDs' own tx kicks show up there).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/bench-dpdk.sh [options]      (as root; needs perf, iproute2, ethtool, python3)
Builds release with the dpdk feature, sets up the veth lab and prints one table comparing the
DPDK backends (af_xdp, af_packet) with kernel mode on the same veth.

  --quick                 small sizes (about a minute)
  --producers N           producers, then as many consumers             (default 2)
  --batches N             batches per producer                          (default 200, quick 40)
  --message-size BYTES    payload bytes per message                     (default 1000)
  --messages-per-batch N  messages per batch                            (default 1000)
  --inflight N            requests in flight per connection             (default 1)
  --ack durable|memory    topic durability                              (default memory: the
                          network, not the disk, is compared)
  --lcores N              polling lcores (af_packet) / network workers (kernel)   (default 1)
  --idle-backoff-us US    DPDK idle lcore sleep; 0 = busy polling       (default 50)
  --modes "..."           modes to run, in order                  (default "af_xdp af_packet kernel")
  --mtu N                 IP MTU of both veth ends, [dpdk] mtu          (default 9000)
  --af-xdp-mtu N          MTU of the af_xdp run, and of a kernel run beside it   (default 3442:
                          DPDK 22.11's af_xdp holds a frame in one 4 KiB page)
  --af-xdp-options OPTS   appended to the af_xdp vdev               (default busy_budget=0: on a
                          veth the PMD's preferred busy polling is one recvfrom per empty rx
                          poll and no faster; "" keeps DPDK's default)
  --output DIR            keep logs and perf output here                (default: a temp dir)
  --skip-build            use the binaries already built
  -h, --help              this text
Environment: CARGO_TARGET_DIR (default <repo>/target) locates the binaries.
USAGE
}

producers=2; batches=""; message_size=1000; messages_per_batch=1000; inflight=1; ack=memory
lcores=1; idle_backoff_us=50; modes="af_xdp af_packet kernel"; output=""; build=1; quick=0
mtu=9000; af_xdp_mtu=3442
af_xdp_options=",busy_budget=0"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --producers) producers="$2"; shift ;;
    --batches) batches="$2"; shift ;;
    --message-size) message_size="$2"; shift ;;
    --messages-per-batch) messages_per_batch="$2"; shift ;;
    --inflight) inflight="$2"; shift ;;
    --ack) ack="$2"; shift ;;
    --lcores) lcores="$2"; shift ;;
    --idle-backoff-us) idle_backoff_us="$2"; shift ;;
    --modes) modes="$2"; shift ;;
    --mtu) mtu="$2"; shift ;;
    --af-xdp-mtu) af_xdp_mtu="$2"; shift ;;
    --af-xdp-options) af_xdp_options="${2:+,$2}"; shift ;;
    --output) output="$2"; shift ;;
    --skip-build) build=0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench-dpdk.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$batches" ]; then
  if [ "$quick" -eq 1 ]; then batches=40; else batches=200; fi
fi
[ "$(id -u)" -eq 0 ] || { echo "bench-dpdk.sh: run as root (namespaces, veth, XDP, perf)" >&2; exit 1; }
for tool in perf ip ethtool python3; do
  command -v "$tool" >/dev/null || { echo "bench-dpdk.sh: $tool missing (scripts/install-deps.sh)" >&2; exit 1; }
done

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
release="$target/release"
if [ "$build" -eq 1 ]; then
  echo "bench-dpdk.sh: building release binaries (dpdk feature)" >&2
  (cd "$repo" && cargo build --release -p riptide-dataplane --features riptide-dataplane/dpdk \
    -p riptide-bench >&2)
fi
for bin in riptide-dataplane riptide-bench; do
  [ -x "$release/$bin" ] || { echo "bench-dpdk.sh: $release/$bin missing (build failed?)" >&2; exit 1; }
done

NS=riptide-bdpdk
HOST_IF=rtbdpdk-dp
NS_IF=rtbdpdk-cl
CLIENT_IP=10.78.0.1
APPLIANCE_IP=10.78.0.2   # DPDK modes: the appliance's own address, answered by smoltcp
HOST_IP=10.78.0.3        # the host's address on the veth: kernel mode listens here
PORT=8090
CEILING_PORT=8091

work="$(mktemp -d /var/tmp/riptide-bench-dpdk.XXXXXX)"
[ -n "$output" ] || output="$work/results"
mkdir -p "$output"
server_pid=""

lab_down() {
  ip netns del "$NS" 2>/dev/null || true
  ip link del "$HOST_IF" 2>/dev/null || true
}

# The veth pair with one queue per polling lcore; the client computes its TCP checksums itself
# (a veth leaves them to "hardware", which a userspace stack reading the frames never sees
# filled in). Every mode runs on this same setting.
lab_up() {
  local queues="$1"
  lab_down
  ip netns add "$NS"
  ip link add "$HOST_IF" numtxqueues "$queues" numrxqueues "$queues" type veth \
    peer name "$NS_IF" numtxqueues "$queues" numrxqueues "$queues"
  ip link set "$NS_IF" netns "$NS"
  ip addr add "$HOST_IP/24" dev "$HOST_IF"
  ip link set "$HOST_IF" up
  ip -n "$NS" addr add "$CLIENT_IP/24" dev "$NS_IF"
  ip -n "$NS" link set "$NS_IF" up
  ip -n "$NS" link set lo up
  ip netns exec "$NS" ethtool -K "$NS_IF" tx off >/dev/null
}

# Both veth ends at one MTU (no server attached: a veth with an XDP program limits its peer's MTU).
lab_mtu() {
  ip link set dev "$HOST_IF" mtu "$1"
  ip -n "$NS" link set dev "$NS_IF" mtu "$1"
}

# shellcheck source=scripts/lib/appliance.sh
source "$repo/scripts/lib/appliance.sh"
stop_server() {
  appliance_stop "$server_pid"
  server_pid=""
}
# The work directory goes, except the results when they were kept in it (no --output).
cleanup() {
  stop_server
  lab_down
  if [ "$output" = "$work/results" ]; then
    rm -rf "$work"/data.* "$work"/ceiling.* "$work"/*.toml
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# The lcore list of the EAL (main lcore + N polling lcores) and, when there are more lcores than
# CPUs, the CPU of each (the main lcore mostly sleeps; polling lcores round-robin over CPUs 1..).
cpus_count=$(nproc)
dpdk_lcores() {
  local count="$1" lcores="0" cpus="0" index
  for index in $(seq 1 "$count"); do
    lcores="$lcores, $index"
    cpus="$cpus, $(( cpus_count > 1 ? 1 + (index - 1) % (cpus_count - 1) : 0 ))"
  done
  echo "lcores = [$lcores]"
  if [ $((count + 1)) -gt "$cpus_count" ]; then echo "cpus = [$cpus]"; fi
}

# start_server MODE MTU: writes the mode's riptide.toml and starts riptide-dataplane on a fresh data
# directory; sets server_pid and address.
start_server() {
  local mode="$1" wire_mtu="$2" data="$work/data.$1.$2" config="$work/$1.$2.toml"
  local polling="$lcores" options=""
  mkdir -p "$data"
  [ "$mode" != af_xdp ] || { polling=1; options="$af_xdp_options"; }
  {
    printf '[system]\npath = "%s"\n\n' "$data"
    printf '[tcp]\naddress = "%s:%s"\n\n' "$HOST_IP" "$PORT"
    if [ "$mode" = kernel ]; then
      printf '[dataplane]\nbackend = "kernel"\nnetwork_workers = %s\n' "$lcores"
    else
      printf '[dataplane]\nbackend = "dpdk"\n\n[dpdk]\n'
      dpdk_lcores "$polling"
      printf 'no_huge = true\nmemory_mb = 512\nvdevs = ["net_%s0,iface=%s%s"]\n' "$mode" "$HOST_IF" "$options"
      printf 'ip_address = "%s"\nprefix_len = 24\nport = %s\nidle_backoff_us = %s\nmtu = %s\n' \
        "$APPLIANCE_IP" "$PORT" "$idle_backoff_us" "$wire_mtu"
    fi
  } >"$config"
  IGGY_ROOT_USERNAME=iggy IGGY_ROOT_PASSWORD=iggy \
    "$release/riptide-dataplane" --config "$config" >"$output/server-$mode-$wire_mtu.log" 2>&1 &
  server_pid=$!
  appliance_wait_ready "$server_pid" "$data" "$output/server-$mode-$wire_mtu.log" >/dev/null
  if [ "$mode" = kernel ]; then address="$HOST_IP:$PORT"; else address="$APPLIANCE_IP:$PORT"; fi
  echo "bench-dpdk.sh: $mode: riptide-dataplane (pid $server_pid) at $address" >&2
}


rows=()
# measure MODE NAME BENCH-ARGS...: one riptide-bench run from the namespace with the appliance's
# system calls and context switches counted; appends a table row (at the wire's MTU, $wire_mtu).
measure() {
  local mode="$1" name="$2"; shift 2
  local base="$output/$mode-$wire_mtu-$name" hot log
  hot="$(hot_threads "$mode")"
  ctx_snapshot "$server_pid" >"$base.ctx-before"
  perf stat -e raw_syscalls:sys_enter,syscalls:sys_enter_clock_nanosleep --per-thread -x, \
    -p "$server_pid" -o "$base.perf" &
  local perf_pid=$!
  sleep 0.5   # perf attaches to every thread before the load starts
  if ! log="$(ip netns exec "$NS" "$release/riptide-bench" -m "$message_size" -P "$messages_per_batch" \
      -b "$batches" --ack "$ack" --inflight "$inflight" "$@" tcp --server-address "$address" \
      output -o "$base" 2>"$base.err")"; then
    kill -INT "$perf_pid" 2>/dev/null || true; wait "$perf_pid" 2>/dev/null || true
    echo "bench-dpdk.sh: $mode $name failed:" >&2; cat "$base.err" >&2
    rows+=("$mode $name $wire_mtu FAILED")
    return 0
  fi
  kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
  ctx_snapshot "$server_pid" >"$base.ctx-after"
  echo "$log" >"$base.txt"
  local summary messages syscalls ctx
  summary="$(grep '^summary: ' <<<"$log" | head -1)"
  messages="$(sed -n 's/.*messages=\([0-9]*\).*/\1/p' <<<"$summary")"
  # perf's per-thread lines: "comm-tid,count,,event,...". Idle sleeps: the idle back-off (DPDK)
  # or any other sleep of a hot thread.
  syscalls="$(awk -F, -v hot="$hot" '/sys_enter/ {
      comm = $1; sub(/-[0-9]+$/, "", comm); n = ($2 ~ /^[0-9]+$/) ? $2 : 0
      if ($4 ~ /clock_nanosleep/) { if (comm ~ hot) sleeps += n; next }
      total += n; if (comm ~ hot) lcore += n }
    END { print total + 0, lcore - sleeps, sleeps + 0 }' "$base.perf")"
  ctx="$(awk -v hot="$hot" 'NR == FNR { before[$1] = $3; next }
      { d = $3 - before[$1]; total += d; if ($2 ~ hot) lcore += d }
      END { print total + 0, lcore + 0 }' "$base.ctx-before" "$base.ctx-after")"
  read -r sys_total sys_hot sys_hot_sleeps <<<"$syscalls"
  rows+=("$mode $name $wire_mtu $summary messages=$messages syscalls=$sys_total syscalls_hot=$sys_hot sleeps_hot=$sys_hot_sleeps ctx=${ctx% *} ctx_hot=${ctx#* }")
  echo "bench-dpdk.sh: $mode $name done" >&2
}

# Which system calls the hot threads make: perf trace -s over a short producer and consumer run.
attribute() {
  local mode="$1" file hot
  file="$output/$mode-$wire_mtu-trace.txt"
  hot="$(hot_threads "$mode")"
  perf trace -s -p "$server_pid" -o "$file" &
  local trace_pid=$!
  sleep 1
  local run batches_short=$(( batches / 4 > 0 ? batches / 4 : 1 ))
  for run in "pinned-producer -p $producers" "pinned-consumer -c $producers"; do
    # shellcheck disable=SC2086 # the run's mode and its option are two words
    ip netns exec "$NS" "$release/riptide-bench" -m "$message_size" -P "$messages_per_batch" \
      -b "$batches_short" --ack "$ack" --inflight "$inflight" $run \
      tcp --server-address "$address" >/dev/null 2>&1 || true
  done
  kill -INT "$trace_pid"; wait "$trace_pid" 2>/dev/null || true
  echo "(a producer run, then a consumer run, each of $(( producers * batches_short * messages_per_batch )) messages)" >"$file.hot"
  # Keep the sections of the hot threads: a header " comm (tid), N events, ..." and its table.
  awk -v hot="$hot" '/^ [^ ].* \([0-9]+\), [0-9]+ events/ { keep = ($1 ~ hot) }
    keep && NF' "$file" >>"$file.hot"
}

# The ceilings: one kernel TCP connection over the same veth, 1 MiB writes and reads, each way
# (up: namespace to host, the producers' direction; down: host to namespace, the consumers').
cat >"$work/ceiling.py" <<'PY'
import socket, sys, time
role, address, port, total = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
chunk = bytearray(1 << 20)
def pump(connection, sending):
    moved = 0
    while moved < total if sending else True:
        if sending:
            connection.sendall(chunk)
            moved += len(chunk)
        else:
            received = connection.recv_into(chunk)
            if not received:
                break
            moved += received
    return moved
if role.startswith("listen"):
    server = socket.create_server((address, port))
    connection, _ = server.accept()
    start = time.monotonic()
    moved = pump(connection, role == "listen-send")
else:
    connection = socket.create_connection((address, port))
    start = time.monotonic()
    moved = pump(connection, role == "connect-send")
connection.shutdown(socket.SHUT_WR)
while connection.recv_into(chunk):
    pass
print(f"{moved / (time.monotonic() - start) / 1e6:.0f}")
PY
# veth_ceiling up|down: MB/s measured by the receiving side.
veth_ceiling() {
  local bytes=$(( 1024 * 1024 * 1024 ))
  if [ "$1" = up ]; then
    python3 "$work/ceiling.py" listen-receive "$HOST_IP" "$CEILING_PORT" "$bytes" >"$work/ceiling.out" &
    local receiver=$!
    sleep 0.5
    ip netns exec "$NS" python3 "$work/ceiling.py" connect-send "$HOST_IP" "$CEILING_PORT" "$bytes" >/dev/null
    wait "$receiver"
  else
    python3 "$work/ceiling.py" listen-send "$HOST_IP" "$CEILING_PORT" "$bytes" >/dev/null &
    local sender=$!
    sleep 0.5
    ip netns exec "$NS" python3 "$work/ceiling.py" connect-receive "$HOST_IP" "$CEILING_PORT" "$bytes" >"$work/ceiling.out"
    wait "$sender"
  fi
  cat "$work/ceiling.out"
}

lab_up "$lcores"
# The MTUs of the run: af_xdp's first when it differs (with a kernel row at it), then --mtu.
declare -A modes_at
mtus=()
for mode in $modes; do
  case "$mode" in af_xdp|af_packet|kernel) ;; *) echo "bench-dpdk.sh: unknown mode $mode" >&2; exit 2 ;; esac
done
if [[ " $modes " == *" af_xdp "* ]] && [ "$af_xdp_mtu" != "$mtu" ]; then
  mtus+=("$af_xdp_mtu"); modes_at[$af_xdp_mtu]="af_xdp"
  [[ " $modes " != *" kernel "* ]] || modes_at[$af_xdp_mtu]+=" kernel"
  others="$(tr ' ' '\n' <<<"$modes" | grep -vx af_xdp | tr '\n' ' ' || true)"
  if [ -n "${others// /}" ]; then mtus+=("$mtu"); modes_at[$mtu]="$others"; fi
else
  mtus+=("$mtu"); modes_at[$mtu]="$modes"
fi
declare -A ceiling_up ceiling_down
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
for wire_mtu in "${mtus[@]}"; do
  lab_mtu "$wire_mtu"
  ceiling_up[$wire_mtu]=$(veth_ceiling up)
  ceiling_down[$wire_mtu]=$(veth_ceiling down)
  echo "bench-dpdk.sh: MTU $wire_mtu: veth TCP ceilings: up ${ceiling_up[$wire_mtu]} MB/s, down ${ceiling_down[$wire_mtu]} MB/s" >&2
  for mode in ${modes_at[$wire_mtu]}; do
    start_server "$mode" "$wire_mtu"
    measure "$mode" producer pinned-producer -p "$producers"
    measure "$mode" consumer pinned-consumer -c "$producers"
    [ "$mode" = kernel ] || attribute "$mode"
    stop_server
  done
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
per_1k() { awk -v n="$1" -v m="$2" 'BEGIN { if (m > 0) printf "%.2f", n * 1000 / m; else print "n/a" }'; }

echo
echo "riptide DPDK vs kernel on one veth — $(date -u +%Y-%m-%dT%H:%MZ), $cpus_count CPUs," \
  "$producers actors x $batches batches x $messages_per_batch x $message_size B, ack $ack," \
  "inflight $inflight, polling lcores/workers $lcores (af_xdp 1), idle backoff ${idle_backoff_us} us," \
  "MTU $mtu (af_xdp $af_xdp_mtu)"
echo "load average before: $load_before, after: $load_after"
for wire_mtu in "${mtus[@]}"; do
  echo "MTU $wire_mtu (${modes_at[$wire_mtu]% }): ceilings, one kernel TCP connection over the same veth: up (namespace to host, producers) ${ceiling_up[$wire_mtu]} MB/s, down (consumers) ${ceiling_down[$wire_mtu]} MB/s"
done
[ "${#mtus[@]}" -eq 1 ] || echo "af_xdp runs at MTU $af_xdp_mtu (the most it takes), the others at $mtu: compare each DPDK row with the kernel row and the ceilings of its MTU"
printf '%-10s %-9s %5s %8s %5s %8s %8s %8s %9s %9s %9s %9s %9s\n' mode run mtu MB/s ceil msgs/s p50_ms \
  p99_ms sys/1k sys_hot/1k sleep_hot ctxsw/1k ctx_hot/1k
for r in "${rows[@]}"; do
  read -r mode name wire_mtu rest <<<"$r"
  if [ "$rest" = FAILED ]; then printf '%-10s %-9s %5s FAILED\n' "$mode" "$name" "$wire_mtu"; continue; fi
  messages=$(field messages "$rest")
  if [ "$name" = producer ]; then ceiling="${ceiling_up[$wire_mtu]}"; else ceiling="${ceiling_down[$wire_mtu]}"; fi
  printf '%-10s %-9s %5s %8s %5s %8s %8s %8s %9s %9s %9s %9s %9s\n' "$mode" "$name" "$wire_mtu" \
    "$(field mb_per_sec "$rest")" \
    "$(awk -v a="$(field mb_per_sec "$rest")" -v b="$ceiling" 'BEGIN { printf "%.2f", a / b }')" \
    "$(field msg_per_sec "$rest")" \
    "$(awk -v u="$(field p50_us "$rest")" 'BEGIN { printf "%.3f", u / 1000 }')" \
    "$(awk -v u="$(field p99_us "$rest")" 'BEGIN { printf "%.3f", u / 1000 }')" \
    "$(per_1k "$(field syscalls "$rest")" "$messages")" "$(per_1k "$(field syscalls_hot "$rest")" "$messages")" \
    "$(per_1k "$(field sleeps_hot "$rest")" "$messages")" \
    "$(per_1k "$(field ctx "$rest")" "$messages")" "$(per_1k "$(field ctx_hot "$rest")" "$messages")"
done
echo "per 1000 messages: sys = system calls of the appliance, all threads; sys_hot = those of the hot"
echo "  threads, DPDK's rte-worker-* (polling lcores) or kernel mode's riptide-net-* (network workers),"
echo "  without their sleeps; sleep_hot = clock_nanosleep of the hot threads (the idle back-off);"
echo "  ctxsw = voluntary + involuntary context switches (all threads / hot threads)"
for wire_mtu in "${mtus[@]}"; do
  for mode in ${modes_at[$wire_mtu]}; do
    [ -s "$output/$mode-$wire_mtu-trace.txt.hot" ] || continue
    echo
    echo "$mode (MTU $wire_mtu): system calls of the polling lcores (perf trace -s):"
    cat "$output/$mode-$wire_mtu-trace.txt.hot"
  done
done
echo "results: $output"
