#!/usr/bin/env bash
# Tier 1: plain Rust unit tests of the engine's pure rules (no server needed).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"
# --release reuses the dependencies `make install` built
cargo test -q --release -p quantum_flow --lib
