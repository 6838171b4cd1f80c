#!/usr/bin/env bash
# A throwaway PostgreSQL cluster of our own (PostgreSQL 15 by default), for the demo, the
# tests and the benchmark.
#
#   scripts/cluster.sh start     initdb if needed, start, wait until ready (running: no-op)
#   scripts/cluster.sh stop      fast shutdown (stopped: no-op)
#   scripts/cluster.sh status    prints running/stopped; exit 0 running, 3 stopped
#   scripts/cluster.sh env       export lines for eval: eval "$(scripts/cluster.sh env)"
#   scripts/cluster.sh clean     stop, then delete the whole state directory
#   scripts/cluster.sh statedir  prints the state directory in use
#   scripts/cluster.sh crash     SIGKILL the postmaster and all its children, as a machine
#                                crash would (the next start replays WAL); for the ops
#                                tier's crash test, on a cluster of its own
#
# State lives in $QF_STATE_DIR, default <repo>/.qf (git-ignored): pgdata/ (the data
# directory, kept between runs: initdb only when absent), sock/ (Unix socket), postgres.log,
# port. As root the state dir moves to /tmp/quantum_flow-<hash> when the `postgres` user
# cannot reach the repo (see qf_state_dir in scripts/lib.sh).
#
# Port: $QF_PORT if set, else the port used last time (remembered in <state>/port) if still
# free, else the first free port from 54329 up. As root the server runs as the `postgres`
# user (PostgreSQL refuses to run as root), otherwise as the invoking user. Clients connect
# over TCP to 127.0.0.1 with trust authentication.
#
# Opt-ins for the ops tier (unset: nothing changes):
#   QF_EXTRA_CONF   lines appended to the settings written at every start (shared_preload_libraries
#                   and the like); ALTER SYSTEM still wins over them
#   QF_SERVER_ENV   space-separated NAME=VALUE pairs put into the server's environment, e.g.
#                   QF_SERVER_ENV=RUST_BACKTRACE=1 (by default the server runs without
#                   RUST_BACKTRACE and RUST_LIB_BACKTRACE)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bindir="$("$PG_CONFIG" --bindir)"
state="$(qf_state_dir)"
data="$state/pgdata"
sock="$state/sock"
log="$state/postgres.log"
portfile="$state/port"

if is_root; then
    run_as=(runuser -u postgres --)
    db_user=postgres
else
    run_as=()
    db_user="$(id -un)"
fi

# Runs a server binary as the server's user, from a directory that user can read (postgres
# cannot stat a cwd under /root), and never with RUST_BACKTRACE: pgrx would append Rust
# backtraces to error messages and break golden test output.
pg() {
    (cd / && "${run_as[@]}" env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$@")
}

say() { echo "cluster: $*"; }
die() {
    echo "cluster: error: $*" >&2
    exit 1
}

# QF_SERVER_ENV as env(1) arguments, checked: NAME=VALUE words only.
server_env=()
for assignment in ${QF_SERVER_ENV:-}; do
    [[ "$assignment" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] ||
        die "QF_SERVER_ENV: '$assignment' is not NAME=VALUE"
    server_env+=("$assignment")
done

running() {
    [ -f "$data/postmaster.pid" ] && pg "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1
}

# Free: no PostgreSQL answers there and nothing listens on it (any address).
port_free() {
    local p="$1" rc=0
    # pg_isready: 0 accepting, 1 rejecting, 2 no response, 3 no attempt; only 2 means free.
    "$bindir/pg_isready" -q -h 127.0.0.1 -p "$p" -t 2 >/dev/null 2>&1 || rc=$?
    if [ "$rc" -ne 2 ]; then return 1; fi
    if command -v ss >/dev/null 2>&1; then
        if ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then return 1; fi
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then return 1; fi
    return 0
}

choose_port() {
    if [ -n "${QF_PORT:-}" ]; then
        echo "$QF_PORT"
        return
    fi
    if [ -s "$portfile" ] && port_free "$(cat "$portfile")"; then
        cat "$portfile"
        return
    fi
    local p="${1:-54329}"
    while ! port_free "$p"; do
        p=$((p + 1))
        [ "$p" -lt 65535 ] || die "no free port from 54329 up"
    done
    echo "$p"
}

# The settings, rewritten at every start (the port may change). Included from
# postgresql.conf, so ALTER SYSTEM still wins over them. fsync stays on (the default):
# the benchmark measures real durability.
write_settings() {
    local port="$1"
    pg tee "$data/quantum_flow.conf" >/dev/null <<EOF
# Written by scripts/cluster.sh at every start; edits are lost.
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '${sock//\'/\'\'}'
max_connections = 100
shared_buffers = '256MB'
max_prepared_transactions = 0
fsync = on
EOF
    if [ -n "${QF_EXTRA_CONF:-}" ]; then
        printf '# QF_EXTRA_CONF\n%s\n' "$QF_EXTRA_CONF" | pg tee -a "$data/quantum_flow.conf" >/dev/null
    fi
    if ! grep -q "^include_if_exists = 'quantum_flow.conf'" "$data/postgresql.conf"; then
        echo "include_if_exists = 'quantum_flow.conf'" | pg tee -a "$data/postgresql.conf" >/dev/null
    fi
}

start() {
    mkdir -p "$state"
    if is_root; then
        chown postgres "$state"
        runuser -u postgres -- test -w "$state" ||
            die "the postgres user cannot write $state (check the permissions of its parents)"
    fi
    pg mkdir -p "$sock"
    if [ ! -f "$data/PG_VERSION" ]; then
        say "initdb $data"
        pg "$bindir/initdb" -D "$data" --auth=trust -E UTF8 --locale=C -U "$db_user" >"$state/initdb.log" 2>&1 ||
            { cat "$state/initdb.log" >&2; die "initdb failed"; }
    fi
    if running; then
        say "already running on port $(cat "$portfile")"
        return
    fi
    local port from=54329 attempt
    for attempt in 1 2 3 4 5; do
        port="$(choose_port "$from")"
        echo "$port" >"$portfile"
        write_settings "$port"
        if pg "${server_env[@]}" "$bindir/pg_ctl" -D "$data" -l "$log" -w -t 120 start >/dev/null; then
            break
        fi
        # Another server may take a free port between our check and our bind: move on.
        if [ -z "${QF_PORT:-}" ] && [ "$attempt" -lt 5 ] &&
            tail -n 20 "$log" 2>/dev/null | grep -q 'Address already in use'; then
            say "port $port was taken meanwhile; trying the next free one"
            rm -f "$portfile"
            from=$((port + 1))
            continue
        fi
        tail -n 30 "$log" >&2 || true
        die "the server did not start (log: $log)"
    done
    # pg_ctl -w waits for the postmaster; also make sure TCP connections are accepted.
    local i
    for i in $(seq 1 60); do
        if "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port"; then break; fi
        [ "$i" -lt 60 ] || die "server on port $port not ready after 30s (log: $log)"
        sleep 0.5
    done
    say "started on port $port (data $data, log $log)"
}

stop() {
    if running; then
        pg "$bindir/pg_ctl" -D "$data" -m fast -w -t 120 stop >/dev/null
        say "stopped"
    else
        say "not running"
    fi
}

# A process's state letter (R, S, Z, ...), empty once it is gone.
proc_state() {
    sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null || true
}

# The server processes of this cluster other than $1: the postmaster's children (backends,
# background workers, checkpointer, walwriter...) run the postgres binary in the data
# directory, which they inherit as their working directory and keep once orphaned.
processes_in_data_dir() {
    local proc
    for proc in /proc/[0-9]*; do
        if [ "${proc#/proc/}" != "$1" ] && [ "$proc/cwd" -ef "$data" ] &&
            [ "$proc/exe" -ef "$bindir/postgres" ]; then
            echo "${proc#/proc/}"
        fi
    done
}

crash() {
    running || die "not running"
    local pm pids pids_left pid i
    pm="$(head -n 1 "$data/postmaster.pid")"
    [[ "$pm" =~ ^[0-9]+$ ]] || die "no postmaster pid in $data/postmaster.pid"
    # The postmaster runs in its data directory: make sure this pid is ours.
    [ "/proc/$pm/cwd" -ef "$data" ] || die "process $pm is not the postmaster of $data"
    # Stop the postmaster so that it forks no new child, collect its children, SIGKILL them,
    # then the postmaster: nobody gets to shut down cleanly or write anything more (killed
    # first, the postmaster would wake its children, which log its death before they die).
    kill -STOP "$pm"
    mapfile -t pids < <(processes_in_data_dir "$pm")
    if [ ${#pids[@]} -gt 0 ]; then kill -KILL "${pids[@]}" 2>/dev/null || true; fi
    kill -KILL "$pm" 2>/dev/null || true
    # Then wait until every one is gone (or a zombie), killing any server process still
    # found in the data directory.
    for i in $(seq 1 100); do
        local alive=()
        for pid in "$pm" "${pids[@]}"; do
            case "$(proc_state "$pid")" in "" | Z) ;; *) alive+=("$pid") ;; esac
        done
        mapfile -t pids_left < <(processes_in_data_dir "$pm")
        [ ${#alive[@]} -gt 0 ] || [ ${#pids_left[@]} -gt 0 ] || break
        [ "$i" -lt 100 ] ||
            die "processes of the crashed cluster still alive after 10s: ${alive[*]} ${pids_left[*]}"
        if [ ${#pids_left[@]} -gt 0 ]; then kill -KILL "${pids_left[@]}" 2>/dev/null || true; fi
        sleep 0.1
    done
    # A dead postmaster that its parent has not reaped yet (a zombie) would look alive to
    # pg_ctl and to the next postmaster's lock-file checks: remove the lock files it left.
    if [ "$(proc_state "$pm")" = Z ]; then
        local lock
        for lock in "$sock"/.s.PGSQL.*.lock; do
            if [ -f "$lock" ] && [ "$(head -n 1 "$lock")" = "$pm" ]; then
                rm -f "$lock" "${lock%.lock}"
            fi
        done
        rm -f "$data/postmaster.pid"
    fi
    say "crashed: SIGKILL to postmaster $pm and its ${#pids[@]} children (${pids[*]})"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
crash) crash ;;
status)
    if running; then
        say "running on port $(cat "$portfile") (data $data)"
    else
        say "stopped"
        exit 3
    fi
    ;;
env)
    if [ -s "$portfile" ]; then port="$(cat "$portfile")"; else port="$(choose_port)"; fi
    echo "export PGHOST=127.0.0.1 PGPORT=$port PGUSER=$db_user PGDATABASE=postgres"
    echo "export QF_TEST_DATABASE_URL=postgres://$db_user@127.0.0.1:$port/postgres"
    ;;
clean)
    stop
    rm -rf "$state"
    say "deleted $state"
    ;;
statedir) echo "$state" ;;
*)
    echo "usage: $0 start|stop|status|env|clean|statedir|crash" >&2
    exit 2
    ;;
esac
