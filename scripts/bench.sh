#!/usr/bin/env bash
# make bench: build and install quantum_flow in release mode, start a throwaway cluster of the
# bench's own (never the test cluster), create a fresh database, run the benchmark binary
# (bench/, see bench/README.md), stop the cluster.
#
#   scripts/bench.sh [bench options]      e.g. scripts/bench.sh --waits
#   make bench ARGS="--duration 60"        the same through make
#
# Environment: QF_STATE_DIR (default <repo>/.qf/bench), QF_PORT (default 54339), PG_CONFIG
# (default /usr/lib/postgresql/15/bin/pg_config). The cluster is managed by
# scripts/cluster.sh start|stop|env.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

export QF_STATE_DIR="${QF_STATE_DIR:-$repo/.qf/bench}"
export QF_PORT="${QF_PORT:-54339}"
cluster="$repo/scripts/cluster.sh"
db=qf_bench

say() { echo "bench.sh: $*" >&2; }

# 1. Release build of the extension, installed over whatever build is installed.
if [ ! -f "${PGRX_HOME:-$HOME/.pgrx}/config.toml" ]; then
    cargo pgrx init --pg15 "$PG_CONFIG"
fi
sudo_flag=()
if [ ! -w "$("$PG_CONFIG" --pkglibdir)" ]; then
    sudo_flag=(--sudo)
fi
say "installing quantum_flow (release) into $("$PG_CONFIG" --pkglibdir)"
cargo pgrx install --release --pg-config "$PG_CONFIG" "${sudo_flag[@]}" >&2

# 2. The bench binary, built before the cluster starts, and the Python client's virtualenv for
#    phase (p) (scripts/python-venv.sh; about a second when it is up to date).
cargo build --release -p quantum_flow_bench
scripts/python-venv.sh >&2

# 3. The bench's own cluster, stopped whatever happens next.
say "starting the bench cluster (state $QF_STATE_DIR, port $QF_PORT)"
trap '"$cluster" stop >&2 || true' EXIT
trap 'exit 130' INT TERM
"$cluster" start >&2
eval "$("$cluster" env)"

# 4. A fresh database with the extension.
psql_=(env PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1)
"${psql_[@]}" -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
"${psql_[@]}" -d "$db" -c "CREATE EXTENSION quantum_flow CASCADE"

# 5. The bench (a key=value connection string, so PGHOST may be a socket directory too).
conn="host=${PGHOST:-127.0.0.1} port=$PGPORT user=${PGUSER:-$(id -un)} dbname=$db"
cargo run --quiet --release -p quantum_flow_bench -- "$@" "$conn"
