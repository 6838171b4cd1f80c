#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster of our own, for the demo, the tests and the benchmark.
#
#   scripts/cluster.sh start | stop | status | env
#
# State (data, socket, log, chosen port) lives in $QF_STATE_DIR, default <repo>/.qf/cluster
# (git-ignored). The port is $QF_PORT, else the first free port from 54329 up, remembered in
# the state dir. As root the server runs as the `postgres` user (PostgreSQL refuses root);
# otherwise as the invoking user. `env` prints the PG* variables to reach it.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bindir="$("$PG_CONFIG" --bindir)"
state="${QF_STATE_DIR:-$repo/.qf/cluster}"

if [ "$(id -u)" -eq 0 ]; then
    run_as=(runuser -u postgres --)
    db_user=postgres
    # the postgres user must be able to reach the state dir; a repo under /root is not
    mkdir -p "$state"
    if ! runuser -u postgres -- test -x "$state" 2>/dev/null; then
        state="/tmp/quantum_flow-$(printf '%s' "$state" | sha1sum | cut -c1-12)"
    fi
else
    run_as=()
    db_user="$(id -un)"
fi
data="$state/data"
sock="$state/sock"
log="$state/postgres.log"

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

running() {
    [ -f "$data/postmaster.pid" ] && "${run_as[@]}" "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1
}

choose_port() {
    if [ -n "${QF_PORT:-}" ]; then
        echo "$QF_PORT"
    elif [ -f "$state/port" ] && { running || port_free "$(cat "$state/port")"; }; then
        cat "$state/port"
    else
        local p=54329
        while ! port_free "$p"; do p=$((p + 1)); done
        echo "$p"
    fi
}

start() {
    mkdir -p "$state" "$sock"
    if [ "$(id -u)" -eq 0 ]; then chown postgres "$state" "$sock"; fi
    if [ ! -f "$data/PG_VERSION" ]; then
        "${run_as[@]}" "$bindir/initdb" -D "$data" --auth=trust -E UTF8 --locale=C -U "$db_user" >/dev/null
    fi
    if running; then
        echo "cluster already running on port $(cat "$state/port")"
        return
    fi
    local port
    port="$(choose_port)"
    echo "$port" >"$state/port"
    # A server must not inherit RUST_BACKTRACE: pgrx would append Rust backtraces to errors.
    "${run_as[@]}" env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$bindir/pg_ctl" -D "$data" -l "$log" -w -t 60 \
        -o "-p $port -k $sock -c listen_addresses=127.0.0.1 -c max_connections=100 -c shared_buffers=256MB" \
        start >/dev/null
    echo "cluster started on port $port (data in $data)"
}

stop() {
    if running; then
        "${run_as[@]}" "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null
        echo "cluster stopped"
    fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) if running; then echo "running on port $(cat "$state/port")"; else echo "stopped"; exit 3; fi ;;
env)
    port="$(cat "$state/port" 2>/dev/null || choose_port)"
    echo "export PGHOST=127.0.0.1 PGPORT=$port PGUSER=$db_user PGDATABASE=postgres"
    echo "export QF_TEST_DATABASE_URL=postgres://$db_user@127.0.0.1:$port/postgres"
    ;;
*) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
