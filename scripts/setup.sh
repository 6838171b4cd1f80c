#!/usr/bin/env bash
# Installs what building and testing quantum_flow needs, skipping whatever is already there.
# Idempotent and non-interactive; every step checks first and prints one line, "ok: X" or
# "installing: X". With everything present it takes about a second.
#
#   1. Debian packages: PostgreSQL 15, its server headers, clang (bindgen), sudo, pkg-config,
#      python3-venv (the Python client's tests), pg_cron (the ops tier), chromium and graphviz
#      (the graph tests render flow_graph's Mermaid and DOT), pg_cron (the ops tier schedules maintain()),
#      dpkg-dev and binutils (make package: dpkg-deb, dpkg-shlibdeps, strip)
#   2. cargo-pgrx 0.18.0 (cargo install, about 4 minutes on 2 cores)
#   3. pgrx initialised against the system PostgreSQL (cargo pgrx init --pg15 $PG_CONFIG)
#   4. pgmq's extension files, taken from the pgmq crate that cargo fetches for the workspace
#      member tools/pgmq-files, copied into $(pg_config --sharedir)/extension
#
# Environment: PG_CONFIG (default /usr/lib/postgresql/15/bin/pg_config), PGRX_HOME (default
# ~/.pgrx). As a non-root user, writes outside $HOME go through sudo.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

PGRX_VERSION=0.18.0
PG_MAJOR=15
packages=(postgresql-15 postgresql-server-dev-15 clang libclang-dev sudo pkg-config python3-venv
    postgresql-15-cron chromium graphviz dpkg-dev binutils)

die() {
    echo "setup: error: $*" >&2
    exit 1
}

if ! is_root && ! command -v sudo >/dev/null 2>&1; then
    root_hint="run this script as root once (sudo is not installed)"
else
    root_hint=""
fi

# 1. Debian packages
missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "ok: Debian packages (${packages[*]})"
else
    echo "installing: Debian packages ${missing[*]}"
    [ -z "$root_hint" ] || die "$root_hint"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

[ -x "$PG_CONFIG" ] || die "PG_CONFIG=$PG_CONFIG is not an executable pg_config"
pg_version="$("$PG_CONFIG" --version)"
case "$pg_version" in
"PostgreSQL $PG_MAJOR".*) ;;
*) die "$PG_CONFIG is $pg_version; quantum_flow is built for PostgreSQL $PG_MAJOR here" ;;
esac

command -v cargo >/dev/null 2>&1 ||
    die "cargo is not installed: install Rust (https://rustup.rs), then re-run"

# 2. cargo-pgrx, the version matching the pgrx crate the extension uses
if [ "$(cargo pgrx --version 2>/dev/null)" = "cargo-pgrx $PGRX_VERSION" ]; then
    echo "ok: cargo-pgrx $PGRX_VERSION"
else
    echo "installing: cargo-pgrx $PGRX_VERSION (about 4 minutes)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --quiet
fi

# 3. pgrx configuration: uses the system server, downloads nothing
pgrx_config="${PGRX_HOME:-$HOME/.pgrx}/config.toml"
if [ -f "$pgrx_config" ] && grep -Eq "^pg$PG_MAJOR *= *\"$PG_CONFIG\"" "$pgrx_config"; then
    echo "ok: pgrx initialised (pg$PG_MAJOR = $PG_CONFIG)"
else
    echo "installing: pgrx configuration (cargo pgrx init --pg$PG_MAJOR $PG_CONFIG)"
    cargo pgrx init "--pg$PG_MAJOR" "$PG_CONFIG" >/dev/null
fi

# 4. pgmq: SQL-only, its control and script files ship inside the pgmq crate
qf_install_pgmq_files "$PG_CONFIG" "$root_hint"
