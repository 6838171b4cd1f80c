#!/usr/bin/env bash
# make demo: the demo (demo/) against a fresh database on the running cluster.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c 'DROP DATABASE IF EXISTS qf_demo WITH (FORCE)' -c 'CREATE DATABASE qf_demo'
psql -X -q -v ON_ERROR_STOP=1 -d qf_demo -c 'CREATE EXTENSION quantum_flow CASCADE'
cargo run -q --release -p quantum_flow_demo -- "postgres://$PGUSER@$PGHOST:$PGPORT/qf_demo"
