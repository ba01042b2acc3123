#!/usr/bin/env bash
# A test lab without hardware: a network namespace plus a veth pair stands in for a wire. The
# dataplane attaches the host end (AF_XDP or AF_PACKET) and clients inside the namespace use the
# kernel's TCP stack to reach the appliance's address. See ../shared/design.md, "Test lab".
set -euo pipefail
shopt -s inherit_errexit

PROG=netns-lab
NS=riptide-lab
HOST_IF=veth-dp
NS_IF=veth-cl
HOST_ADDR=10.77.0.1/24
NS_ADDR=10.77.0.2/24
# Linux limits interface names to IFNAMSIZ - 1 bytes.
IFNAME_LENGTH_MAX=15

usage() {
  cat <<USAGE
Usage: scripts/netns-lab.sh [OPTIONS] up|down|status
Creates or destroys a network namespace connected to the host by a veth pair (needs root).

  up        create the namespace and the veth pair, assign addresses, bring links up (idempotent)
  down      delete the veth pair and the namespace (idempotent)
  status    show the lab; exit 0 if it is fully up, 1 otherwise

Options (defaults in brackets):
  --ns NAME          namespace name [$NS]
  --host-if NAME     host end of the veth pair, the dataplane attaches here [$HOST_IF]
  --ns-if NAME       namespace end of the veth pair, clients use it [$NS_IF]
  --host-addr CIDR   address of the host end, "none" for no address [$HOST_ADDR]
  --ns-addr CIDR     address of the namespace end [$NS_ADDR]
  -h, --help         this text
USAGE
}

die() { echo "$PROG: $*" >&2; exit 1; }

check_ifname() {
  local name=$1 option=$2
  if [ -z "$name" ] || [ ${#name} -gt $IFNAME_LENGTH_MAX ]; then
    die "$option '$name' must be 1..$IFNAME_LENGTH_MAX characters (Linux interface name limit)"
  fi
  case "$name" in
    */*|*' '*) die "$option '$name' must not contain '/' or spaces" ;;
  esac
}

check_cidr() {
  local cidr=$1 option=$2
  [ "$cidr" = none ] && return 0
  if ! [[ "$cidr" =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}$ ]]; then
    die "$option '$cidr' is not an IPv4 address with a prefix length, e.g. 10.77.0.1/24"
  fi
}

ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$NS"; }
host_if_exists() { ip link show dev "$HOST_IF" >/dev/null 2>&1; }

lab_up() {
  if ! ns_exists; then
    ip netns add "$NS"
    echo "$PROG: created namespace $NS"
  fi
  if ! host_if_exists; then
    ip link add "$HOST_IF" type veth peer name "$NS_IF" netns "$NS"
    echo "$PROG: created veth pair $HOST_IF <-> $NS/$NS_IF"
  elif ! ip -n "$NS" link show dev "$NS_IF" >/dev/null 2>&1; then
    die "$HOST_IF exists but its peer $NS_IF is not in namespace $NS; run '$0 down' first or pick other names"
  fi
  if [ "$HOST_ADDR" != none ]; then
    ip addr replace "$HOST_ADDR" dev "$HOST_IF"
  fi
  ip link set dev "$HOST_IF" up
  ip -n "$NS" addr replace "$NS_ADDR" dev "$NS_IF"
  ip -n "$NS" link set dev "$NS_IF" up
  ip -n "$NS" link set dev lo up
  echo "$PROG: up: $HOST_IF ${HOST_ADDR} <-> $NS/$NS_IF ${NS_ADDR}"
}

lab_down() {
  # Deleting one end of a veth pair deletes both.
  if host_if_exists; then
    ip link del dev "$HOST_IF"
    echo "$PROG: deleted veth pair $HOST_IF"
  fi
  if ns_exists; then
    ip netns del "$NS"
    echo "$PROG: deleted namespace $NS"
  fi
  echo "$PROG: down"
}

lab_status() {
  local ok=0
  if ns_exists; then echo "namespace $NS: present"; else echo "namespace $NS: absent"; ok=1; fi
  if host_if_exists; then
    echo "host end: $(ip -br addr show dev "$HOST_IF")"
  else
    echo "host end $HOST_IF: absent"; ok=1
  fi
  if ns_exists && ip -n "$NS" link show dev "$NS_IF" >/dev/null 2>&1; then
    echo "namespace end: $(ip -n "$NS" -br addr show dev "$NS_IF")"
  else
    echo "namespace end $NS_IF: absent"; ok=1
  fi
  return $ok
}

main() {
  local action=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --ns) NS=${2:?--ns needs a value}; shift 2 ;;
      --host-if) HOST_IF=${2:?--host-if needs a value}; shift 2 ;;
      --ns-if) NS_IF=${2:?--ns-if needs a value}; shift 2 ;;
      --host-addr) HOST_ADDR=${2:?--host-addr needs a value}; shift 2 ;;
      --ns-addr) NS_ADDR=${2:?--ns-addr needs a value}; shift 2 ;;
      -h|--help) usage; exit 0 ;;
      up|down|status)
        [ -n "$action" ] && die "only one action at a time (got '$action' and '$1')"
        action=$1; shift ;;
      *) echo "$PROG: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
  done
  if [ -z "$action" ]; then usage >&2; exit 2; fi
  check_ifname "$HOST_IF" --host-if
  check_ifname "$NS_IF" --ns-if
  [ "$HOST_IF" = "$NS_IF" ] && die "--host-if and --ns-if must differ (both are '$HOST_IF')"
  [ -n "$NS" ] || die "--ns must not be empty"
  check_cidr "$HOST_ADDR" --host-addr
  [ "$NS_ADDR" = none ] && die "--ns-addr needs an address: clients in the namespace must reach the appliance"
  check_cidr "$NS_ADDR" --ns-addr
  command -v ip >/dev/null || die "'ip' not found; install iproute2 (scripts/install-deps.sh)"
  if [ "$action" != status ] && [ "$(id -u)" -ne 0 ]; then
    die "creating namespaces and links needs root; run: sudo $0 $action"
  fi
  case "$action" in
    up) lab_up ;;
    down) lab_down ;;
    status) lab_status ;;
  esac
}

main "$@"
