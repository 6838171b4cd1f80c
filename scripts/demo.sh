#!/usr/bin/env bash
# make demo: the demo (demo/, a Rust program driving real workers) against a fresh database
# qf_demo on the throwaway cluster, watched by the web dashboard (dashboard/), which is
# started first and connects as qf_demo_dashboard, a role granted only quantum_flow_client.
# Its address (QF_DASHBOARD_LISTEN, default 127.0.0.1:8080) is printed before the runs start.
# In a terminal (and not under CI), the dashboard stays up after the demo until Enter is
# pressed, to look at the runs; otherwise it stops with the demo. QF_DEMO_DASHBOARD=0 skips it.
# Runnable alone when the cluster is up (scripts/cluster.sh start).
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

dashboard_pid=""
stop_dashboard() {
    if [ -n "$dashboard_pid" ]; then
        kill "$dashboard_pid" 2>/dev/null || true
        wait "$dashboard_pid" 2>/dev/null || true
        dashboard_pid=""
    fi
}
trap stop_dashboard EXIT
if [ "${QF_DEMO_DASHBOARD:-1}" != 0 ]; then
    scripts/dashboard-assets.sh
    cargo build -q --release -p quantum_flow_dashboard
    "${psql_[@]}" -d qf_demo <<'SQL'
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'qf_demo_dashboard') THEN
        CREATE ROLE qf_demo_dashboard LOGIN;
    END IF;
END $$;
GRANT quantum_flow_client TO qf_demo_dashboard;
SQL
    log="$(qf_state_dir)/dashboard-demo.log"
    target/release/quantum_flow_dashboard \
        --database-url "postgres://qf_demo_dashboard@$PGHOST:$PGPORT/qf_demo" \
        --listen "${QF_DASHBOARD_LISTEN:-127.0.0.1:8080}" >"$log" 2>&1 &
    dashboard_pid=$!
    for _ in $(seq 100); do
        grep -q 'listening on' "$log" && break
        kill -0 "$dashboard_pid" 2>/dev/null || break
        sleep 0.1
    done
    if address="$(grep -o 'http://[^ ]*' "$log" | head -1)" && [ -n "$address" ]; then
        banner "dashboard: $address (watch the demo's runs there; log: $log)"
    else
        echo "demo: the dashboard did not start (see $log); the demo runs without it" >&2
        cat "$log" >&2
        stop_dashboard
    fi
fi

cargo run -q --release -p quantum_flow_demo -- "postgres://$PGUSER@$PGHOST:$PGPORT/qf_demo"

if [ -n "$dashboard_pid" ] && [ -t 0 ] && [ -z "${CI:-}" ]; then
    read -r -p "demo: done. The dashboard at $address shows its runs; press Enter to stop it. "
fi
