#!/usr/bin/env bash
# Tier "upgrade": the previous release -> the current build, in place, on a cluster of its own
# (tests/upgrade, see its README.md). Never touches the system PostgreSQL installation or the
# throwaway cluster of the other tiers.
#
#   1. Builds the previous release (PREV_COMMIT below) from `git archive` in
#      .qf/upgrade/prev/<commit>/ with a CARGO_TARGET_DIR of its own (.qf/upgrade/target; the
#      repository's target/ holds the current build). Cached by commit: repeat runs skip it.
#   2. Copies the PostgreSQL installation of $PG_CONFIG (bin, lib and share) into
#      .qf/upgrade/pg/ (PostgreSQL is relocatable: the copy's binaries find the copy's files),
#      removes the current quantum_flow files from the copy, installs the previous release's,
#      and starts a fresh cluster of the copy (scripts/cluster.sh with QF_STATE_DIR
#      .qf/upgrade/cluster and the first free port from 54349 up, or $QF_UPGRADE_PORT). It is
#      stopped at the end whatever happens.
#   3. In database qf_upgrade: CREATE EXTENSION quantum_flow CASCADE (the previous version),
#      then workflows and runs in every state through the previous API (sql/populate.sql).
#   4. Installs the current files (as `make install` put them into $PG_CONFIG's installation)
#      into the copy, shows in a new connection that the API refuses to run before the update,
#      runs ALTER EXTENSION quantum_flow UPDATE and checks that nothing was lost (sql/update.sql).
#   5. Finishes every run that was in flight with a worker loop in plpgsql and checks exact final
#      states, outputs, attempts, definitions and empty queues, then prune_runs, delete_flow and
#      DROP EXTENSION on the upgraded data (sql/finish.sql).
#   6. Compares the extension's catalogue (tests/upgrade/catalogue.sql) in the upgraded database
#      with a fresh CREATE EXTENSION in database qf_fresh (created after qf_upgrade and the
#      roles are dropped, so that the fresh install creates its roles itself).
#
# Steps 3-5 compare psql's output with tests/upgrade/expected/<name>.out (pg_regress style,
# output in .qf/upgrade/out/); any difference, and any catalogue difference, fails the tier.
# Every check runs even after one failed; the summary lists them.
#
# Environment: PG_CONFIG (the installation to copy, default the system PostgreSQL 15),
# QF_UPGRADE_PORT (the upgrade cluster's port), QF_UPGRADE_CURRENT_PKG (take the current
# version's files from this `cargo pgrx package --out-dir` directory instead of from what
# `make install` installed: to test a build without installing it).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

# The previous release: version and the commit it was released from (full hash).
PREV_VERSION=0.1.0
PREV_COMMIT=20657c8688c53e5fae1f6fbc640ab0ce1a0db22c

suite="$repo/tests/upgrade"
work="$repo/.qf/upgrade"
out="$work/out"
prev="$work/prev/$PREV_COMMIT"
cur_version="$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)"

say() { echo "test-upgrade: $*"; }
die() {
    echo "test-upgrade: error: $*" >&2
    exit 1
}
[ -n "$cur_version" ] || die "no version in Cargo.toml"
[ -x "$PG_CONFIG" ] || die "PG_CONFIG=$PG_CONFIG is not an executable pg_config"

sys_bindir="$("$PG_CONFIG" --bindir)"
sys_pkglibdir="$("$PG_CONFIG" --pkglibdir)"
sys_sharedir="$("$PG_CONFIG" --sharedir)"

mkdir -p "$work"
passed=() failed=()
check() { # check NAME COMMAND...: runs a check, records its outcome
    local name="$1"
    shift
    if "$@"; then
        passed+=("$name")
        say "ok: $name"
    else
        failed+=("$name")
        say "FAILED: $name"
    fi
}

# ---------------------------------------------------------------------------------------------
# 1. The previous release, built once per commit
# ---------------------------------------------------------------------------------------------
banner "upgrade: quantum_flow $PREV_VERSION (commit $PREV_COMMIT)"
git -C "$repo" rev-parse --git-dir >/dev/null || die "git cannot read the repository $repo (see above)"
if ! git -C "$repo" cat-file -e "$PREV_COMMIT^{commit}" 2>/dev/null; then
    shallow="$(git -C "$repo" rev-parse --is-shallow-repository)"
    die "commit $PREV_COMMIT (release $PREV_VERSION) is not in this repository (shallow clone: \
$shallow); fetch it (git fetch --unshallow) and re-run: the upgrade tier needs it"
fi
prev_files_ok() {
    [ -f "$prev/pkg$sys_pkglibdir/quantum_flow.so" ] &&
        [ -f "$prev/pkg$sys_sharedir/extension/quantum_flow.control" ] &&
        [ -f "$prev/pkg$sys_sharedir/extension/quantum_flow--$PREV_VERSION.sql" ]
}
if prev_files_ok; then
    say "cached: $prev/pkg (its cold build took $(cat "$prev/build-seconds" 2>/dev/null || echo '?')s)"
else
    say "building $PREV_VERSION from git archive $PREV_COMMIT (log: $prev/build.log)"
    rm -rf "$prev"
    mkdir -p "$prev/src"
    git -C "$repo" archive "$PREV_COMMIT" | tar -x -C "$prev/src"
    grep -q "^version = \"$PREV_VERSION\"" "$prev/src/Cargo.toml" ||
        die "commit $PREV_COMMIT's Cargo.toml is not version $PREV_VERSION"
    t0=$SECONDS
    # A target directory of its own: the repository's target/release/libquantum_flow.so is
    # the current build, which `make install` copies.
    if ! (cd "$prev/src" && env -u RUST_BACKTRACE CARGO_TARGET_DIR="$work/target" \
        cargo pgrx package --pg-config "$PG_CONFIG" --out-dir "$prev/pkg.tmp") >"$prev/build.log" 2>&1; then
        tail -n 40 "$prev/build.log" >&2
        die "building $PREV_VERSION failed (log: $prev/build.log)"
    fi
    mv "$prev/pkg.tmp" "$prev/pkg"
    prev_files_ok || die "the $PREV_VERSION package lacks quantum_flow.so, .control or --$PREV_VERSION.sql"
    echo "$((SECONDS - t0))" >"$prev/build-seconds"
    say "built $PREV_VERSION in $((SECONDS - t0))s (cold build; cached from now on)"
fi

# ---------------------------------------------------------------------------------------------
# 2. A private copy of the PostgreSQL installation, and a cluster of it
# ---------------------------------------------------------------------------------------------
banner "upgrade: private copy of $(dirname "$sys_bindir") and $sys_sharedir"

# The cluster of a previous run, if it was left running, is stopped with the system's pg_ctl
# (the copy is about to be replaced) and its state deleted: every run starts from initdb, with
# none of the extension's roles.
upcluster() { # scripts/cluster.sh for the upgrade cluster: upcluster PG_CONFIG COMMAND
    local pg_config="$1"
    shift
    env -u QF_EXTRA_CONF -u QF_SERVER_ENV PG_CONFIG="$pg_config" QF_STATE_DIR="$work/cluster" \
        QF_PORT="${port:-}" "$repo/scripts/cluster.sh" "$@"
}
upcluster "$PG_CONFIG" clean >/dev/null

# As root the server runs as postgres, which must be able to read the copy: qf_state_dir picks
# the same place or, when postgres cannot reach the repository, one under /tmp.
pgcopy="$(QF_STATE_DIR="$work/pg" qf_state_dir)"
# The three directories keep their places relative to each other (what relocation needs):
# the copy mirrors them below $pgcopy, without their common prefix (/usr for Debian's).
prefix="$sys_bindir"
for d in "$sys_pkglibdir" "$sys_sharedir"; do
    while [ -n "$prefix" ] && [ "${d#"$prefix"/}" = "$d" ]; do
        prefix="$(dirname "$prefix")"
        [ "$prefix" != / ] || prefix=""
    done
done
copy_bindir="$pgcopy${sys_bindir#"$prefix"}"
copy_pkglibdir="$pgcopy${sys_pkglibdir#"$prefix"}"
copy_sharedir="$pgcopy${sys_sharedir#"$prefix"}"
copy_ext="$copy_sharedir/extension"
rm -rf "$pgcopy"
for pair in "$sys_bindir:$copy_bindir" "$sys_pkglibdir:$copy_pkglibdir" "$sys_sharedir:$copy_sharedir"; do
    mkdir -p "${pair#*:}"
    cp -a "${pair%%:*}/." "${pair#*:}/"
done
copy_pg_config="$copy_bindir/pg_config"
# Refuse to go on unless the copy resolves its own directories (else the server below would
# load the system's extension files).
if [ "$("$copy_pg_config" --sharedir)" != "$(cd "$copy_sharedir" && pwd -P)" ] ||
    [ "$("$copy_pg_config" --pkglibdir)" != "$(cd "$copy_pkglibdir" && pwd -P)" ]; then
    die "the copied pg_config does not resolve the copy's directories:" \
        "$("$copy_pg_config" --sharedir), $("$copy_pg_config" --pkglibdir)"
fi
say "copy: $pgcopy (pg_config $copy_pg_config)"

ls "$copy_ext"/pgmq.control "$copy_ext"/pgmq--*.sql >/dev/null 2>&1 ||
    die "pgmq's extension files are not in $sys_sharedir/extension (make setup installs them)"
rm -f "$copy_pkglibdir"/quantum_flow.so "$copy_ext"/quantum_flow.control "$copy_ext"/quantum_flow--*.sql
install -m 755 "$prev/pkg$sys_pkglibdir/quantum_flow.so" "$copy_pkglibdir/quantum_flow.so"
install -m 644 "$prev/pkg$sys_sharedir/extension/quantum_flow.control" \
    "$prev/pkg$sys_sharedir/extension/quantum_flow--$PREV_VERSION.sql" "$copy_ext/"
say "installed $PREV_VERSION into the copy: quantum_flow.so, quantum_flow.control, quantum_flow--$PREV_VERSION.sql"

# the first free port from 54349 up (the other tiers' cluster starts at 54329)
port_free() {
    local rc=0
    "$sys_bindir/pg_isready" -q -h 127.0.0.1 -p "$1" -t 2 >/dev/null 2>&1 || rc=$?
    [ "$rc" -eq 2 ] && ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
port="${QF_UPGRADE_PORT:-}"
if [ -z "$port" ]; then
    port=54349
    while ! port_free "$port"; do
        port=$((port + 1))
        [ "$port" -lt 54400 ] || die "no free port in 54349-54399"
    done
fi

trap 'upcluster "$copy_pg_config" stop >/dev/null 2>&1 || true' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
upcluster "$copy_pg_config" start
eval "$(upcluster "$copy_pg_config" env)"
psql=("$copy_bindir/psql" -X -q -v ON_ERROR_STOP=1)
# The server must have resolved the copy's directories too.
server_dirs="$("${psql[@]}" -At -c "SELECT string_agg(setting, ' ' ORDER BY name) FROM pg_config
                                     WHERE name IN ('PKGLIBDIR', 'SHAREDIR')")"
[ "$server_dirs" = "$(cd "$copy_pkglibdir" && pwd -P) $(cd "$copy_sharedir" && pwd -P)" ] ||
    die "the upgrade cluster's server uses $server_dirs, not the copy"

rm -rf "$out" && mkdir -p "$out"
# golden NAME DB: runs sql/NAME.sql as pg_regress does (psql -a, errors in the output) and
# diffs the output with expected/NAME.out
golden() {
    local name="$1" db="$2"
    "$copy_bindir/psql" -X -a -q -d "$db" <"$suite/sql/$name.sql" >"$out/$name.out" 2>&1 || true
    if diff -u "$suite/expected/$name.out" "$out/$name.out" >"$out/$name.diff"; then
        rm -f "$out/$name.diff"
        return 0
    fi
    echo "---- $out/$name.diff ----"
    cat "$out/$name.diff"
    return 1
}

# ---------------------------------------------------------------------------------------------
# 3. The previous version, with workflows and runs in every state
# ---------------------------------------------------------------------------------------------
banner "upgrade: $PREV_VERSION: flows and runs in every state (database qf_upgrade)"
"${psql[@]}" -c "CREATE DATABASE qf_upgrade"
"${psql[@]}" -d qf_upgrade -c "CREATE EXTENSION quantum_flow CASCADE"
check "populate with $PREV_VERSION (expected/populate.out)" golden populate qf_upgrade

# ---------------------------------------------------------------------------------------------
# 4. The current files, then ALTER EXTENSION ... UPDATE
# ---------------------------------------------------------------------------------------------
banner "upgrade: install $cur_version into the copy, ALTER EXTENSION quantum_flow UPDATE"
# What `make install` installed: the library, the control file and the SQL scripts (the
# previous version's install script stays the one built above).
cur_pkglibdir="$sys_pkglibdir"
cur_ext="$sys_sharedir/extension"
if [ -n "${QF_UPGRADE_CURRENT_PKG:-}" ]; then
    cur_pkglibdir="$QF_UPGRADE_CURRENT_PKG$sys_pkglibdir"
    cur_ext="$QF_UPGRADE_CURRENT_PKG$sys_sharedir/extension"
    say "current files from $QF_UPGRADE_CURRENT_PKG (QF_UPGRADE_CURRENT_PKG), not from the installation"
fi
control_version="$(sed -n "s/^default_version *= *'\(.*\)'.*/\1/p" "$cur_ext/quantum_flow.control" 2>/dev/null || true)"
[ "$control_version" = "$cur_version" ] ||
    die "$cur_ext/quantum_flow.control is version '${control_version:-missing}'," \
        "Cargo.toml $cur_version: run make install"
upgrade_script="quantum_flow--$PREV_VERSION--$cur_version.sql"
[ -f "$cur_ext/$upgrade_script" ] || [ -f "$repo/sql/$upgrade_script" ] || die "no upgrade script $upgrade_script"
# A new inode for the library (install writes a temporary file, then renames): a backend that
# mapped the old one keeps it intact.
install -m 755 "$cur_pkglibdir/quantum_flow.so" "$copy_pkglibdir/quantum_flow.so.new"
mv -f "$copy_pkglibdir/quantum_flow.so.new" "$copy_pkglibdir/quantum_flow.so"
install -m 644 "$cur_ext/quantum_flow.control" "$copy_ext/quantum_flow.control"
for f in "$cur_ext"/quantum_flow--*.sql; do
    [ "$(basename "$f")" = "quantum_flow--$PREV_VERSION.sql" ] || install -m 644 "$f" "$copy_ext/"
done
# The upgrade scripts are sources: when one in sql/ differs from the installed copy (edited
# since the last `make install`), test the repository's.
for f in "$repo"/sql/quantum_flow--*--*.sql; do
    [ -e "$f" ] || continue
    if ! cmp -s "$f" "$cur_ext/$(basename "$f")"; then
        say "note: sql/$(basename "$f") differs from the one in $cur_ext (changed since the last" \
            "make install): testing the repository's"
        install -m 644 "$f" "$copy_ext/"
    fi
done
say "copy now has: $(cd "$copy_ext" && echo quantum_flow*)"
check "update to $cur_version in a new connection (expected/update.out)" golden update qf_upgrade
# catalogue DB NAME: tests/upgrade/catalogue.sql's output for database DB in catalogue-NAME.txt
catalogue() {
    if ! "${psql[@]}" -d "$1" -At -f "$suite/catalogue.sql" >"$out/catalogue-$2.txt" 2>"$out/catalogue-$2.err"; then
        cat "$out/catalogue-$2.err" >&2
        echo "CATALOGUE QUERY FAILED" >>"$out/catalogue-$2.txt"
    fi
}
catalogue qf_upgrade upgraded

# ---------------------------------------------------------------------------------------------
# 5. The runs started before the upgrade finish under the current version
# ---------------------------------------------------------------------------------------------
banner "upgrade: finish the runs in flight with $cur_version"
check "runs finish, definitions and ended runs kept, queues empty (expected/finish.out)" golden finish qf_upgrade

# ---------------------------------------------------------------------------------------------
# 6. Catalogue: upgraded == fresh
# ---------------------------------------------------------------------------------------------
banner "upgrade: catalogue of the upgraded extension vs a fresh CREATE EXTENSION"
# The roles belong to the cluster: drop them (and the database that uses them) so that the
# fresh install creates them, as on a new server.
"${psql[@]}" -c "DROP DATABASE qf_upgrade" \
    -c "DROP ROLE IF EXISTS quantum_flow_admin, quantum_flow_worker, quantum_flow_client" \
    -c "CREATE DATABASE qf_fresh"
"${psql[@]}" -d qf_fresh -c "CREATE EXTENSION quantum_flow CASCADE"
catalogue qf_fresh fresh
catalogue_equal() {
    if grep -q "CATALOGUE QUERY FAILED" "$out/catalogue-fresh.txt" "$out/catalogue-upgraded.txt"; then
        echo "catalogue.sql failed (see above)"
        return 1
    fi
    if diff -u --label "fresh $cur_version (qf_fresh)" \
        --label "upgraded $PREV_VERSION -> $cur_version (qf_upgrade)" \
        "$out/catalogue-fresh.txt" "$out/catalogue-upgraded.txt" >"$out/catalogue.diff"; then
        say "catalogue: $(wc -l <"$out/catalogue-fresh.txt") lines, identical"
        rm -f "$out/catalogue.diff"
        return 0
    fi
    echo "---- $out/catalogue.diff (- fresh install, + upgraded) ----"
    cat "$out/catalogue.diff"
    return 1
}
check "catalogue of the upgraded extension equals a fresh install's" catalogue_equal

banner "upgrade summary ($PREV_VERSION -> $cur_version, ${SECONDS}s)"
if [ ${#passed[@]} -gt 0 ]; then printf 'passed:  %s\n' "${passed[@]}"; fi
if [ ${#failed[@]} -gt 0 ]; then printf 'FAILED:  %s\n' "${failed[@]}"; fi
echo "checks: ${#passed[@]} passed, ${#failed[@]} failed (output: $out)"
[ ${#failed[@]} -eq 0 ]
