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
# Python: a virtualenv in .qf/venv (created when missing) with ./clients/python and pytest
# installed; reinstalled only when clients/python's pyproject.toml or sources changed (their
# hash is kept in the venv). PYTHON picks the interpreter (default python3). When the
# interpreter cannot create venvs (Debian without python3-venv), python3-venv is installed
# (as root, or through sudo) and the venv is created with /usr/bin/python3.
# Node: `npm ci` in clients/node when node_modules is missing or package-lock.json changed,
# then `npm test`. Needs node (>= 18) and npm on PATH.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

: "${QF_TEST_DATABASE_URL:?run through make test-clients, or eval \"\$(scripts/cluster.sh env)\"}"
export QF_TEST_DATABASE_URL

say() { echo "test-clients: $*"; }
warn() { echo "test-clients: $*" >&2; }

venv="$repo/.qf/venv"
python="${PYTHON:-python3}"

# Hash of everything that goes into the installed Python package, and of the test tools.
python_sources_hash() {
    {
        echo "pytest jsonschema"
        (cd clients/python &&
            find pyproject.toml src -name '*.egg-info' -prune -o -type f ! -name '*.pyc' -print |
            LC_ALL=C sort | xargs sha256sum)
    } | sha256sum | cut -d' ' -f1
}

create_venv() {
    mkdir -p "$(dirname "$venv")"
    if "$python" -m venv "$venv" >/dev/null 2>&1; then
        return 0
    fi
    rm -rf "$venv"
    # Debian's python3 lacks ensurepip until python3-venv is installed.
    if [ -x /usr/bin/apt-get ] && [ -x /usr/bin/python3 ]; then
        say "$python cannot create a venv; installing python3-venv"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        if /usr/bin/python3 -m venv "$venv"; then
            return 0
        fi
        rm -rf "$venv"
    fi
    warn "cannot create a Python virtualenv with $python (python3 -m venv failed)"
    return 1
}

part_python() {
    command -v "$python" >/dev/null 2>&1 || {
        warn "$python is not installed"
        return 1
    }
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c '' 2>/dev/null; then
        say "creating the virtualenv $venv"
        rm -rf "$venv"
        create_venv || return 1
    fi
    local want have=""
    want="$(python_sources_hash)"
    [ -f "$venv/.quantum_flow-install-hash" ] && have="$(cat "$venv/.quantum_flow-install-hash")"
    if [ "$want" != "$have" ]; then
        say "installing clients/python and pytest into $venv"
        rm -f "$venv/.quantum_flow-install-hash"
        # setuptools builds in the source tree: a stale build/ would ship deleted modules.
        rm -rf clients/python/build
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            ./clients/python pytest jsonschema || return 1
        # Same version number, new sources: make pip replace the installed copy.
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            --force-reinstall --no-deps ./clients/python || return 1
        rm -rf clients/python/build
        echo "$want" >"$venv/.quantum_flow-install-hash"
    else
        say "clients/python unchanged since it was installed into $venv"
    fi
    (cd clients/python && "$venv/bin/python" -m pytest -q -p no:cacheprovider)
}

part_node() {
    if ! command -v node >/dev/null 2>&1; then
        warn "node is not installed: install Node.js 18 or newer (with npm) to test clients/node"
        return 1
    fi
    command -v npm >/dev/null 2>&1 || {
        warn "npm is not installed (it comes with Node.js)"
        return 1
    }
    local major
    major="$(node -p 'process.versions.node.split(".")[0]')"
    if [ "$major" -lt 18 ]; then
        warn "node $(node --version) is too old: clients/node needs Node.js 18 or newer"
        return 1
    fi
    (
        cd clients/node
        local want have=""
        want="$(sha256sum package.json package-lock.json 2>/dev/null | sha256sum | cut -d' ' -f1)"
        [ -f node_modules/.quantum_flow-install-hash ] &&
            have="$(cat node_modules/.quantum_flow-install-hash)"
        if [ ! -d node_modules ] || [ "$want" != "$have" ]; then
            if [ -f package-lock.json ]; then
                say "npm ci in clients/node"
                npm ci --no-audit --no-fund --loglevel=error || exit 1
            else
                say "npm install in clients/node (no package-lock.json)"
                npm install --no-audit --no-fund --loglevel=error || exit 1
            fi
            echo "$want" >node_modules/.quantum_flow-install-hash
        fi
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
