#!/usr/bin/env bash
# Tier 4: end-to-end tests through real client connections (tests/e2e) and the Rust client's
# integration tests (clients/rust), against the cluster in QF_TEST_DATABASE_URL.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"
: "${QF_TEST_DATABASE_URL:?run through make test, or eval \"\$(scripts/cluster.sh env)\"}"
cargo test -p quantum_flow_e2e -- --test-threads=1
cargo test -p quantum_flow_client -- --test-threads=1
