#!/usr/bin/env bash
# Tier 2: pg_regress golden tests of the SQL API (tests/pg_regress/sql/*.sql against
# tests/pg_regress/expected/*.out) on the throwaway cluster, in database qf_regress. Output:
# .qf/regress-out. See run_golden_suite in scripts/lib.sh.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"
run_golden_suite regress regress/pg_regress tests/pg_regress sql sql qf_regress
