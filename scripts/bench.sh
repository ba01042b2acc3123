#!/usr/bin/env bash
# Runs riptide's standard benchmark suite against a freshly started appliance and prints ONE table:
# every figure in MB/s and as a fraction of the machine ceiling measured in the same run.
#
# Ceilings (measured on the filesystem that holds the data directory, and on loopback):
#   disk write  dd oflag=direct conv=fdatasync, sequential 1 MiB blocks
#   (also shown, not used as a ceiling: disk write with O_DSYNC per batch-sized block, which is what
#   a durable acknowledgement of one batch at a time costs the disk: one cache flush per write)
#   disk read   dd iflag=direct of the same file
#   loopback    riptide-loopback-ceiling: one TCP connection on 127.0.0.1, 1 MiB writes
# Suite, for each acknowledgement mode (durable, memory), each on a fresh appliance whose
# acknowledgement floor is that mode (the memory rows need storage.ack_floor = memory: with the
# default floor `persisted` a topic asking for memory acknowledgements still gets durable ones):
#   pinned-producer, pinned-consumer, pinned-producer-and-consumer,
#   balanced-producer + balanced-consumer-group
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/bench.sh [options]
Builds riptide in release mode, starts riptide-dataplane on a fresh data directory, measures the
machine's ceilings, runs the standard suite and prints one table (MB/s and fraction of ceiling).

  --quick                 small sizes: the whole run takes about a minute
  --producers N           producers (and consumers) per benchmark      (default 4, quick 2)
  --batches N             batches per actor                             (default 250, quick 40)
  --message-size BYTES    payload bytes per message                     (default 1000)
  --messages-per-batch N  messages per batch                            (default 1000)
  --partitions N          partitions in the balanced benchmarks         (default 8, quick 4)
  --inflight N            requests in flight per connection             (default 1)
  --acks "durable memory" acknowledgement modes to run                  (default both)
  --data-parent DIR       where the fresh data directory is created     (default /var/tmp)
  --output DIR            keep every benchmark's JSON/HTML/PNG here     (default: a temp dir)
  --no-verify             skip riptide-bench --verify (consumers then spend no CPU on checking)
  --no-tls                skip the TLS rows (pinned producer and consumer, ack memory: plaintext,
                          TLS with rustls in userspace, and kTLS when the kernel offers it)
  --skip-build            use the binaries already built
  -h, --help              this text
Environment: CARGO_TARGET_DIR (default <repo>/target) locates the binaries.
USAGE
}

producers=""; batches=""; partitions=""
message_size=1000; messages_per_batch=1000; inflight=1
acks="durable memory"; data_parent=/var/tmp; output=""; quick=0; build=1; verify=--verify; tls_rows=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --no-tls) tls_rows=0 ;;
    --producers) producers="$2"; shift ;;
    --batches) batches="$2"; shift ;;
    --message-size) message_size="$2"; shift ;;
    --messages-per-batch) messages_per_batch="$2"; shift ;;
    --partitions) partitions="$2"; shift ;;
    --inflight) inflight="$2"; shift ;;
    --acks) acks="$2"; shift ;;
    --data-parent) data_parent="$2"; shift ;;
    --output) output="$2"; shift ;;
    --skip-build) build=0 ;;
    --no-verify) verify="" ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
if [ "$quick" -eq 1 ]; then
  producers="${producers:-2}"; batches="${batches:-40}"; partitions="${partitions:-4}"
else
  producers="${producers:-4}"; batches="${batches:-250}"; partitions="${partitions:-8}"
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
release="$target/release"

if [ "$build" -eq 1 ]; then
  echo "bench.sh: building release binaries" >&2
  (cd "$repo" && cargo build --release -p riptide-dataplane -p riptide-bench -p riptide-storage >&2)
fi
for bin in riptide-dataplane riptide-bench riptide-loopback-ceiling; do
  [ -x "$release/$bin" ] || { echo "bench.sh: $release/$bin missing (build failed?)" >&2; exit 1; }
done

work="$(mktemp -d "$data_parent/riptide-bench.XXXXXX")"
data=""
[ -n "$output" ] || output="$work/results"
mkdir -p "$output"
server_pid=""
# shellcheck source=scripts/lib/appliance.sh
source "$repo/scripts/lib/appliance.sh"
stop_server() {
  appliance_stop "$server_pid"
  server_pid=""
  [ -z "$data" ] || rm -rf "$data"
}
cleanup() {
  stop_server
  rm -f "$work/ceiling.bin"
}
trap cleanup EXIT

# Volume of one producer run: the disk ceiling writes and reads the same amount.
volume_mb=$(( producers * batches * message_size * messages_per_batch / 1000000 ))
[ "$volume_mb" -ge 64 ] || volume_mb=64

# MB/s (10^6 bytes) from dd's closing line: "<bytes> bytes (...) copied, <seconds> s, ...".
dd_mb_per_sec() {
  awk '/copied/ { for (i = 1; i <= NF; i++) if ($i == "s,") s = $(i-1); printf "%.1f\n", $1 / s / 1e6 }'
}

echo "bench.sh: measuring ceilings on $(df --output=source,fstype "$data_parent" | tail -1) ($volume_mb MB)" >&2
disk_write=$(dd if=/dev/zero of="$work/ceiling.bin" bs=1M count="$volume_mb" oflag=direct conv=fdatasync 2>&1 | dd_mb_per_sec)
disk_read=$(dd if="$work/ceiling.bin" of=/dev/null bs=1M iflag=direct 2>&1 | dd_mb_per_sec)
rm -f "$work/ceiling.bin"
batch_kib=$(( (message_size * messages_per_batch + 1023) / 1024 ))
disk_write_dsync=$(dd if=/dev/zero of="$work/ceiling.bin" bs="${batch_kib}K" count=$(( volume_mb * 1024 / batch_kib + 1 )) oflag=direct,dsync 2>&1 | dd_mb_per_sec)
rm -f "$work/ceiling.bin"
loopback=$("$release/riptide-loopback-ceiling" --total-bytes "${volume_mb}MB" | sed -n 's/^loopback_mb_per_sec=//p')

servers_started=0
ack_floor=persisted
# Extra server environment and riptide-bench tcp options (the TLS rows set them).
server_env=()
tcp_tls=()
# Starts riptide-dataplane with storage.ack_floor = $ack_floor on a fresh data directory and learns
# its address from runtime/current_config.toml (it binds port 0).
start_server() {
  servers_started=$((servers_started + 1))
  data="$work/data.$servers_started"
  mkdir -p "$data"
  echo "bench.sh: starting riptide-dataplane (data $data)" >&2
  env ${server_env[@]+"${server_env[@]}"} RIPTIDE_STORAGE_ACK_FLOOR="$ack_floor" IGGY_SYSTEM_PATH="$data" IGGY_TCP_ADDRESS=127.0.0.1:0 IGGY_ROOT_USERNAME=iggy IGGY_ROOT_PASSWORD=iggy \
    "$release/riptide-dataplane" >"$work/server.$servers_started.log" 2>&1 &
  server_pid=$!
  address=$(appliance_wait_ready "$server_pid" "$data" "$work/server.$servers_started.log")
  echo "bench.sh: server at $address" >&2
}

rows=()
failed=""
# run NAME ACK MODE [MODE OPTIONS...]: one benchmark, verified; appends a row per actor group.
# A failure (refused request, failed verification, stalled server) is recorded as a FAILED row and
# the server is restarted on a fresh data directory so the rest of the suite still runs; the
# script then exits non-zero after printing the table.
run() {
  local name="$1" ack="$2"; shift 2
  local dir="$output/$name-$ack" log
  if ! log="$("$release/riptide-bench" -m "$message_size" -P "$messages_per_batch" -b "$batches" \
    --ack "$ack" --inflight "$inflight" ${verify:+"$verify"} "$@" tcp --server-address "$address" ${tcp_tls[@]+"${tcp_tls[@]}"} output -o "$dir" 2>"$dir.err")"; then
    echo "bench.sh: $name ($ack) failed after ${SECONDS}s:" >&2; cat "$dir.err" >&2
    failed="$failed $name($ack)"
    rows+=("$name $ack FAILED -")
    stop_server
    start_server
    return 0
  fi
  echo "$log" >"$dir.txt"
  echo "bench.sh: $name ($ack) done after ${SECONDS}s" >&2
  while read -r _ actor fields; do
    rows+=("$name $ack $actor $fields")
  done < <(grep '^summary: ' <<<"$log")
}

# run_reading PRODUCER NAME ACK ...: a consumer benchmark that reads what PRODUCER wrote; skipped
# (not failed) when PRODUCER failed, since the restarted server has no data.
run_reading() {
  local producer="$1" name="$2" ack="$3"
  if [[ " $failed " == *" $producer($ack) "* ]]; then
    rows+=("$name $ack skipped -")
    return 0
  fi
  shift
  run "$@"
}

for ack in $acks; do
  stop_server
  case "$ack" in durable) ack_floor=persisted ;; *) ack_floor=memory ;; esac
  start_server
  run pinned-producer "$ack" pinned-producer -p "$producers"
  run_reading pinned-producer pinned-consumer "$ack" pinned-consumer -c "$producers"
  run pinned-producer-and-consumer "$ack" pinned-producer-and-consumer -p "$producers" -c "$producers"
  run balanced-producer "$ack" balanced-producer -p "$producers" -a "$partitions"
  run_reading balanced-producer balanced-consumer-group "$ack" balanced-consumer-group -c "$producers" -g 1
done

# TLS rows: the same pinned producer and consumer (ack memory: the network path, not the disk,
# bounds them) over plaintext, TLS with rustls in userspace, and kTLS. The certificates come from
# openssl (a CA and a server certificate for localhost/127.0.0.1), as an operator's would.
ktls_status=""
if [ "$tls_rows" -eq 1 ]; then
  stop_server
  pki="$work/pki"; mkdir -p "$pki"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=riptide bench CA" -keyout "$pki/ca-key.pem" -out "$pki/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
    -keyout "$pki/server-key.pem" -out "$pki/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$pki/ext.cnf"
  openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca-key.pem" -CAcreateserial \
    -days 2 -extfile "$pki/ext.cnf" -out "$pki/server.pem" 2>/dev/null
  tls_env=(RIPTIDE_TLS_ENABLED=true RIPTIDE_TLS_CERT_FILE="$pki/server.pem" RIPTIDE_TLS_KEY_FILE="$pki/server-key.pem")
  # kTLS: ktls = "on" refuses to start (EX_CONFIG, naming why) when the kernel does not offer it.
  probe_dir="$work/ktls-probe"; mkdir -p "$probe_dir"
  env "${tls_env[@]}" RIPTIDE_TLS_KTLS=on IGGY_SYSTEM_PATH="$probe_dir" IGGY_TCP_ADDRESS=127.0.0.1:0 \
    "$release/riptide-dataplane" >"$work/ktls-probe.log" 2>&1 &
  probe_pid=$!
  for _ in $(seq 1 300); do
    kill -0 "$probe_pid" 2>/dev/null || break
    [ -f "$probe_dir/runtime/current_config.toml" ] && break
    sleep 0.1
  done
  if kill -0 "$probe_pid" 2>/dev/null; then
    appliance_stop "$probe_pid"
  else
    wait "$probe_pid" 2>/dev/null || true
    if grep -q CONFIG_TLS "$work/ktls-probe.log"; then
      ktls_status="unavailable: kernel has no CONFIG_TLS"
    else
      ktls_status="unavailable: $(tail -1 "$work/ktls-probe.log")"
    fi
  fi
  rm -rf "$probe_dir"
  ack_floor=memory
  for variant in plaintext tls-rustls tls-ktls; do
    case "$variant" in
      plaintext) server_env=(); tcp_tls=() ;;
      tls-rustls) server_env=("${tls_env[@]}" RIPTIDE_TLS_KTLS=off); tcp_tls=(--tls-ca-file "$pki/ca.pem" --tls-domain localhost) ;;
      tls-ktls)
        if [ -n "$ktls_status" ]; then
          rows+=("$variant-producer memory unavailable -")
          rows+=("$variant-consumer memory unavailable -")
          continue
        fi
        server_env=("${tls_env[@]}" RIPTIDE_TLS_KTLS=on); tcp_tls=(--tls-ca-file "$pki/ca.pem" --tls-domain localhost) ;;
    esac
    start_server
    run "$variant-producer" memory pinned-producer -p "$producers"
    run_reading "$variant-producer" "$variant-consumer" memory pinned-consumer -c "$producers"
    stop_server
  done
  server_env=(); tcp_tls=()
fi

field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
fraction() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
lower() { awk -v a="$1" -v b="$2" 'BEGIN { print (a < b) ? a : b }'; }

echo
echo "riptide bench — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $producers actors x $batches batches x $messages_per_batch x $message_size B, inflight $inflight"
printf 'ceilings: disk write %s MB/s, disk read %s MB/s, loopback TCP %s MB/s\n' "$disk_write" "$disk_read" "$loopback"
printf '(for reference: disk write with O_DSYNC per %s KiB block %s MB/s)\n' "$batch_kib" "$disk_write_dsync"
printf '%-30s %-8s %-10s %10s %-18s %9s %10s %10s\n' benchmark ack actors MB/s ceiling fraction p50_ms p99_ms
for r in "${rows[@]}"; do
  read -r name ack actor fields <<<"$r"
  if [ "$actor" = "unavailable" ]; then
    printf '%-30s %-8s %s\n' "$name" "$ack" "$ktls_status"
    continue
  fi
  if [ "$actor" = "FAILED" ] || [ "$actor" = "skipped" ]; then
    printf '%-30s %-8s %-10s\n' "$name" "$ack" "$actor"
    continue
  fi
  mbps=$(field mb_per_sec "$fields"); p50=$(field p50_us "$fields"); p99=$(field p99_us "$fields")
  if [ "$actor" = "producer" ]; then
    # Producers are bound by both the disk and the network: the lower ceiling applies.
    ceiling=$(lower "$disk_write" "$loopback"); ceiling_name="min(disk w, tcp)"
  else
    ceiling="$loopback"; ceiling_name="loopback tcp"
  fi
  case "$name" in
    # TLS rows: the ceiling is plaintext measured in this run, so the fraction is TLS's cost.
    tls-*)
      ceiling=$(field mb_per_sec "$(printf '%s\n' "${rows[@]}" | awk -v n="plaintext-${name##*-}" '$1 == n' | head -1)")
      ceiling_name="plaintext" ;;
  esac
  printf '%-30s %-8s %-10s %10s %-18s %9s %10s %10s\n' "$name" "$ack" "${actor}s" "$mbps" \
    "$ceiling_name" "$(fraction "$mbps" "$ceiling")" \
    "$(awk -v u="$p50" 'BEGIN{printf "%.3f", u/1000}')" "$(awk -v u="$p99" 'BEGIN{printf "%.3f", u/1000}')"
done
echo "results: $output (server logs: $work/server.*.log)"
if [ -n "$failed" ]; then
  echo "bench.sh: failed:$failed" >&2
  exit 1
fi
