#!/usr/bin/env bash
# The virtualenv .qf/venv with ./clients/python, pytest, jsonschema and playwright installed,
# used by the clients tier (scripts/test-clients.sh: the Python client's tests), the dashboard
# tier (scripts/test-dashboard.sh: Playwright driving the system Chromium) and by make bench
# (phase (p): the Python client's Worker). Created when missing; the package is reinstalled only when
# clients/python's pyproject.toml or sources changed (their hash is kept in the venv), so a
# second call takes well under a second. PYTHON picks the interpreter (default python3). When
# the interpreter cannot create venvs (Debian without python3-venv), python3-venv is installed
# (as root, or through sudo) and the venv is created with /usr/bin/python3.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

say() { echo "python-venv: $*"; }
warn() { echo "python-venv: $*" >&2; }

venv="$repo/.qf/venv"
# Playwright's Python package only: it drives /usr/bin/chromium (Debian's), so no
# `playwright install` browser download is needed.
python_tools="playwright==1.65.2"
python="${PYTHON:-python3}"

# Hash of everything that goes into the installed Python package, and of the test tools.
python_sources_hash() {
    {
        echo "pytest jsonschema $python_tools"
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

prepare() {
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
            ./clients/python pytest jsonschema $python_tools || return 1
        # Same version number, new sources: make pip replace the installed copy.
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            --force-reinstall --no-deps ./clients/python || return 1
        rm -rf clients/python/build
        echo "$want" >"$venv/.quantum_flow-install-hash"
    else
        say "clients/python unchanged since it was installed into $venv"
    fi
    return 0
}

prepare
