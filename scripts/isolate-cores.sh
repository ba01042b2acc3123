#!/usr/bin/env bash
# Isolates the dataplane's cores from the scheduler, the timer tick, RCU callbacks and device
# interrupts by editing the kernel command line in /etc/default/grub (isolcpus, nohz_full,
# rcu_nocbs, irqaffinity). It shows the diff and asks before changing anything; the change takes
# effect after update-grub and a reboot.
set -euo pipefail
shopt -s inherit_errexit

PROG=isolate-cores
GRUB_FILE=/etc/default/grub
CORES=""
DRY_RUN=0
ASSUME_YES=0
UNDO=0
UPDATE_GRUB=1
NEW_FILE=""
PARAMS=(isolcpus nohz_full rcu_nocbs irqaffinity)

usage() {
  cat <<USAGE
Usage: scripts/isolate-cores.sh [OPTIONS] [--cores LIST | --undo]
Sets isolcpus, nohz_full, rcu_nocbs and irqaffinity on the kernel command line (needs root).

Options:
  --cores LIST       CPUs for the dataplane, e.g. 2-5,8 [all CPUs but the first]; the rest stay
                     housekeeping CPUs and receive the device interrupts (irqaffinity)
  --undo             remove the four parameters again
  --grub-file FILE   the grub defaults file to edit [$GRUB_FILE]
  --no-update-grub   edit the file only; do not run update-grub
  --dry-run          show the diff, change nothing
  --yes              do not ask (provisioning)
  -h, --help         this text
A reboot is needed afterwards; riptide-control checks that its cores are isolated.
USAGE
}

die() { echo "$PROG: $*" >&2; exit 1; }

# Expands a CPU list ("0-2,5") into one CPU number per line, rejecting bad syntax.
expand_list() {
  local list=$1 part lo hi
  IFS=',' read -r -a parts <<<"$list"
  for part in "${parts[@]}"; do
    if [[ "$part" =~ ^([0-9]+)-([0-9]+)$ ]]; then
      lo=${BASH_REMATCH[1]}; hi=${BASH_REMATCH[2]}
      [ "$lo" -le "$hi" ] || die "--cores: range '$part' runs backwards"
      seq "$lo" "$hi"
    elif [[ "$part" =~ ^[0-9]+$ ]]; then
      echo "$part"
    else
      die "--cores: '$part' is not a CPU number or range (example: 2-5,8)"
    fi
  done
}

# Compresses sorted CPU numbers (one per line) into a list like "1-3,6".
compress_list() {
  awk 'NR==1 { lo=$1; hi=$1; next }
       $1 == hi + 1 { hi=$1; next }
       { printf "%s%s,", lo, (lo==hi ? "" : "-" hi); lo=$1; hi=$1 }
       END { if (NR) printf "%s%s\n", lo, (lo==hi ? "" : "-" hi) }'
}

present_cpus() { expand_list "$(cat /sys/devices/system/cpu/present)"; }

# Prints the isolated and housekeeping lists as two lines, after checking the request.
plan_cores() {
  local present isolated housekeeping cpu
  present=$(present_cpus | sort -n)
  if [ -z "$CORES" ]; then
    [ "$(wc -l <<<"$present")" -ge 2 ] || die "this machine has one CPU; nothing can be isolated"
    isolated=$(tail -n +2 <<<"$present")
  else
    isolated=$(expand_list "$CORES" | sort -nu)
  fi
  for cpu in $isolated; do
    grep -qx "$cpu" <<<"$present" ||
      die "--cores: CPU $cpu does not exist (present: $(cat /sys/devices/system/cpu/present))"
  done
  housekeeping=$(comm -23 <(sort <<<"$present") <(sort <<<"$isolated") | sort -n)
  [ -n "$housekeeping" ] ||
    die "--cores: '$CORES' leaves no housekeeping CPU for the kernel, ssh and interrupts; keep at least one out"
  compress_list <<<"$isolated"
  compress_list <<<"$housekeeping"
}

# Rewrites GRUB_CMDLINE_LINUX_DEFAULT: drops our four parameters, then appends the new ones.
edit_grub() {
  local file=$1 additions=$2
  awk -v add="$additions" -v names="${PARAMS[*]}" '
    BEGIN { n = split(names, drop, " ") }
    /^GRUB_CMDLINE_LINUX_DEFAULT=/ {
      found = 1
      value = $0; sub(/^GRUB_CMDLINE_LINUX_DEFAULT=/, "", value); gsub(/^"|"$/, "", value)
      out = ""; words = split(value, w, " ")
      for (i = 1; i <= words; i++) {
        keep = 1
        for (j = 1; j <= n; j++) if (index(w[i], drop[j] "=") == 1) keep = 0
        if (keep) out = out (out == "" ? "" : " ") w[i]
      }
      if (add != "") out = out (out == "" ? "" : " ") add
      print "GRUB_CMDLINE_LINUX_DEFAULT=\"" out "\""; next
    }
    { print }
    END { if (!found && add != "") print "GRUB_CMDLINE_LINUX_DEFAULT=\"" add "\"" }
  ' "$file"
}

confirm() {
  [ "$ASSUME_YES" -eq 1 ] && return 0
  if [ ! -t 0 ]; then
    die "no terminal to ask on; re-run with --yes to apply, or --dry-run to only look"
  fi
  local answer
  read -r -p "Apply this change to $GRUB_FILE? [y/N] " answer
  [[ "$answer" =~ ^[Yy]$ ]]
}

main() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --cores) CORES=${2:?--cores needs a value}; shift 2 ;;
      --grub-file) GRUB_FILE=${2:?--grub-file needs a value}; shift 2 ;;
      --no-update-grub) UPDATE_GRUB=0; shift ;;
      --undo) UNDO=1; shift ;;
      --dry-run) DRY_RUN=1; shift ;;
      --yes|-y) ASSUME_YES=1; shift ;;
      -h|--help) usage; exit 0 ;;
      *) echo "$PROG: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
  done
  [ -f "$GRUB_FILE" ] ||
    die "$GRUB_FILE not found: this machine does not boot with GRUB (set the parameters in your boot loader) or pass --grub-file"
  [ "$UNDO" -eq 1 ] && [ -n "$CORES" ] && die "--undo and --cores exclude each other"

  local additions="" plan isolated housekeeping
  if [ "$UNDO" -eq 0 ]; then
    plan=$(plan_cores)
    isolated=$(sed -n 1p <<<"$plan")
    housekeeping=$(sed -n 2p <<<"$plan")
    additions="isolcpus=$isolated nohz_full=$isolated rcu_nocbs=$isolated irqaffinity=$housekeeping"
    echo "$PROG: dataplane CPUs $isolated, housekeeping CPUs $housekeeping"
  fi
  NEW_FILE=$(mktemp)
  trap 'rm -f "$NEW_FILE"' EXIT
  local new=$NEW_FILE
  edit_grub "$GRUB_FILE" "$additions" >"$new"
  if diff -q "$GRUB_FILE" "$new" >/dev/null; then
    echo "$PROG: $GRUB_FILE already has this command line; nothing to do"
    return 0
  fi
  diff -u "$GRUB_FILE" "$new" || true
  if [ "$DRY_RUN" -eq 1 ]; then
    echo "$PROG: dry run, $GRUB_FILE not changed"
    return 0
  fi
  [ -w "$GRUB_FILE" ] || die "cannot write $GRUB_FILE; run as root: sudo $0"
  confirm || die "not applied"
  cp -p "$GRUB_FILE" "$GRUB_FILE.riptide-backup"
  cat "$new" >"$GRUB_FILE"
  echo "$PROG: updated $GRUB_FILE (backup: $GRUB_FILE.riptide-backup)"
  if [ "$UPDATE_GRUB" -eq 1 ]; then
    command -v update-grub >/dev/null || die "update-grub not found; install grub2-common or run your boot loader's tool"
    update-grub
  fi
  echo "$PROG: reboot to apply the new kernel command line"
}

main "$@"
