#!/usr/bin/env bash
# Tier "ops": operations (the workspace crate tests/ops), on a throwaway cluster of its own,
# never the main test cluster: the tests kill its postmaster, restart it and change its
# settings. The cluster is created afresh (state in $QF_OPS_STATE_DIR, default <repo>/.qf/ops,
# kept after the run for its log), runs with RUST_BACKTRACE=1 in the server's environment,
# and is started twice with different settings:
#
#   1. not_preloaded   shared_preload_libraries = 'pg_cron': pg_cron schedules maintain() in
#                      a database nobody polls; crash safety (the postmaster and its children
#                      SIGKILLed three times under a mixed workload); which commits wait for
#                      their flush (async claims); errors without backtraces
#   2. preloaded       shared_preload_libraries = 'pg_cron,quantum_flow': the maintenance
#                      background worker (requeue, exhaustion, DROP DATABASE, interval 0);
#                      errors without backtraces
#
# The tests of a phase run at once (pg_cron's job waits for a minute boundary meanwhile). They
# get QF_TEST_DATABASE_URL and the PG* variables of this cluster, and the QF_* variables that
# scripts/cluster.sh reads, so that the crash test can call scripts/cluster.sh crash and start.
# Both phases run even when the first fails.
#
#   scripts/test-ops.sh                  both phases
#   scripts/test-ops.sh preloaded        only the phases named (not_preloaded, preloaded)
#
# Environment: QF_OPS_STATE_DIR, QF_OPS_PORT (default 54359).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

say() { echo "test-ops: $*"; }

# The phases, in order, with what the server preloads in each.
declare -A preload=([not_preloaded]=pg_cron [preloaded]='pg_cron,quantum_flow')
phases=("$@")
[ ${#phases[@]} -gt 0 ] || phases=(not_preloaded preloaded)
for phase in "${phases[@]}"; do
    [ -n "${preload[$phase]:-}" ] ||
        { echo "test-ops: unknown phase '$phase' (not_preloaded, preloaded)" >&2; exit 2; }
done

# QF_STATE_DIR and QF_PORT may name the main cluster (make test runs this with its
# environment): the ops cluster gets its own, under its own names.
cluster="$repo/scripts/cluster.sh"
main_state="$("$cluster" statedir)"
export QF_STATE_DIR="${QF_OPS_STATE_DIR:-$repo/.qf/ops}"
export QF_PORT="${QF_OPS_PORT:-54359}"
export QF_SERVER_ENV="RUST_BACKTRACE=1"
if [ "$("$cluster" statedir)" = "$main_state" ]; then
    echo "test-ops: QF_OPS_STATE_DIR is the main cluster's state directory ($main_state)" >&2
    exit 1
fi

# A synchronous standby that never connects, with synchronous_commit = local as everyone's
# default: a session that sets synchronous_commit = on waits at each commit that must be
# durable, which shows which commits wait for their flush (only_a_poll_that_just_claimed_...).
common_conf="cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 16
synchronous_standby_names = 'qf_ops_no_such_standby'
synchronous_commit = local"

# Build first, so that no phase waits for the compiler.
cargo test -p quantum_flow_ops --no-run

trap '"$cluster" stop || true' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
"$cluster" clean >/dev/null

failed=()

# On the new cluster the three roles do not exist yet: four CREATE EXTENSION in four
# databases at once must all succeed (each creates the roles where absent; the losers of that
# race must not fail with pg_authid's unique violation).
concurrent_create_extension() {
    local d pids=() rc=0
    for d in 1 2 3 4; do
        psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE qf_ops_race_$d" || return 1
    done
    [ "$(psql -X -qAt -d postgres -c "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'quantum\\_flow\\_%'")" = 0 ] ||
        { echo "test-ops: the roles exist before the race" >&2; return 1; }
    for d in 1 2 3 4; do
        PGOPTIONS="-c client_min_messages=warning" \
            psql -X -q -v ON_ERROR_STOP=1 -d "qf_ops_race_$d" -c 'CREATE EXTENSION quantum_flow CASCADE' &
        pids+=($!)
    done
    for d in "${pids[@]}"; do wait "$d" || rc=1; done
    [ "$rc" -eq 0 ] || { echo "test-ops: a concurrent CREATE EXTENSION failed" >&2; return 1; }
    [ "$(psql -X -qAt -d postgres -c "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolname LIKE 'quantum\\_flow\\_%'")" = \
        quantum_flow_admin,quantum_flow_client,quantum_flow_worker ] || return 1
    for d in 1 2 3 4; do psql -X -q -d postgres -c "DROP DATABASE qf_ops_race_$d" || return 1; done
    say "four concurrent CREATE EXTENSION (roles created by whichever came first): passed"
}

run_phase() {
    local name="$1" preload="$2"
    banner "ops: $name (shared_preload_libraries = '$preload')"
    export QF_EXTRA_CONF="shared_preload_libraries = '$preload'
$common_conf"
    "$cluster" stop >/dev/null
    "$cluster" start
    eval "$("$cluster" env)"
    if [ "$name" = not_preloaded ] && ! concurrent_create_extension; then
        failed+=("concurrent CREATE EXTENSION")
    fi
    local t0=$SECONDS
    if cargo test -p quantum_flow_ops --test "$name" -- --test-threads=8 --show-output; then
        say "$name: passed in $((SECONDS - t0))s"
    else
        say "$name: FAILED after $((SECONDS - t0))s (server log: $("$cluster" statedir)/postgres.log)"
        failed+=("$name")
    fi
}

for phase in "${phases[@]}"; do
    run_phase "$phase" "${preload[$phase]}"
done

if [ ${#failed[@]} -gt 0 ]; then
    say "FAILED: ${failed[*]}"
    exit 1
fi
say "passed"
