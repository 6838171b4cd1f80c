#!/usr/bin/env bash
# Tier 5: the Python client (pytest), the Node proof (node --test), the psql walkthrough
# (docs/psql-walkthrough.md executed verbatim) and flow_graph's pictures rendered by the real
# Mermaid CLI and Graphviz (tests/graphs/run.sh), against the cluster given by
# QF_TEST_DATABASE_URL (postgres://USER@127.0.0.1:PORT/postgres) and PGHOST/PGPORT/PGUSER,
# as `make test` / `make test-clients` export them. Each part creates the databases it uses.
#
#   scripts/test-clients.sh                    all four parts
#   scripts/test-clients.sh python walkthrough only these parts (python, node, walkthrough, graphs)
#
# Every part runs even when an earlier one failed; the script fails if any did. (The parts
# run as `if` conditions, where bash ignores `set -e`: they check every step themselves.)
#
# Python: the virtualenv .qf/venv with ./clients/python and pytest installed
# (scripts/python-venv.sh: created when missing, reinstalled when the client's sources changed),
# then pytest in clients/python.
# Node: `npm ci` in clients/node when node_modules is missing or package-lock.json changed,
# then `npm test`. Needs node (>= 18.8) and npm on PATH.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

: "${QF_TEST_DATABASE_URL:?run through make test-clients, or eval \"\$(scripts/cluster.sh env)\"}"
export QF_TEST_DATABASE_URL

say() { echo "test-clients: $*"; }
warn() { echo "test-clients: $*" >&2; }

venv="$repo/.qf/venv"

part_python() {
    scripts/python-venv.sh || return 1
    (cd clients/python && "$venv/bin/python" -m pytest -q -p no:cacheprovider)
}

part_node() {
    if ! command -v node >/dev/null 2>&1; then
        warn "node is not installed: install Node.js 18.8 or newer (with npm) to test clients/node"
        return 1
    fi
    command -v npm >/dev/null 2>&1 || {
        warn "npm is not installed (it comes with Node.js)"
        return 1
    }
    # node:test's before/after hooks, which the tests use, came with 18.8
    if [ "$(node -p 'const [a, b] = process.versions.node.split(".").map(Number); a > 18 || (a === 18 && b >= 8)')" != true ]; then
        warn "node $(node --version) is too old: clients/node needs Node.js 18.8 or newer"
        return 1
    fi
    qf_npm_ci "$repo/clients/node" || return 1
    (
        cd clients/node
        npm test --silent
    )
}

part_walkthrough() {
    tests/walkthrough/run.sh
}

part_graphs() {
    tests/graphs/run.sh
}

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(python node walkthrough graphs)
failed=()
for part in "${parts[@]}"; do
    case "$part" in
    python) title="Python client (clients/python, pytest)" ;;
    node) title="Node proof (clients/node, node --test)" ;;
    walkthrough) title="psql walkthrough (docs/psql-walkthrough.md, verbatim)" ;;
    graphs) title="flow_graph rendered by the Mermaid CLI and Graphviz (tests/graphs)" ;;
    *)
        warn "unknown part '$part' (python, node, walkthrough, graphs)"
        exit 2
        ;;
    esac
    banner "clients: $title"
    if "part_$part"; then
        say "$part: passed"
    else
        warn "$part: FAILED"
        failed+=("$part")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    banner "clients: FAILED: ${failed[*]}"
    exit 1
fi
banner "clients: passed (${parts[*]})"
