#!/usr/bin/env bash
# Two test "hosts" on one machine: two network namespaces joined by a veth pair (docs/postgres.md,
# "Many hosts"). Needs root (or CAP_SYS_ADMIN and CAP_NET_ADMIN).
#
#   scripts/netns-hosts.sh setup NS_A NS_B OCTET OWNER_PID
#       makes namespaces NS_A and NS_B (names start with ovs-), each with lo up, joined by
#       veth-a (in NS_A, 10.213.OCTET.1/24) and veth-b (in NS_B, 10.213.OCTET.2/24). OWNER_PID is
#       the process the hosts belong to: `sweep` deletes them once it has died. Any failure undoes
#       what was made and exits non-zero.
#   scripts/netns-hosts.sh cut NS       veth link of NS down: the host is cut off
#   scripts/netns-hosts.sh heal NS      veth link of NS up again
#   scripts/netns-hosts.sh teardown NS_A NS_B
#       SIGKILL every process still in them, delete both (the veth pair goes with them); fine when
#       they are already gone
#   scripts/netns-hosts.sh sweep        teardown of every ovs- namespace whose owner has died
#       (a test process that crashed before its own teardown)
set -euo pipefail

prog="netns-hosts"
state="/run/overseer-netns"
die() {
  echo "$prog: $*" >&2
  exit 1
}
usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

# Like pg-test-server.sh: keep no file the caller gave us open (a test's pipes), so nothing started
# from here can hold them.
for fd in /proc/$$/fd/*; do
  fd="${fd##*/}"
  if [[ "$fd" =~ ^[0-9]+$ ]] && [ "$fd" -gt 2 ] && [ "$fd" != 255 ]; then eval "exec $fd>&-"; fi
done

check_name() {
  [[ "$1" =~ ^ovs-[a-z0-9-]{1,20}$ ]] || die "namespace name '$1' must be ovs- followed by lowercase letters, digits or -"
}

exists() {
  ip netns list 2>/dev/null | awk '{print $1}' | grep -qx -- "$1"
}

# SIGKILL every process in namespace $1, and wait (up to 10 s) until none is left.
kill_all_in() {
  local ns="$1" pids p i
  exists "$ns" || return 0
  for i in $(seq 1 100); do
    pids="$(ip netns pids "$ns" 2>/dev/null || true)"
    [ -n "$pids" ] || return 0
    for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
    sleep 0.1
  done
  echo "$prog: processes still in $ns after SIGKILL: $(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')" >&2
}

teardown() {
  local ns
  for ns in "$@"; do
    check_name "$ns"
    kill_all_in "$ns"
    if exists "$ns"; then ip netns delete "$ns" || echo "$prog: could not delete namespace $ns" >&2; fi
    rm -f -- "$state/$ns.owner"
  done
}

cmd="${1:-}"
case "$cmd" in
  setup)
    [ $# = 5 ] || usage
    a="$2" b="$3" octet="$4" owner="$5"
    check_name "$a"
    check_name "$b"
    [ "$a" != "$b" ] || die "the two namespaces need different names"
    [[ "$octet" =~ ^[0-9]+$ ]] && [ "$octet" -ge 1 ] && [ "$octet" -le 254 ] || die "OCTET must be 1 to 254, not '$octet'"
    [[ "$owner" =~ ^[0-9]+$ ]] || die "OWNER_PID must be a pid, not '$owner'"
    ! exists "$a" || die "namespace $a already exists"
    ! exists "$b" || die "namespace $b already exists"
    mkdir -p "$state"
    # The owner files come first, so that a concurrent sweep never takes these for abandoned.
    printf '%s\n' "$owner" >"$state/$a.owner"
    printf '%s\n' "$owner" >"$state/$b.owner"
    trap 'teardown "$a" "$b"' ERR
    ip netns add "$a"
    ip netns add "$b"
    ip -n "$a" link set lo up
    ip -n "$b" link set lo up
    # Both ends are made inside their namespaces, so no name is ever taken in the caller's.
    ip link add veth-a netns "$a" type veth peer name veth-b netns "$b"
    ip -n "$a" addr add "10.213.$octet.1/24" dev veth-a
    ip -n "$b" addr add "10.213.$octet.2/24" dev veth-b
    ip -n "$a" link set veth-a up
    ip -n "$b" link set veth-b up
    # Wait until both ends report carrier (LOWER_UP), i.e. the link passes packets.
    for i in $(seq 1 50); do
      if ip -n "$a" link show veth-a | grep -q LOWER_UP && ip -n "$b" link show veth-b | grep -q LOWER_UP; then exit 0; fi
      sleep 0.1
    done
    echo "$prog: the veth link between $a and $b did not come up" >&2
    false  # runs the ERR trap
    ;;
  cut | heal)
    [ $# = 2 ] || usage
    check_name "$2"
    exists "$2" || die "no namespace $2"
    dev="$(ip -n "$2" -o link show | sed -n 's/^[0-9]*: \(veth-[ab]\)@.*/\1/p' | head -n 1)"
    [ -n "$dev" ] || die "no veth link in $2"
    if [ "$cmd" = cut ]; then ip -n "$2" link set "$dev" down; else ip -n "$2" link set "$dev" up; fi
    ;;
  teardown)
    [ $# -ge 2 ] || usage
    shift
    teardown "$@"
    ;;
  sweep)
    [ $# = 1 ] || usage
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^ovs-' || true); do
      owner="$(cat "$state/$ns.owner" 2>/dev/null || true)"
      if [[ "$owner" =~ ^[0-9]+$ ]] && kill -0 "$owner" 2>/dev/null; then continue; fi
      echo "$prog: removing namespace $ns left by a process that is gone (${owner:-unknown})" >&2
      teardown "$ns"
    done
    ;;
  *) usage ;;
esac
