#!/usr/bin/env bash
# Reserves hugepages for the DPDK backend on every NUMA node (or chosen ones), mounts a hugetlbfs
# for them and makes both survive a reboot (a oneshot systemd unit for the per-node counts, since
# vm.nr_hugepages in sysctl.d cannot say which node; an fstab line for the mount). `--undo` puts
# back the counts that were there before and removes the mount and the persistence.
set -euo pipefail
shopt -s inherit_errexit

PROG=hugepages
PAGES_PER_NODE=256
PAGE_SIZE=2M
NODES=all
MOUNT_DIR=/dev/hugepages-riptide
STATE_DIR=/var/lib/riptide/hugepages
UNIT_FILE=${RIPTIDE_UNIT_DIR:-/etc/systemd/system}/riptide-hugepages.service
FSTAB=${RIPTIDE_FSTAB:-/etc/fstab}
PERSIST=1
DRY_RUN=0
UNDO=0
# Refuse absurd requests early; the kernel would only allocate what it can anyway.
PAGES_PER_NODE_MAX=1048576
FSTAB_TAG="# riptide-hugepages"

usage() {
  cat <<USAGE
Usage: scripts/hugepages.sh [OPTIONS]
Reserves hugepages per NUMA node, mounts hugetlbfs and persists both across reboots (needs root).

Options (defaults in brackets):
  --pages N        pages to reserve on each selected node [$PAGES_PER_NODE]
  --size 2M|1G     page size [$PAGE_SIZE]; 1G pages may need the kernel command line
                   (hugepagesz=1G hugepages=N) when memory is fragmented
  --nodes LIST     comma-separated NUMA node ids, or "all" [$NODES]
  --mount DIR      hugetlbfs mount point [$MOUNT_DIR]
  --state-dir DIR  where the previous counts are kept for --undo [$STATE_DIR]
  --no-persist     reserve and mount now only; do not touch systemd units or $FSTAB
  --undo           restore the previous counts, unmount, remove the persistence
  --dry-run        print what would be done, change nothing
  -h, --help       this text

Environment: RIPTIDE_FSTAB (default /etc/fstab) and RIPTIDE_UNIT_DIR (default /etc/systemd/system)
point the persistence elsewhere, e.g. into a scratch directory for a test or an image build.
USAGE
}

die() { echo "$PROG: $*" >&2; exit 1; }

# Runs a command, or only prints it with --dry-run.
run() {
  if [ "$DRY_RUN" -eq 1 ]; then
    echo "would run: $*"
  else
    "$@"
  fi
}

# Writes VALUE into FILE (a sysfs knob or a config file), or prints it with --dry-run.
write_file() {
  local file=$1 value=$2
  if [ "$DRY_RUN" -eq 1 ]; then
    echo "would write '$value' to $file"
  else
    printf '%s\n' "$value" >"$file"
  fi
}

size_kb() {
  case "$PAGE_SIZE" in
    2M|2m|2048k|2048kB) echo 2048 ;;
    1G|1g|1048576k|1048576kB) echo 1048576 ;;
    *) die "--size '$PAGE_SIZE' is not supported; use 2M or 1G" ;;
  esac
}

all_nodes() {
  local dir
  if [ -d /sys/devices/system/node ]; then
    for dir in /sys/devices/system/node/node[0-9]*; do
      [ -d "$dir" ] && basename "$dir" | sed 's/^node//'
    done
  else
    echo 0 # kernels without NUMA support show no node directory: treat as one node
  fi
}

# Path of a node's nr_hugepages knob; without NUMA sysfs the global knob stands for node 0.
node_knob() {
  local node=$1 kb=$2
  if [ -d /sys/devices/system/node ]; then
    echo "/sys/devices/system/node/node$node/hugepages/hugepages-${kb}kB/nr_hugepages"
  else
    echo "/sys/kernel/mm/hugepages/hugepages-${kb}kB/nr_hugepages"
  fi
}

selected_nodes() {
  if [ "$NODES" = all ]; then
    all_nodes
  else
    tr ',' '\n' <<<"$NODES"
  fi
}

check_inputs() {
  [[ "$PAGES_PER_NODE" =~ ^[0-9]+$ ]] || die "--pages '$PAGES_PER_NODE' must be a whole number"
  [ "$PAGES_PER_NODE" -le "$PAGES_PER_NODE_MAX" ] || die "--pages $PAGES_PER_NODE exceeds $PAGES_PER_NODE_MAX"
  local kb node
  kb=$(size_kb)
  [ -d "/sys/kernel/mm/hugepages/hugepages-${kb}kB" ] ||
    die "this kernel or CPU has no ${PAGE_SIZE} hugepages (/sys/kernel/mm/hugepages/hugepages-${kb}kB is missing); use --size 2M"
  for node in $(selected_nodes); do
    [[ "$node" =~ ^[0-9]+$ ]] || die "--nodes: '$node' is not a node number"
    [ -e "$(node_knob "$node" "$kb")" ] ||
      die "--nodes: NUMA node $node does not exist (present: $(all_nodes | paste -sd, -))"
  done
  case "$MOUNT_DIR" in
    /*) ;;
    *) die "--mount '$MOUNT_DIR' must be an absolute path" ;;
  esac
  if [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    die "reserving hugepages needs root; run: sudo $0 (or add --dry-run)"
  fi
}

reserve() {
  local kb node knob before got
  kb=$(size_kb)
  run mkdir -p "$STATE_DIR"
  for node in $(selected_nodes); do
    knob=$(node_knob "$node" "$kb")
    before=$(cat "$knob")
    # Keep the count from before the first run so that --undo can restore it.
    if [ ! -e "$STATE_DIR/node$node-${kb}kB" ]; then
      write_file "$STATE_DIR/node$node-${kb}kB" "$before"
    fi
    write_file "$knob" "$PAGES_PER_NODE"
    if [ "$DRY_RUN" -eq 0 ]; then
      got=$(cat "$knob")
      if [ "$got" -lt "$PAGES_PER_NODE" ]; then
        echo "$PROG: warning: node $node has only $got of $PAGES_PER_NODE ${PAGE_SIZE} pages" \
          "(memory is fragmented or too small); reserve at boot or ask for fewer" >&2
      fi
      echo "$PROG: node $node: $got ${PAGE_SIZE} pages (was $before)"
    fi
  done
}

mount_fs() {
  if mountpoint -q "$MOUNT_DIR" 2>/dev/null; then
    echo "$PROG: $MOUNT_DIR is already mounted"
    return 0
  fi
  run mkdir -p "$MOUNT_DIR"
  run mount -t hugetlbfs -o "pagesize=$PAGE_SIZE" nodev "$MOUNT_DIR"
  [ "$DRY_RUN" -eq 1 ] || echo "$PROG: mounted hugetlbfs (pagesize=$PAGE_SIZE) on $MOUNT_DIR"
}

# Drops our tag comment and any hugetlbfs line for our mount point; fstab has no trailing comments,
# so the tag sits on its own line above the entry.
fstab_remove() {
  [ -e "$FSTAB" ] || return 0
  grep -qF "$FSTAB_TAG" "$FSTAB" || return 0
  if [ "$DRY_RUN" -eq 1 ]; then
    echo "would remove the riptide hugetlbfs entry from $FSTAB"
    return 0
  fi
  local tmp
  tmp=$(mktemp "$FSTAB.XXXXXX")
  awk -v tag="$FSTAB_TAG" -v dir="$MOUNT_DIR" \
    'index($0, tag) == 1 { next } $2 == dir && $3 == "hugetlbfs" { next } { print }' "$FSTAB" >"$tmp"
  cat "$tmp" >"$FSTAB"
  rm -f "$tmp"
}

unit_text() {
  local kb node
  kb=$(size_kb)
  echo "[Unit]"
  echo "Description=riptide: reserve ${PAGE_SIZE} hugepages per NUMA node"
  echo "DefaultDependencies=no"
  echo "Before=sysinit.target riptide-control.service"
  echo "ConditionPathExists=/sys/kernel/mm/hugepages/hugepages-${kb}kB"
  echo
  echo "[Service]"
  echo "Type=oneshot"
  echo "RemainAfterExit=yes"
  for node in $(selected_nodes); do
    echo "ExecStart=/bin/sh -c 'echo $PAGES_PER_NODE > $(node_knob "$node" "$kb")'"
  done
  echo
  echo "[Install]"
  echo "WantedBy=sysinit.target"
}

persist() {
  local line="nodev $MOUNT_DIR hugetlbfs pagesize=$PAGE_SIZE 0 0"
  if [ "$DRY_RUN" -eq 1 ]; then
    echo "would write $UNIT_FILE:"
    unit_text | sed 's/^/    /'
  else
    unit_text >"$UNIT_FILE"
    echo "$PROG: wrote $UNIT_FILE"
  fi
  if [ -d /run/systemd/system ]; then
    run systemctl daemon-reload
    run systemctl enable riptide-hugepages.service
  else
    echo "$PROG: systemd is not running here; enable later with: systemctl enable riptide-hugepages.service"
  fi
  fstab_remove
  if [ "$DRY_RUN" -eq 1 ]; then
    echo "would append to $FSTAB: $FSTAB_TAG / $line"
  else
    printf '%s\n%s\n' "$FSTAB_TAG (scripts/hugepages.sh)" "$line" >>"$FSTAB"
    echo "$PROG: added the mount to $FSTAB"
  fi
}

undo() {
  local kb node saved
  kb=$(size_kb)
  if mountpoint -q "$MOUNT_DIR" 2>/dev/null; then
    run umount "$MOUNT_DIR"
  fi
  for node in $(selected_nodes); do
    saved="$STATE_DIR/node$node-${kb}kB"
    if [ -e "$saved" ]; then
      write_file "$(node_knob "$node" "$kb")" "$(cat "$saved")"
      run rm -f "$saved"
      [ "$DRY_RUN" -eq 1 ] || echo "$PROG: node $node: restored $(cat "$(node_knob "$node" "$kb")") pages"
    else
      echo "$PROG: node $node: no saved count in $STATE_DIR, leaving it as it is"
    fi
  done
  if [ "$PERSIST" -eq 1 ]; then
    if [ -e "$UNIT_FILE" ]; then
      if [ -d /run/systemd/system ]; then run systemctl disable riptide-hugepages.service; fi
      run rm -f "$UNIT_FILE"
    fi
    fstab_remove
  fi
  echo "$PROG: undone"
}

main() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --pages) PAGES_PER_NODE=${2:?--pages needs a value}; shift 2 ;;
      --size) PAGE_SIZE=${2:?--size needs a value}; shift 2 ;;
      --nodes) NODES=${2:?--nodes needs a value}; shift 2 ;;
      --mount) MOUNT_DIR=${2:?--mount needs a value}; shift 2 ;;
      --state-dir) STATE_DIR=${2:?--state-dir needs a value}; shift 2 ;;
      --no-persist) PERSIST=0; shift ;;
      --undo) UNDO=1; shift ;;
      --dry-run) DRY_RUN=1; shift ;;
      -h|--help) usage; exit 0 ;;
      *) echo "$PROG: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
  done
  check_inputs
  if [ "$UNDO" -eq 1 ]; then
    undo
    return 0
  fi
  reserve
  mount_fs
  if [ "$PERSIST" -eq 1 ]; then persist; fi
  if [ "$(size_kb)" = 1048576 ]; then
    echo "$PROG: note: for 1G pages a reservation at boot is more reliable: add" \
      "'default_hugepagesz=1G hugepagesz=1G hugepages=$PAGES_PER_NODE' to the kernel command line"
  fi
  echo "$PROG: done"
}

main "$@"
