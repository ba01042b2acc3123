# shellcheck shell=bash
# Shared by the benchmark scripts (sourced, not run): waiting for a riptide-dataplane process to be
# ready, stopping it, and reading its threads' context switches.

# appliance_wait_ready PID DATA_DIR LOG: waits (30 s at most) until the dataplane wrote
# DATA_DIR/runtime/current_config.toml, its "ready" signal; exits the script with the log when the
# process died or never got ready. Prints the bound [tcp] address.
appliance_wait_ready() {
  local pid="$1" data="$2" log="$3" address=""
  for _ in $(seq 1 300); do
    if [ -f "$data/runtime/current_config.toml" ]; then
      address=$(awk '/^\[/{tcp=($0=="[tcp]")} tcp && /^address/ {gsub(/"/, "", $3); print $3}' "$data/runtime/current_config.toml")
      [ -n "$address" ] && break
    fi
    kill -0 "$pid" 2>/dev/null || { echo "riptide-dataplane exited; log:" >&2; cat "$log" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$address" ] || { echo "riptide-dataplane did not get ready in 30 s; log:" >&2; cat "$log" >&2; exit 1; }
  echo "$address"
}

# appliance_stop PID: SIGTERM (the dataplane syncs and exits), SIGKILL after 20 s.
appliance_stop() {
  local pid="$1"
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 200); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "riptide-dataplane (pid $pid) ignored SIGTERM for 20 s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# ctx_snapshot PID: context switches per thread of PID, a line each: "tid comm voluntary+nonvoluntary".
ctx_snapshot() {
  local task
  for task in /proc/"$1"/task/*; do
    awk -v tid="${task##*/}" -v comm="$(tr ' ' _ <"$task/comm" 2>/dev/null)" \
      '/^voluntary_ctxt_switches|^nonvoluntary_ctxt_switches/ { n += $2 }
       END { print tid, comm, n }' "$task/status" 2>/dev/null || true
  done
}

# hot_threads MODE: the regex of the appliance's polling threads' names in MODE (kernel or DPDK;
# DPDK names its lcore threads rte-worker-N, lcore-worker-N in other releases).
hot_threads() { if [ "$1" = kernel ]; then echo '^riptide-net-'; else echo '^(rte|lcore)-worker-'; fi; }
