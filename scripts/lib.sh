# shellcheck shell=bash disable=SC2034
# Shared by the scripts in this directory (sourced, not run). Defines:
#   repo        absolute path of the repository
#   PG_CONFIG   the pg_config of the PostgreSQL we build for and run (exported;
#               default /usr/lib/postgresql/15/bin/pg_config)
#   is_root, as_root, qf_state_dir, banner, run_golden_suite, qf_install_pgmq_files, qf_npm_ci
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}"
export PG_CONFIG

is_root() { [ "$(id -u)" -eq 0 ]; }

# Run a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if is_root; then "$@"; else sudo "$@"; fi
}

# The throwaway cluster's state directory: $QF_STATE_DIR, default <repo>/.qf.
# As root the server runs as `postgres`, which must be able to reach that directory. A repo
# under a directory postgres cannot traverse (typically /root) cannot hold it, so the state
# then lives in /tmp/quantum_flow-<hash of the wanted path> instead (one per repo checkout
# and per QF_STATE_DIR, so the test and bench clusters never share one).
qf_state_dir() {
    local want="${QF_STATE_DIR:-$repo/.qf}" probe
    if ! is_root; then
        echo "$want"
        return
    fi
    # The nearest existing ancestor decides whether postgres can get there.
    probe="$want"
    while [ ! -e "$probe" ]; do probe="$(dirname "$probe")"; done
    if runuser -u postgres -- test -x "$probe" 2>/dev/null; then
        echo "$want"
    else
        echo "/tmp/quantum_flow-$(printf '%s' "$want" | sha256sum | cut -c1-12)"
    fi
}

banner() {
    printf '\n==== %s ====\n' "$*"
}

# Load ~/.cargo/env when cargo is not on PATH yet (fresh shells, CI).
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

# Runs a golden-file suite with one of PostgreSQL's regression drivers against the throwaway
# cluster (which must be running): run_golden_suite NAME DRIVER SUITE TEST_DIR TEST_EXT DB
#   DRIVER    regress/pg_regress or isolation/pg_isolation_regress (under pgxs/src/test)
#   SUITE     the input dir (with expected/, and TEST_DIR holding the tests)
# The driver recreates database DB with pgmq and quantum_flow. Tests run in name order, or as
# SUITE/schedule says when that file exists. Output goes to .qf/NAME-out; regression.diffs is
# printed on failure.
run_golden_suite() {
    local name="$1" driver="$2" suite="$3" test_dir="$4" ext="$5" db="$6" f
    "$repo/scripts/cluster.sh" status >/dev/null ||
        { echo "test-$name: the cluster is not running (scripts/cluster.sh start)" >&2; return 1; }
    eval "$("$repo/scripts/cluster.sh" env)"
    local args=()
    if [ -f "$suite/schedule" ]; then
        args+=(--schedule="$suite/schedule")
    else
        for f in "$suite/$test_dir"/*."$ext"; do
            [ -e "$f" ] && args+=("$(basename "$f" ."$ext")")
        done
    fi
    if [ ${#args[@]} -eq 0 ]; then
        echo "test-$name: nothing in $suite/$test_dir, skipping"
        return 0
    fi
    local out="$repo/.qf/$name-out"
    rm -rf "$out" && mkdir -p "$out"
    if ! env -u RUST_BACKTRACE "$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/$driver" \
        --inputdir="$suite" --outputdir="$out" \
        --host="$PGHOST" --port="$PGPORT" --user="$PGUSER" --dbname="$db" \
        --load-extension=pgmq --load-extension=quantum_flow "${args[@]}"; then
        if [ -f "$out/regression.diffs" ]; then
            echo "---- $out/regression.diffs ----"
            cat "$out/regression.diffs"
        fi
        return 1
    fi
}

# pgmq's extension files (SQL only: the control and script files that ship inside the pgmq
# crate cargo fetches for the workspace member tools/pgmq-files) installed into
# $($1 --sharedir)/extension unless the same files are there already; through as_root when that
# directory is not writable, refused with message $2 (if given) then. Callers define die.
qf_install_pgmq_files() {
    local pg_config="$1" cannot_write="${2:-}" metadata pgmq_dir pgmq_version ext_dir
    metadata="$(cargo metadata --format-version 1 --manifest-path "$repo/Cargo.toml")" ||
        die "cargo metadata failed (see above); it is how the pgmq crate is located"
    pgmq_dir="$(python3 -c '
import json, os, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "pgmq":
        print(os.path.join(os.path.dirname(p["manifest_path"]), "src", "install", "embedded"))
        break
' <<<"$metadata")"
    [ -n "$pgmq_dir" ] && [ -f "$pgmq_dir/pgmq.control" ] && [ -f "$pgmq_dir/sql/pgmq.sql" ] ||
        die "the pgmq crate's embedded extension files were not found (is tools/pgmq-files a workspace member?)"
    pgmq_version="$(sed -n "s/^default_version *= *'\(.*\)'.*/\1/p" "$pgmq_dir/pgmq.control")"
    [ -n "$pgmq_version" ] || die "no default_version in $pgmq_dir/pgmq.control"
    ext_dir="$("$pg_config" --sharedir)/extension"
    if cmp -s "$pgmq_dir/pgmq.control" "$ext_dir/pgmq.control" &&
        cmp -s "$pgmq_dir/sql/pgmq.sql" "$ext_dir/pgmq--$pgmq_version.sql"; then
        echo "ok: pgmq $pgmq_version extension files in $ext_dir"
        return 0
    fi
    echo "installing: pgmq $pgmq_version extension files into $ext_dir"
    local run=()
    if [ ! -w "$ext_dir" ]; then
        [ -z "$cannot_write" ] || die "$cannot_write"
        run=(as_root)
    fi
    "${run[@]}" install -m 644 "$pgmq_dir/pgmq.control" "$ext_dir/pgmq.control"
    "${run[@]}" install -m 644 "$pgmq_dir/sql/pgmq.sql" "$ext_dir/pgmq--$pgmq_version.sql"
}

# npm ci in DIR (which has package.json and package-lock.json) when its node_modules is
# missing or was installed from other versions of those two files (their hash is kept in
# node_modules/.quantum_flow-install-hash); otherwise nothing. Needs node and npm.
qf_npm_ci() {
    local dir="$1" want have="" t0=$SECONDS
    want="$(cd "$dir" && sha256sum package.json package-lock.json | sha256sum | cut -d' ' -f1)" || return 1
    [ -f "$dir/node_modules/.quantum_flow-install-hash" ] &&
        have="$(cat "$dir/node_modules/.quantum_flow-install-hash")"
    if [ -d "$dir/node_modules" ] && [ "$want" = "$have" ]; then
        return 0
    fi
    echo "npm ci in ${dir#"$repo"/}"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || return 1
    echo "$want" >"$dir/node_modules/.quantum_flow-install-hash"
    echo "npm ci in ${dir#"$repo"/} took $((SECONDS - t0)) s"
}
