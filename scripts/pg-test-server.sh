#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests (docs/postgres.md).
#
#   scripts/pg-test-server.sh start DIR [PORT] [LISTEN_ADDRESSES]
#       initdb into DIR/data, start it, create user and database `overseer`; prints the URL
#       postgres://overseer:PASSWORD@HOST:PORT/overseer as its only line on stdout (also in DIR/url).
#       PORT defaults to 55432, LISTEN_ADDRESSES to 127.0.0.1.
#   scripts/pg-test-server.sh stop DIR      stop it (pg_ctl -m fast); fine when it is not running
#   scripts/pg-test-server.sh kill DIR      SIGKILL the postmaster and its processes (crash tests)
#   scripts/pg-test-server.sh restart DIR   start it again on the same data (stops it first if running);
#                                           prints the URL again
#   scripts/pg-test-server.sh status DIR    exit 0 when running, 3 when not
#   scripts/pg-test-server.sh url DIR       print the URL
#   scripts/pg-test-server.sh destroy DIR   stop it and delete DIR (only a DIR this script made)
#
# Host connections use scram-sha-256 with a password made for each server (DIR/password, mode 0600);
# the Unix socket in DIR trusts local users. The server runs as the `postgres` user (runuser when
# this runs as root) or as the user running this script otherwise.
set -euo pipefail

prog="pg-test-server"
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
die() {
  echo "$prog: $*" >&2
  exit 1
}
usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

# The server must not inherit the caller's open files: Foundation's Process, for one, learns that a
# child exited when a socket it gave the child closes, so a postmaster holding that socket would
# make the caller wait for the server's end. Keep 0-2, and 255 (bash reads this script from it).
for fd in /proc/$$/fd/*; do
  fd="${fd##*/}"
  if [[ "$fd" =~ ^[0-9]+$ ]] && [ "$fd" -gt 2 ] && [ "$fd" != 255 ]; then eval "exec $fd>&-"; fi
done

# Keep the caller's libpq settings (PGHOST, PGPORT, PGDATA, ...) away from the tools used here.
for v in $(compgen -e); do
  case "$v" in PG*) unset "$v" ;; esac
done

bindir=""
find_bindir() {
  local d=""
  if command -v pg_config >/dev/null 2>&1; then d="$(pg_config --bindir 2>/dev/null || true)"; fi
  if [ -z "$d" ] || [ ! -x "$d/initdb" ]; then
    d=""
    for c in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
      if [ -x "$c/initdb" ]; then d="$c"; fi
    done
  fi
  [ -n "$d" ] || die "cannot find the PostgreSQL server programs (initdb, pg_ctl): install postgresql (scripts/setup.sh --postgres)"
  bindir="$d"
}

if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || die "running as root, but there is no 'postgres' user to run the server as (install postgresql)"
  as_server() { runuser -u postgres -- "$@"; }
else
  as_server() { "$@"; }
fi

absolute() {
  case "$1" in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s/%s\n' "$(pwd)" "$1" ;;
  esac
}

# Whether something accepts TCP connections on HOST PORT.
port_in_use() {
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# The host to reach a server listening on LISTEN_ADDRESSES; empty when it listens on no TCP address.
probe_host() {
  local first="${1%%,*}"
  first="${first// /}"
  case "$first" in
    "") printf '' ;;
    "*" | 0.0.0.0 | localhost) printf '127.0.0.1' ;;
    "::") printf '::1' ;;
    *) printf '%s' "$first" ;;
  esac
}

# The pids whose parent is $1 (from /proc: the fields of stat after "(comm)" are state, ppid, ...).
children_of() {
  local p line f
  for p in /proc/[0-9]*; do
    { read -r line <"$p/stat"; } 2>/dev/null || continue
    read -r -a f <<<"${line##*) }"
    if [ "${f[1]:-}" = "$1" ]; then printf '%s\n' "${p#/proc/}"; fi
  done
}

# Whether process $1 exists and is not a zombie.
alive() {
  local line f
  { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
  read -r -a f <<<"${line##*) }"
  [ "${f[0]:-}" != Z ]
}

# Whether the postmaster in $data/postmaster.pid is alive. Not `pg_ctl status`: it counts a killed
# postmaster that nobody reaped (a zombie, as under a container's init that does not reap) as running.
running() {
  local pid
  [ -f "$data/postmaster.pid" ] || return 1
  pid="$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid"
}

# After a crash: the lock files name a dead (maybe zombie) postmaster, which would stop the server
# from starting ("lock file already exists"), so remove them.
remove_stale_locks() {
  local f pid
  for f in "$data/postmaster.pid" "$dir"/.s.PGSQL.*.lock; do
    [ -f "$f" ] || continue
    pid="$(head -n 1 "$f" 2>/dev/null || true)"
    pid="${pid#-}"
    if [[ "$pid" =~ ^[0-9]+$ ]] && ! alive "$pid"; then rm -f -- "$f"; fi
  done
}

log_tail() {
  if [ -f "$dir/log" ]; then
    echo "$prog: last lines of $dir/log:" >&2
    tail -n 15 "$dir/log" | sed 's/^/    /' >&2
  fi
}

# pg_ctl start, with the port checked first so that "in use" reads plainly.
start_server() {
  local port host
  port="$(sed -n 's/^port = \([0-9]*\).*/\1/p' "$data/postgresql.conf" | tail -n 1)"
  host="$(probe_host "$(sed -n "s/^listen_addresses = '\(.*\)'.*/\1/p" "$data/postgresql.conf" | tail -n 1)")"
  if [ -n "$host" ] && port_in_use "$host" "$port"; then
    die "port $port on $host is already in use (another server?); choose another port"
  fi
  remove_stale_locks
  if ! as_server "$bindir/pg_ctl" -D "$data" -l "$dir/log" -w -t 60 -s start >/dev/null 2>&1; then
    log_tail
    die "the server in $dir did not start (see $dir/log)"
  fi
  if [ -n "$host" ]; then
    local i
    for i in $(seq 1 100); do
      if "$bindir/pg_isready" -q -h "$host" -p "$port" -d overseer -t 2 >/dev/null 2>&1; then return 0; fi
      sleep 0.1
    done
    log_tail
    die "the server in $dir started but does not answer on $host:$port"
  fi
}

cmd="${1:-}"
[ -n "$cmd" ] && [ $# -ge 2 ] || usage
dir="$(absolute "$2")"
dir="${dir%/}"
data="$dir/data"
marker="$dir/.overseer-pg-test-server"
# Work from /, so that the server user never needs to enter the caller's working directory.
cd /

case "$cmd" in
  start)
    port="${3:-55432}"
    listen="${4-127.0.0.1}"
    [ $# -le 4 ] || usage
    [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1024 ] && [ "$port" -le 65535 ] || die "port must be a number from 1024 to 65535, not '$port'"
    [ "$port" != 5432 ] || die "port 5432 is the usual port of a real server; a test server uses another one (default 55432)"
    [[ "$listen" =~ ^[][0-9A-Za-z.:*,\ _-]*$ ]] || die "listen addresses '$listen' look wrong"
    find_bindir
    [ ! -e "$data" ] || die "$data already exists; use 'restart $dir' to start it again, or 'destroy $dir' first"
    host="$(probe_host "$listen")"
    if [ -n "$host" ] && port_in_use "$host" "$port"; then
      die "port $port on $host is already in use (another server?); choose another port"
    fi
    socket_path="$dir/.s.PGSQL.$port"
    [ "${#socket_path}" -le 100 ] || die "$dir is too long a path for the server's Unix socket ($socket_path); use a shorter one"
    mkdir -p "$dir"
    touch "$marker"
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; fi
    chmod 0755 "$dir"
    as_server test -w "$dir" || die "the postgres user cannot write to $dir (check the permissions of the directories above it)"
    password="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
    [ "${#password}" = 32 ] || die "could not make a password from /dev/urandom"
    (umask 077 && printf '%s\n' "$password" >"$dir/password")
    if ! as_server "$bindir/initdb" -D "$data" -U postgres --encoding=UTF8 --locale=C \
      --auth-local=trust --auth-host=scram-sha-256 -N >"$dir/initdb.log" 2>&1; then
      tail -n 15 "$dir/initdb.log" | sed 's/^/    /' >&2
      die "initdb failed (see $dir/initdb.log)"
    fi
    cat >>"$data/postgresql.conf" <<EOF

# scripts/pg-test-server.sh: a small throwaway server that keeps full durability.
listen_addresses = '$listen'
port = $port
unix_socket_directories = '$dir'
fsync = on
synchronous_commit = on
full_page_writes = on
shared_buffers = 32MB
max_connections = 60
password_encryption = 'scram-sha-256'
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
log_min_messages = warning
EOF
    # initdb allows 127.0.0.1 and ::1; let other listen addresses in too (password still required).
    printf '%s\n' "host all all all scram-sha-256" >>"$data/pg_hba.conf"
    start_server
    if ! printf "CREATE ROLE overseer LOGIN PASSWORD '%s';\nCREATE DATABASE overseer OWNER overseer;\n" "$password" |
      as_server "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d postgres -f - >/dev/null; then
      as_server "$bindir/pg_ctl" -D "$data" -m immediate -s stop >/dev/null 2>&1 || true
      die "could not create the overseer user and database"
    fi
    if [ -z "$host" ]; then
      url="postgresql://overseer:$password@/overseer?host=$dir&port=$port"
    elif [[ "$host" == *:* ]]; then
      url="postgres://overseer:$password@[$host]:$port/overseer"
    else
      url="postgres://overseer:$password@$host:$port/overseer"
    fi
    (umask 077 && printf '%s\n' "$url" >"$dir/url")
    printf '%s\n' "$url"
    ;;
  stop)
    [ $# = 2 ] || usage
    find_bindir
    if [ ! -f "$data/PG_VERSION" ]; then
      echo "$prog: no server in $dir; nothing to stop" >&2
      exit 0
    fi
    if running; then
      as_server "$bindir/pg_ctl" -D "$data" -m fast -w -t 60 -s stop >/dev/null || die "could not stop the server in $dir"
    fi
    ;;
  kill)
    [ $# = 2 ] || usage
    [ -f "$data/postmaster.pid" ] || die "the server in $dir is not running (no postmaster.pid)"
    pid="$(head -n 1 "$data/postmaster.pid")"
    [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" || die "the server in $dir is not running (stale postmaster.pid)"
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = postgres ] || die "process $pid in $data/postmaster.pid is not a postgres process"
    # Stop the postmaster so that it forks no more, then SIGKILL it and every child at once, like a
    # crash. Each child leads its own process group, so a signal to the group takes its helpers too.
    kill -STOP "$pid"
    mapfile -t victims < <(children_of "$pid")
    kill -KILL "$pid" 2>/dev/null || true
    for v in "${victims[@]}"; do kill -KILL -- "-$v" 2>/dev/null || kill -KILL "$v" 2>/dev/null || true; done
    # Wait until they are all gone, so that a restart does not find their shared memory in use.
    for _ in $(seq 1 200); do
      left=0
      for v in "$pid" "${victims[@]}"; do if alive "$v"; then left=1; fi; done
      [ "$left" = 1 ] || exit 0
      sleep 0.05
    done
    die "server processes of $dir are still alive 10 s after SIGKILL"
    ;;
  restart)
    [ $# = 2 ] || usage
    find_bindir
    [ -f "$data/PG_VERSION" ] || die "no server in $dir (use 'start $dir' to make one)"
    if running; then
      as_server "$bindir/pg_ctl" -D "$data" -m fast -w -t 60 -s stop >/dev/null || die "could not stop the server in $dir"
    fi
    start_server
    cat "$dir/url"
    ;;
  status)
    [ $# = 2 ] || usage
    find_bindir
    if running; then exit 0; else exit 3; fi
    ;;
  url)
    [ $# = 2 ] || usage
    [ -f "$dir/url" ] || die "no server URL in $dir"
    cat "$dir/url"
    ;;
  destroy)
    [ $# = 2 ] || usage
    [ -d "$dir" ] || exit 0
    [ -f "$marker" ] || die "$dir was not made by this script; not deleting it"
    "$self" stop "$dir" || true
    if [ -f "$data/postmaster.pid" ] && running; then die "the server in $dir is still running; not deleting it"; fi
    rm -rf -- "$dir"
    ;;
  *) usage ;;
esac
