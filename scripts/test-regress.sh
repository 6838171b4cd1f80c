#!/usr/bin/env bash
# Tier 2: pg_regress golden tests of the SQL API (tests/pg_regress/sql/*.sql against
# tests/pg_regress/expected/*.out), run against the throwaway cluster (scripts/cluster.sh
# start; QF_STATE_DIR/QF_PORT select which one). pg_regress recreates database qf_regress
# with pgmq and quantum_flow. Tests run in name order, or as tests/pg_regress/schedule says
# when that file exists. Output: .qf/regress-out (regression.diffs printed on failure).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

"$repo/scripts/cluster.sh" status >/dev/null ||
    { echo "test-regress: the cluster is not running (scripts/cluster.sh start)" >&2; exit 1; }
eval "$("$repo/scripts/cluster.sh" env)"

suite=tests/pg_regress
args=()
if [ -f "$suite/schedule" ]; then
    args+=(--schedule="$suite/schedule")
else
    shopt -s nullglob
    for f in "$suite"/sql/*.sql; do args+=("$(basename "$f" .sql)"); done
    shopt -u nullglob
fi
if [ ${#args[@]} -eq 0 ]; then
    echo "test-regress: no tests in $suite/sql, skipping"
    exit 0
fi

out="$repo/.qf/regress-out"
rm -rf "$out" && mkdir -p "$out"
if ! env -u RUST_BACKTRACE "$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/regress/pg_regress" \
    --inputdir="$suite" --outputdir="$out" \
    --host="$PGHOST" --port="$PGPORT" --user="$PGUSER" --dbname=qf_regress \
    --load-extension=pgmq --load-extension=quantum_flow "${args[@]}"; then
    if [ -f "$out/regression.diffs" ]; then
        echo "---- $out/regression.diffs ----"
        cat "$out/regression.diffs"
    fi
    exit 1
fi
