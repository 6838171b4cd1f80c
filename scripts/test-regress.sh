#!/usr/bin/env bash
# Tier 2: pg_regress golden tests of the SQL API (tests/pg_regress), against the cluster that
# PGHOST/PGPORT/PGUSER name (scripts/cluster.sh env).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"
shopt -s nullglob
out="$repo/.qf/regress"
rm -rf "$out" && mkdir -p "$out"
tests=()
for f in tests/pg_regress/sql/*.sql; do tests+=("$(basename "$f" .sql)"); done
if ! "$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/regress/pg_regress" \
    --inputdir=tests/pg_regress --outputdir="$out" \
    --host="$PGHOST" --port="$PGPORT" --user="$PGUSER" --dbname=qf_regress \
    --load-extension=pgmq --load-extension=quantum_flow "${tests[@]}"; then
    cat "$out/regression.diffs" 2>/dev/null || true
    exit 1
fi
