#!/usr/bin/env bash
# Turns a Debian 12 machine (bare metal or the Vagrant VM) into a running riptide appliance:
# packages, hugepages, core isolation, a release build, binaries, the systemd unit and
# /etc/riptide/riptide.toml, then enables and starts riptide-control.service. Safe to run again.
set -euo pipefail
shopt -s inherit_errexit

PROG=provision
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DRY_RUN=0
REBOOT_STEPS=1
DO_DEPS=1
DO_HUGEPAGES=1
DO_BUILD=1
DO_START=1
ASSUME_YES=0
HUGEPAGES=256
CORES=""
BIN_DIR=""
DESTDIR=""
PREFIX=/usr/local
BINARIES=(riptide-dataplane riptide-control riptidectl)

usage() {
  cat <<USAGE
Usage: scripts/provision.sh [OPTIONS]
Provisions this Debian 12 machine as a riptide appliance (needs root unless --dry-run or --destdir).

Steps: install-deps.sh; hugepages.sh; isolate-cores.sh (reboot-only); cargo build --release;
install binaries to PREFIX/bin, the unit to /etc/systemd/system, the configuration to
/etc/riptide/riptide.toml (kept if present); systemctl enable --now riptide-control.service.

Options (defaults in brackets):
  --dry-run           print every step, change nothing
  --no-reboot-steps   skip the steps that only take effect after a reboot (core isolation)
  --yes               do not ask before editing the kernel command line
  --cores LIST        dataplane CPUs for isolate-cores.sh [all but the first]
  --hugepages N       2 MiB pages per NUMA node [$HUGEPAGES]; 0 skips the step
  --skip-deps         do not run install-deps.sh
  --skip-build        do not build; install binaries from --bin-dir
  --bin-dir DIR       where the built binaries are [\$CARGO_TARGET_DIR/release or target/release]
  --destdir DIR       install into DIR instead of / (image builds, tests); implies --no-start
  --prefix DIR        binary prefix [$PREFIX]
  --no-start          install but do not enable or start the service
  -h, --help          this text
USAGE
}

die() { echo "$PROG: $*" >&2; exit 1; }
step() { echo "== $PROG: $*"; }

run() {
  if [ "$DRY_RUN" -eq 1 ]; then
    echo "would run: $*"
  else
    "$@"
  fi
}

parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --dry-run) DRY_RUN=1; shift ;;
      --no-reboot-steps) REBOOT_STEPS=0; shift ;;
      --yes|-y) ASSUME_YES=1; shift ;;
      --cores) CORES=${2:?--cores needs a value}; shift 2 ;;
      --hugepages) HUGEPAGES=${2:?--hugepages needs a value}; shift 2 ;;
      --skip-deps) DO_DEPS=0; shift ;;
      --skip-build) DO_BUILD=0; shift ;;
      --bin-dir) BIN_DIR=${2:?--bin-dir needs a value}; shift 2 ;;
      --destdir) DESTDIR=${2:?--destdir needs a value}; DO_START=0; shift 2 ;;
      --prefix) PREFIX=${2:?--prefix needs a value}; shift 2 ;;
      --no-start) DO_START=0; shift ;;
      -h|--help) usage; exit 0 ;;
      *) echo "$PROG: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
  done
  [[ "$HUGEPAGES" =~ ^[0-9]+$ ]] || die "--hugepages '$HUGEPAGES' must be a whole number"
  if [ -z "$BIN_DIR" ]; then
    BIN_DIR="${CARGO_TARGET_DIR:-$REPO/target}/release"
  fi
  if [ "$DRY_RUN" -eq 0 ] && [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
    die "provisioning changes the system and needs root; run: sudo $0 (or --dry-run, or --destdir DIR)"
  fi
  grep -q 'bookworm\|VERSION_ID="12"' /etc/os-release 2>/dev/null ||
    echo "$PROG: warning: this is not Debian 12; package names may differ" >&2
}

dry_flag() { if [ "$DRY_RUN" -eq 1 ]; then echo --dry-run; fi; }

step_deps() {
  step "packages"
  # shellcheck disable=SC2046 # an empty dry_flag must vanish, not become ""
  "$REPO/scripts/install-deps.sh" $(dry_flag)
}

step_hugepages() {
  step "hugepages ($HUGEPAGES x 2 MiB per NUMA node, persisted)"
  # shellcheck disable=SC2046
  "$REPO/scripts/hugepages.sh" --pages "$HUGEPAGES" --size 2M $(dry_flag)
}

step_cores() {
  step "core isolation (takes effect after a reboot)"
  if [ ! -f /etc/default/grub ]; then
    echo "$PROG: no /etc/default/grub here: set isolcpus/nohz_full/rcu_nocbs in your boot loader by hand"
    return 0
  fi
  local args=()
  [ -n "$CORES" ] && args+=(--cores "$CORES")
  [ "$ASSUME_YES" -eq 1 ] && args+=(--yes)
  [ "$DRY_RUN" -eq 1 ] && args+=(--dry-run)
  "$REPO/scripts/isolate-cores.sh" "${args[@]}"
}

step_build() {
  step "release build"
  command -v cargo >/dev/null ||
    die "cargo not found: install a Rust toolchain (rustup, https://rustup.rs) for root, or build elsewhere and pass --skip-build --bin-dir DIR"
  (cd "$REPO" && run cargo build --release -p riptide-dataplane -p riptide-control)
}

step_install() {
  step "install into ${DESTDIR:-/}"
  local bin unit_dir conf_dir completions
  bin="$DESTDIR$PREFIX/bin"
  unit_dir="$DESTDIR/etc/systemd/system"
  conf_dir="$DESTDIR/etc/riptide"
  completions="$DESTDIR/usr/share/bash-completion/completions"
  for name in "${BINARIES[@]}"; do
    [ -x "$BIN_DIR/$name" ] || [ "$DRY_RUN" -eq 1 ] ||
      die "$BIN_DIR/$name is missing: build first (drop --skip-build) or point --bin-dir at the binaries"
  done
  run install -d "$bin" "$unit_dir" "$conf_dir" "$completions" "$DESTDIR/var/lib/riptide"
  for name in "${BINARIES[@]}"; do
    run install -m 0755 "$BIN_DIR/$name" "$bin/$name"
  done
  # The unit names /usr/local/bin; follow --prefix.
  if [ "$DRY_RUN" -eq 1 ]; then
    echo "would install $REPO/systemd/riptide-control.service into $unit_dir"
  else
    sed "s|/usr/local/bin/|$PREFIX/bin/|g" "$REPO/systemd/riptide-control.service" \
      >"$unit_dir/riptide-control.service"
  fi
  if [ -e "$conf_dir/riptide.toml" ]; then
    echo "$PROG: keeping the existing $conf_dir/riptide.toml"
  else
    run install -m 0640 "$REPO/config/riptide.toml" "$conf_dir/riptide.toml"
  fi
  if [ "$DRY_RUN" -eq 1 ]; then
    echo "would write bash completions to $completions/riptidectl"
  else
    "$BIN_DIR/riptidectl" completions bash >"$completions/riptidectl"
  fi
}

step_start() {
  step "start riptide-control.service"
  if [ ! -d /run/systemd/system ]; then
    echo "$PROG: systemd is not running on this machine; start by hand: $PREFIX/bin/riptide-control --config /etc/riptide/riptide.toml"
    return 0
  fi
  run systemctl daemon-reload
  run systemctl enable --now riptide-control.service
  if [ "$DRY_RUN" -eq 0 ]; then
    systemctl --no-pager --lines=5 status riptide-control.service || true
  fi
}

main() {
  parse_args "$@"
  if [ "$DO_DEPS" -eq 1 ]; then step_deps; else step "packages: skipped (--skip-deps)"; fi
  if [ "$DO_HUGEPAGES" -eq 1 ] && [ "$HUGEPAGES" -gt 0 ] && [ -z "$DESTDIR" ]; then
    step_hugepages
  else
    step "hugepages: skipped"
  fi
  if [ "$REBOOT_STEPS" -eq 1 ] && [ -z "$DESTDIR" ]; then
    step_cores
  else
    step "core isolation: skipped (--no-reboot-steps)"
  fi
  if [ "$DO_BUILD" -eq 1 ]; then step_build; else step "build: skipped (--skip-build)"; fi
  step_install
  if [ "$DO_START" -eq 1 ]; then step_start; else step "service start: skipped"; fi
  step "done"
  if [ "$REBOOT_STEPS" -eq 1 ] && [ -z "$DESTDIR" ] && [ "$DRY_RUN" -eq 0 ]; then
    echo "$PROG: reboot once so that the isolated cores take effect"
  fi
}

main "$@"
