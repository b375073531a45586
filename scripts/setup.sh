#!/usr/bin/env bash
# Installs the system packages Overseer needs, only when they are missing (Debian/Ubuntu).
# Usage: scripts/setup.sh [--postgres] [--extras]
# libpq-dev is always needed: the OverseerPostgres target builds with the rest of the package.
# --postgres adds the server, for the tests' throwaway one (scripts/pg-test-server.sh).
set -euo pipefail
need=()
want=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in liblmdb-dev libssl-dev libpq-dev pkg-config; do have_pkg "$p" || need+=("$p"); done
for arg in "$@"; do
  case "$arg" in
    --postgres) for p in postgresql; do have_pkg "$p" || need+=("$p"); done ;;
    # Optional: Graphviz lays out report graphs; headless Chromium runs the report's browser test;
    # iproute2's `ip netns` makes the two hosts of the multi-host test (scripts/netns-hosts.sh).
    --extras) for p in graphviz lmdb-utils chromium iproute2; do have_pkg "$p" || want+=("$p"); done ;;
  esac
done
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ((${#want[@]})); then
  # Best effort: without them the report falls back to its own layout and the browser test skips.
  echo "setup: installing ${want[*]}" >&2
  if ! { ((${#need[@]})) || $SUDO apt-get update -qq; } ||
    ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null; then
    echo "setup: could not install ${want[*]}; continuing without them" >&2
  fi
fi
if ! command -v swift >/dev/null 2>&1; then
  echo "setup: the Swift toolchain (6.0 or later) is not on PATH; install it from swift.org" >&2
  exit 1
fi
