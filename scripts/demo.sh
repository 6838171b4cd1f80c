#!/usr/bin/env bash
# make demo: the demo (demo/, a Rust program driving real workers) against a fresh database
# qf_demo on the throwaway cluster. Runnable alone when the cluster is up
# (scripts/cluster.sh start).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"
eval "$("$repo/scripts/cluster.sh" env)"
psql_=(env PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1)
"${psql_[@]}" -d postgres -c 'DROP DATABASE IF EXISTS qf_demo WITH (FORCE)' -c 'CREATE DATABASE qf_demo'
"${psql_[@]}" -d qf_demo -c 'CREATE EXTENSION quantum_flow CASCADE'
if [ -f demo/demo.sql ]; then
    psql -X -v ON_ERROR_STOP=1 -d qf_demo -f demo/demo.sql
fi
cargo run -q --release -p quantum_flow_demo -- "postgres://$PGUSER@$PGHOST:$PGPORT/qf_demo"
