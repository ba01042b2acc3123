#!/usr/bin/env bash
# Hands a NIC to DPDK: binds the PCI device to vfio-pci (or uio_pci_generic where the machine has no
# IOMMU) with dpdk-devbind.py from Debian's dpdk package, after remembering its kernel driver so
# that --undo can give it back to the kernel.
set -euo pipefail
shopt -s inherit_errexit

PROG=bind-nic
DRIVER=auto
STATE_DIR=/var/lib/riptide/bind-nic
DRY_RUN=0
UNDO=0
FORCE=0
DEVICE=""

usage() {
  cat <<USAGE
Usage: scripts/bind-nic.sh [OPTIONS] DEVICE
       scripts/bind-nic.sh --undo [OPTIONS] DEVICE
Binds a network device to a DPDK-capable driver, or gives it back to its kernel driver (needs root).

  DEVICE               a PCI address (0000:03:00.0 or 03:00.0) or a kernel interface name (eth1)

Options (defaults in brackets):
  --driver NAME        vfio-pci, uio_pci_generic or auto: vfio-pci when the machine has an IOMMU,
                       uio_pci_generic otherwise [$DRIVER]
  --undo               rebind the device to the kernel driver it had before
  --force              also bind an interface that carries the default route (you lose that network)
  --state-dir DIR      where the original driver is remembered [$STATE_DIR]
  --dry-run            print what would be done, change nothing
  -h, --help           this text
USAGE
}

die() { echo "$PROG: $*" >&2; exit 1; }

run() {
  if [ "$DRY_RUN" -eq 1 ]; then
    echo "would run: $*"
  else
    "$@"
  fi
}

# Resolves DEVICE to a full PCI address (domain:bus:slot.function).
resolve_pci() {
  local dev=$1 link
  if [ -e "/sys/class/net/$dev" ]; then
    link=$(readlink -f "/sys/class/net/$dev/device" 2>/dev/null || true)
    # virtio NICs hang one level below their PCI function (.../0000:00:03.0/virtio2): walk up.
    while [ -n "$link" ] && [ "$link" != / ]; do
      if [[ "$(basename "$link")" =~ ^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]]; then
        basename "$link"
        return 0
      fi
      link=$(dirname "$link")
    done
    die "interface $dev is not a PCI device (virtual interfaces such as veth cannot be bound; use the af_xdp or af_packet vdev instead)"
  fi
  [[ "$dev" =~ ^[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]] && dev="0000:$dev"
  [[ "$dev" =~ ^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]] ||
    die "'$1' is neither an interface name nor a PCI address (list them: dpdk-devbind.py --status-dev net)"
  [ -e "/sys/bus/pci/devices/$dev" ] || die "PCI device $dev does not exist (list them: dpdk-devbind.py --status-dev net)"
  echo "$dev"
}

current_driver() {
  local link
  link=$(readlink -f "/sys/bus/pci/devices/$1/driver" 2>/dev/null || true)
  if [ -n "$link" ]; then basename "$link"; fi
}

interface_of() {
  local net
  for net in /sys/bus/pci/devices/"$1"/net/* /sys/bus/pci/devices/"$1"/virtio*/net/*; do
    [ -e "$net" ] && basename "$net"
  done
  return 0
}

has_iommu() { [ -n "$(ls -A /sys/kernel/iommu_groups 2>/dev/null)" ]; }

pick_driver() {
  case "$DRIVER" in
    auto)
      if has_iommu; then echo vfio-pci; else
        echo "$PROG: no IOMMU groups (/sys/kernel/iommu_groups is empty): using uio_pci_generic, which gives DPDK unprotected DMA" >&2
        echo uio_pci_generic
      fi ;;
    vfio-pci)
      has_iommu || die "--driver vfio-pci needs an IOMMU: enable VT-d/AMD-Vi in the firmware and intel_iommu=on or amd_iommu=on on the kernel command line, or use --driver uio_pci_generic"
      echo vfio-pci ;;
    uio_pci_generic) echo uio_pci_generic ;;
    *) die "--driver '$DRIVER' is not supported; use vfio-pci, uio_pci_generic or auto" ;;
  esac
}

bind() {
  local pci=$1 driver before ifname
  driver=$(pick_driver)
  before=$(current_driver "$pci")
  if [ "$before" = "$driver" ]; then
    echo "$PROG: $pci is already bound to $driver"
    return 0
  fi
  ifname=$(interface_of "$pci")
  if [ -n "$ifname" ] && [ "$FORCE" -eq 0 ] && ip route show default | grep -qw "dev $ifname"; then
    die "$ifname ($pci) carries the default route; binding it cuts this machine off that network. Use another NIC, or --force"
  fi
  run mkdir -p "$STATE_DIR"
  if [ "$DRY_RUN" -eq 1 ]; then
    echo "would remember driver '${before:-none}' of $pci in $STATE_DIR/$pci"
  else
    printf 'driver=%s\ninterface=%s\n' "$before" "$ifname" >"$STATE_DIR/$pci"
  fi
  run modprobe "$driver"
  if [ -n "$ifname" ]; then run ip link set dev "$ifname" down; fi
  run dpdk-devbind.py --bind="$driver" "$pci"
  echo "$PROG: $pci${ifname:+ ($ifname)}: ${before:-no driver} -> $driver"
}

unbind() {
  local pci=$1 saved driver
  saved="$STATE_DIR/$pci"
  [ -e "$saved" ] || die "no record of $pci's original driver in $STATE_DIR; bind it by hand: dpdk-devbind.py --bind=DRIVER $pci"
  driver=$(sed -n 's/^driver=//p' "$saved")
  if [ -z "$driver" ]; then
    run dpdk-devbind.py --unbind "$pci"
  else
    run modprobe "$driver"
    run dpdk-devbind.py --bind="$driver" "$pci"
  fi
  run rm -f "$saved"
  echo "$PROG: $pci: back to ${driver:-no driver}"
}

main() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --driver) DRIVER=${2:?--driver needs a value}; shift 2 ;;
      --state-dir) STATE_DIR=${2:?--state-dir needs a value}; shift 2 ;;
      --undo) UNDO=1; shift ;;
      --force) FORCE=1; shift ;;
      --dry-run) DRY_RUN=1; shift ;;
      -h|--help) usage; exit 0 ;;
      -*) echo "$PROG: unknown option '$1'" >&2; usage >&2; exit 2 ;;
      *) [ -z "$DEVICE" ] || die "one device at a time (got '$DEVICE' and '$1')"; DEVICE=$1; shift ;;
    esac
  done
  [ -n "$DEVICE" ] || { usage >&2; exit 2; }
  command -v dpdk-devbind.py >/dev/null ||
    die "dpdk-devbind.py not found; install Debian's dpdk package (scripts/install-deps.sh)"
  if [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    die "binding drivers needs root; run: sudo $0 (or add --dry-run)"
  fi
  local pci
  pci=$(resolve_pci "$DEVICE")
  if [ "$UNDO" -eq 1 ]; then unbind "$pci"; else bind "$pci"; fi
}

main "$@"
