#!/usr/bin/env bash
# Tier 4: end-to-end tests through real client connections (the workspace crate tests/e2e)
# and the Rust client's integration tests (clients/rust/tests), against the throwaway
# cluster (scripts/cluster.sh start). They get the cluster's PG* variables and
# QF_TEST_DATABASE_URL=postgres://<user>@127.0.0.1:<port>/postgres, and create their own
# databases. A part whose directory does not exist yet is skipped.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

"$repo/scripts/cluster.sh" status >/dev/null ||
    { echo "test-e2e: the cluster is not running (scripts/cluster.sh start)" >&2; exit 1; }
eval "$("$repo/scripts/cluster.sh" env)"
echo "test-e2e: QF_TEST_DATABASE_URL=$QF_TEST_DATABASE_URL"

ran=0
if [ -f tests/e2e/Cargo.toml ]; then
    cargo test --no-fail-fast -p quantum_flow_e2e -- --test-threads=1
    ran=1
else
    echo "test-e2e: tests/e2e does not exist yet, skipping the end-to-end crate"
fi
if [ -d clients/rust/tests ]; then
    cargo test --no-fail-fast -p quantum_flow_client -- --test-threads=1
    ran=1
fi
[ "$ran" -eq 1 ] || echo "test-e2e: nothing to run"
