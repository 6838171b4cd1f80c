#!/usr/bin/env bash
# Tier 1: unit tests of the engine's pure rules, no server needed.
#
# Plain `cargo test --lib` links for this crate (its unit tests do not touch PostgreSQL
# symbols), so that is what runs: --release reuses what `make install` built. Should
# #[pg_test] functions appear in src/ (they need the pgrx-tests dev-dependency), they run too,
# through `cargo pgrx test pg15`, which starts a server of its own; as root that server runs
# as `postgres` in a data directory under the cluster state dir.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

cargo test --release -p quantum_flow --lib

if grep -rqE '#\[pg_test\]' src; then
    echo "test-unit: #[pg_test] functions found, running cargo pgrx test pg15"
    args=(pg15 --release)
    if is_root; then
        pgdata="$(qf_state_dir)/pgrx-test"
        mkdir -p "$pgdata"
        chown postgres "$(dirname "$pgdata")" "$pgdata"
        args+=(--runas postgres --pgdata "$pgdata")
    fi
    env -u RUST_BACKTRACE cargo pgrx test "${args[@]}"
fi
