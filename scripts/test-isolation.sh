#!/usr/bin/env bash
# Tier 3: pg_isolation_regress specs of concurrent sessions racing (tests/isolation/specs/
# *.spec against tests/isolation/expected/*.out) on the throwaway cluster, in database
# qf_isolation. Output: .qf/isolation-out. See run_golden_suite in scripts/lib.sh.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"
run_golden_suite isolation isolation/pg_isolation_regress tests/isolation specs spec qf_isolation
