#!/usr/bin/env bash
# Tier 3: pg_isolation_regress specs of concurrent sessions racing (tests/isolation/specs/
# *.spec against tests/isolation/expected/*.out), run against the throwaway cluster
# (scripts/cluster.sh start). pg_isolation_regress recreates database qf_isolation with pgmq
# and quantum_flow. Specs run in name order, or as tests/isolation/schedule says when that
# file exists. Output: .qf/isolation-out (regression.diffs printed on failure).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

"$repo/scripts/cluster.sh" status >/dev/null ||
    { echo "test-isolation: the cluster is not running (scripts/cluster.sh start)" >&2; exit 1; }
eval "$("$repo/scripts/cluster.sh" env)"

suite=tests/isolation
args=()
if [ -f "$suite/schedule" ]; then
    args+=(--schedule="$suite/schedule")
else
    shopt -s nullglob
    for f in "$suite"/specs/*.spec; do args+=("$(basename "$f" .spec)"); done
    shopt -u nullglob
fi
if [ ${#args[@]} -eq 0 ]; then
    echo "test-isolation: no specs in $suite/specs, skipping"
    exit 0
fi

out="$repo/.qf/isolation-out"
rm -rf "$out" && mkdir -p "$out"
if ! env -u RUST_BACKTRACE "$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/isolation/pg_isolation_regress" \
    --inputdir="$suite" --outputdir="$out" \
    --host="$PGHOST" --port="$PGPORT" --user="$PGUSER" --dbname=qf_isolation \
    --load-extension=pgmq --load-extension=quantum_flow "${args[@]}"; then
    if [ -f "$out/regression.diffs" ]; then
        echo "---- $out/regression.diffs ----"
        cat "$out/regression.diffs"
    fi
    exit 1
fi
