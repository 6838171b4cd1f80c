#!/usr/bin/env bash
# Tier 3b: the roles of CREATE EXTENSION quantum_flow as LOGIN roles see them - pg_regress
# golden tests (tests/privileges/sql/*.sql against tests/privileges/expected/*.out) on the
# throwaway cluster, in database qf_privileges. The tests create LOGIN roles qf_app_* (roles
# are cluster-wide: they drop leftovers first and their own at the end) and switch to them
# with \c over TCP, which the cluster's trust authentication allows. Output:
# .qf/privileges-out. See run_golden_suite in scripts/lib.sh.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"
run_golden_suite privileges regress/pg_regress tests/privileges sql sql qf_privileges
