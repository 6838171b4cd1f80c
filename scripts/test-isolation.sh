#!/usr/bin/env bash
# Tier 3: pg_isolation_regress specs of concurrent sessions racing (tests/isolation).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"
shopt -s nullglob
out="$repo/.qf/isolation"
rm -rf "$out" && mkdir -p "$out"
specs=()
for f in tests/isolation/specs/*.spec; do specs+=("$(basename "$f" .spec)"); done
if ! "$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/isolation/pg_isolation_regress" \
    --inputdir=tests/isolation --outputdir="$out" \
    --host="$PGHOST" --port="$PGPORT" --user="$PGUSER" --dbname=qf_isolation \
    --load-extension=pgmq --load-extension=quantum_flow "${specs[@]}"; then
    cat "$out/regression.diffs" 2>/dev/null || true
    exit 1
fi
