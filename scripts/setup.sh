#!/usr/bin/env bash
# Installs what building and testing quantum_flow needs, skipping whatever is already there:
# Debian packages (PostgreSQL 15 and its server headers, clang), cargo-pgrx 0.18.0, pgrx
# initialised against the system PostgreSQL 15, and pgmq's extension files (taken from the
# pgmq crate, see tools/pgmq-files). Idempotent and non-interactive.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

PGRX_VERSION=0.18.0
packages=(postgresql-15 postgresql-server-dev-15 clang libclang-dev sudo pkg-config python3-venv)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: Debian packages ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
    echo "ok: Debian packages"
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo is not installed; install Rust (https://rustup.rs) and re-run" >&2
    exit 1
fi

if cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION\$"; then
    echo "ok: cargo-pgrx $PGRX_VERSION"
else
    echo "installing: cargo-pgrx $PGRX_VERSION (a few minutes)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --quiet
fi

pgrx_config="${PGRX_HOME:-$HOME/.pgrx}/config.toml"
if [ -f "$pgrx_config" ] && grep -q "^pg15 = \"$PG_CONFIG\"" "$pgrx_config"; then
    echo "ok: pgrx initialised for $PG_CONFIG"
else
    echo "installing: pgrx configuration for $PG_CONFIG"
    cargo pgrx init --pg15 "$PG_CONFIG" >/dev/null
fi

# pgmq is SQL-only: its control and script files ship inside the pgmq crate.
pgmq_dir=$(cargo metadata --format-version 1 --manifest-path "$repo/Cargo.toml" 2>/dev/null |
    python3 -c 'import json,sys,os
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "pgmq":
        print(os.path.join(os.path.dirname(p["manifest_path"]), "src/install/embedded"))')
if [ -z "$pgmq_dir" ] || [ ! -f "$pgmq_dir/pgmq.control" ]; then
    echo "error: could not locate the pgmq crate's embedded extension files" >&2
    exit 1
fi
pgmq_version=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$pgmq_dir/pgmq.control")
ext_dir="$("$PG_CONFIG" --sharedir)/extension"
if cmp -s "$pgmq_dir/pgmq.control" "$ext_dir/pgmq.control" &&
    cmp -s "$pgmq_dir/sql/pgmq.sql" "$ext_dir/pgmq--$pgmq_version.sql"; then
    echo "ok: pgmq $pgmq_version extension files"
else
    echo "installing: pgmq $pgmq_version extension files into $ext_dir"
    as_root install -m 644 "$pgmq_dir/pgmq.control" "$ext_dir/pgmq.control"
    as_root install -m 644 "$pgmq_dir/sql/pgmq.sql" "$ext_dir/pgmq--$pgmq_version.sql"
fi
