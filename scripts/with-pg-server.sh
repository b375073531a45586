#!/usr/bin/env bash
# Runs CMD with a throwaway PostgreSQL server (scripts/pg-test-server.sh) in a temporary directory,
# then stops and deletes the server, whether CMD passes or fails; exits with CMD's status.
#   scripts/with-pg-server.sh CMD [ARGS...]
# CMD sees OVERSEER_TEST_POSTGRES (the server's URL) and OVERSEER_TEST_PG_DIR (its directory, for
# `pg-test-server.sh kill|restart`). The port is OVERSEER_TEST_PG_PORT, or the first free one from 55432.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: scripts/with-pg-server.sh CMD [ARGS...]" >&2; exit 2; }
here="$(cd "$(dirname "$0")" && pwd)"
server="$here/pg-test-server.sh"

port="${OVERSEER_TEST_PG_PORT:-}"
if [ -z "$port" ]; then
  for p in $(seq 55432 55531); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port="$p"; break; fi
  done
  [ -n "$port" ] || { echo "with-pg-server: no free port from 55432 to 55531" >&2; exit 1; }
fi

dir="$(mktemp -d "${TMPDIR:-/tmp}/overseer-pg.XXXXXX")"
touch "$dir/.overseer-pg-test-server"  # lets pg-test-server.sh destroy it, even if start fails
cleanup() { "$server" destroy "$dir" || echo "with-pg-server: could not remove the server in $dir" >&2; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

url="$("$server" start "$dir" "$port")"
echo "with-pg-server: PostgreSQL in $dir on port $port" >&2
export OVERSEER_TEST_POSTGRES="$url" OVERSEER_TEST_PG_DIR="$dir"
set +e
"$@"
status=$?
set -e
exit "$status"
