#!/usr/bin/env bash
# The package tier (see README.md here): builds the .deb files with scripts/package.sh and
# proves what they hold, that they are reproducible, that their dependencies resolve on this
# machine, that dpkg installs and removes them in a clean root, and that a PostgreSQL 15 whose
# extension files are only the unpacked packages' runs a workflow with them.
# Changes nothing outside target/package and a temporary directory (removed at the end).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
cd "$repo"

fails=0
ok() { echo "ok: $*"; }
fail() {
    echo "FAIL: $*" >&2
    fails=$((fails + 1))
}
# expect DESCRIPTION EXPECTED ACTUAL
expect() {
    if [ "$2" = "$3" ]; then ok "$1"; else fail "$1: expected [$2], got [$3]"; fi
}

pg_major=15
pkglibdir="/usr/lib/postgresql/$pg_major/lib"
extdir="/usr/share/postgresql/$pg_major/extension"
arch="$(dpkg --print-architecture)"
qf_version="$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)"
out="$repo/target/package"
pgrx_out="$repo/target/release/quantum_flow-pg$pg_major"

tmp="$(mktemp -d /tmp/qf-package-test.XXXXXX)"
pg_bin="$tmp/pgroot/usr/lib/postgresql/$pg_major/bin"
cleanup() {
    if [ -f "$tmp/pgdata/postmaster.pid" ]; then
        runuser_ "$pg_bin/pg_ctl" -D "$tmp/pgdata" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
chmod 755 "$tmp"
# The server refuses to run as root: as root it runs as postgres (see TOOLCHAIN.md).
runuser_() { if is_root; then runuser -u postgres -- "$@"; else "$@"; fi; }

# ---- 1. build, twice: the same tree and SOURCE_DATE_EPOCH give the same bytes --------------
banner "package: build (scripts/package.sh)"
scripts/package.sh
qf_deb="$out/postgresql-${pg_major}-quantum-flow_${qf_version}_${arch}.deb"
pgmq_deb=("$out"/postgresql-${pg_major}-pgmq_*-0qf1_all.deb)
pgmq_deb="${pgmq_deb[0]}"
[ -f "$qf_deb" ] || { fail "no $qf_deb"; exit 1; }
[ -f "$pgmq_deb" ] || { fail "no pgmq package in $out"; exit 1; }
expect "exactly two .deb files in target/package" 2 "$(find "$out" -maxdepth 1 -name '*.deb' | wc -l)"
cp "$qf_deb" "$pgmq_deb" "$tmp/"
scripts/package.sh >/dev/null
cmp -s "$qf_deb" "$tmp/$(basename "$qf_deb")" && cmp -s "$pgmq_deb" "$tmp/$(basename "$pgmq_deb")" &&
    ok "a second build gives byte-identical .deb files" || fail "the .deb files differ between two builds"

# pgmq's version, read independently of package.sh: the control file it ships
pgmq_version="$(dpkg-deb --fsys-tarfile "$pgmq_deb" | tar -xOf - ".$extdir/pgmq.control" |
    sed -n "s/^default_version *= *'\(.*\)'.*/\1/p")"

# ---- 2. metadata, field by field ---------------------------------------------------------
banner "package: metadata"
field() { dpkg-deb -f "$1" "$2"; }
expect "quantum_flow Package" "postgresql-$pg_major-quantum-flow" "$(field "$qf_deb" Package)"
expect "quantum_flow Version (Cargo.toml)" "$qf_version" "$(field "$qf_deb" Version)"
expect "quantum_flow Architecture" "$arch" "$(field "$qf_deb" Architecture)"
expect "pgmq Package" "postgresql-$pg_major-pgmq" "$(field "$pgmq_deb" Package)"
expect "pgmq Version (its control file's default_version, revision 0qf1)" "$pgmq_version-0qf1" "$(field "$pgmq_deb" Version)"
expect "pgmq Architecture" all "$(field "$pgmq_deb" Architecture)"
expect "pgmq Depends" "postgresql-$pg_major" "$(field "$pgmq_deb" Depends)"
depends="$(field "$qf_deb" Depends)"
# The shared-library part, computed here independently of dpkg-shlibdeps: each library the
# .so needs (readelf NEEDED) belongs to the package (dpkg -S) that must be named, and nothing else.
want_libs="$(readelf -d "$pgrx_out$pkglibdir/quantum_flow.so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' |
    while read -r lib; do
        path="$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64|64bit/ { print $NF; exit }')"
        [ -n "$path" ] || path="$(ldconfig -p | awk -v l="$lib" '$1 == l { print $NF; exit }')"
        dpkg -S "$(realpath "$path")" 2>/dev/null || dpkg -S "$path"
    done | cut -d: -f1 | sort -u | tr '\n' ' ')"
got_libs="$(sed "s/^postgresql-$pg_major, postgresql-$pg_major-pgmq (>= $pgmq_version), //" <<<"$depends" |
    tr ',' '\n' | sed 's/^ *\([^ ]*\).*/\1/' | sort -u | tr '\n' ' ')"
prefix="postgresql-$pg_major, postgresql-$pg_major-pgmq (>= $pgmq_version), "
expect "quantum_flow Depends starts with [$prefix]" yes "$([[ "$depends" == "$prefix"* ]] && echo yes || echo no)"
expect "quantum_flow Depends names the packages of the libraries the .so links" "$want_libs" "$got_libs"
while read -r dep; do
    [[ "$dep" =~ ^[a-z0-9.+-]+\ \(\>=\ [^\)]+\)$ ]] || fail "dependency [$dep] has no (>= version)"
done < <(sed "s/^postgresql-$pg_major, //" <<<"$depends" | tr ',' '\n' | sed 's/^ *//')
expect "quantum_flow Maintainer is 'Name <email>'" yes \
    "$([[ "$(field "$qf_deb" Maintainer)" =~ ^[^\<\>]+\ \<[^\<\>\ ]+@[^\<\>\ ]+\>$ ]] && echo yes || echo no)"

# ---- 3. contents, file by file ---------------------------------------------------------------
banner "package: contents"
# listing: type mode owner/group path, for every entry
listing() { dpkg-deb -c "$1" | awk '{ print substr($1, 1, 1), $1, $2, $6 }' | sort; }
{
    # what `cargo pgrx package` produced, as a packaged tree
    (cd "$pgrx_out" && find . -type f) | sed 's|^|- -rw-r--r-- root/root |'
    for f in changelog.gz copyright; do echo "- -rw-r--r-- root/root ./usr/share/doc/postgresql-$pg_major-quantum-flow/$f"; done
    for d in ./ ./usr/ ./usr/lib/ ./usr/lib/postgresql/ "./usr/lib/postgresql/$pg_major/" \
        "./usr/lib/postgresql/$pg_major/lib/" ./usr/share/ ./usr/share/doc/ \
        "./usr/share/doc/postgresql-$pg_major-quantum-flow/" ./usr/share/postgresql/ \
        "./usr/share/postgresql/$pg_major/" "./usr/share/postgresql/$pg_major/extension/"; do
        echo "d drwxr-xr-x root/root $d"
    done
} | sort >"$tmp/qf.want"
listing "$qf_deb" >"$tmp/qf.got"
if diff -u "$tmp/qf.want" "$tmp/qf.got"; then ok "quantum_flow package: every entry, mode and owner (cargo pgrx package's files + doc)"; else fail "quantum_flow package contents"; fi
for f in "$extdir/quantum_flow--$qf_version.sql" "$extdir/quantum_flow.control" $(cd sql && ls quantum_flow--*--*.sql | sed "s|^|$extdir/|"); do
    grep -q " \.$f\$" "$tmp/qf.got" || fail "quantum_flow package lacks $f"
done
{
    echo "- -rw-r--r-- root/root .$extdir/pgmq--$pgmq_version.sql"
    echo "- -rw-r--r-- root/root .$extdir/pgmq.control"
    for f in changelog.Debian.gz copyright; do echo "- -rw-r--r-- root/root ./usr/share/doc/postgresql-$pg_major-pgmq/$f"; done
    for d in ./ ./usr/ ./usr/share/ ./usr/share/doc/ "./usr/share/doc/postgresql-$pg_major-pgmq/" \
        ./usr/share/postgresql/ "./usr/share/postgresql/$pg_major/" "./usr/share/postgresql/$pg_major/extension/"; do
        echo "d drwxr-xr-x root/root $d"
    done
} | sort >"$tmp/pgmq.want"
listing "$pgmq_deb" >"$tmp/pgmq.got"
if diff -u "$tmp/pgmq.want" "$tmp/pgmq.got"; then ok "pgmq package: every entry, mode and owner"; else fail "pgmq package contents"; fi

# ---- 4. dpkg into a clean root: install, verify, bytes, remove ---------------------------
banner "package: dpkg --root into a clean root"
root="$tmp/root"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
touch "$root/var/lib/dpkg/status" "$root/var/lib/dpkg/available"
# The empty root has no postgresql-15: that dependency alone is forced (section 5 resolves it
# against this machine's real package database).
if dpkg --root="$root" --force-depends --force-not-root -i "$pgmq_deb" "$qf_deb" >"$tmp/dpkg.log" 2>&1; then
    ok "dpkg --root -i of both packages"
else
    cat "$tmp/dpkg.log"
    fail "dpkg --root -i"
fi
expect "both packages installed in the clean root" \
    "postgresql-$pg_major-pgmq install ok installed|postgresql-$pg_major-quantum-flow install ok installed" \
    "$(dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Package} ${Status}\n' | sort | paste -sd'|')"
if dpkg --root="$root" --verify "postgresql-$pg_major-pgmq" "postgresql-$pg_major-quantum-flow"; then
    ok "dpkg --verify: every installed file matches its md5sum"
else fail "dpkg --verify"; fi
expect "only the packages' files were installed" \
    "$( (cd "$pgrx_out" && find . -type f; echo ".$extdir/pgmq.control"; echo ".$extdir/pgmq--$pgmq_version.sql"
        echo "./usr/share/doc/postgresql-$pg_major-quantum-flow/changelog.gz" "./usr/share/doc/postgresql-$pg_major-quantum-flow/copyright" \
            "./usr/share/doc/postgresql-$pg_major-pgmq/changelog.Debian.gz" "./usr/share/doc/postgresql-$pg_major-pgmq/copyright" | tr ' ' '\n') | sort | paste -sd' ')" \
    "$(cd "$root" && find . -path ./var -prune -o -type f -print | sort | paste -sd' ')"
# Byte for byte: the SQL and control files are what cargo pgrx package wrote; the .so is the
# built library stripped as package.sh says (so the same code, not a rebuild).
same=yes
for f in $(cd "$pgrx_out" && find . -type f ! -name '*.so'); do
    cmp -s "$pgrx_out/$f" "$root/$f" || { fail "$f differs from cargo pgrx package's"; same=no; }
done
[ "$same" = no ] || ok "SQL and control files byte for byte as cargo pgrx package wrote them"
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
    -o "$tmp/stripped.so" "$pgrx_out$pkglibdir/quantum_flow.so"
cmp -s "$tmp/stripped.so" "$root$pkglibdir/quantum_flow.so" && ok "quantum_flow.so = cargo pgrx package's, stripped" ||
    fail "quantum_flow.so is not cargo pgrx package's library stripped"
# And against what `make install` put into the system (the library the other tiers tested):
# reported, not required, since make test-package can run after a source change without install.
sys_ext="$(PG_CONFIG="$PG_CONFIG" "$PG_CONFIG" --sharedir)/extension"
if cmp -s "$root$extdir/quantum_flow--$qf_version.sql" "$sys_ext/quantum_flow--$qf_version.sql" &&
    strip --strip-unneeded --remove-section=.comment --remove-section=.note -o "$tmp/sys.so" \
        "$("$PG_CONFIG" --pkglibdir)/quantum_flow.so" 2>/dev/null && cmp -s "$tmp/sys.so" "$root$pkglibdir/quantum_flow.so"; then
    echo "note: the packaged library and install script are those make install installed (stripped)"
else
    echo "note: the installed quantum_flow (make install) differs from the package's build"
fi
if dpkg --root="$root" --force-not-root -r "postgresql-$pg_major-quantum-flow" >/dev/null 2>&1 &&
    [ ! -e "$root$pkglibdir/quantum_flow.so" ] && [ ! -e "$root$extdir/quantum_flow.control" ] &&
    [ -f "$root$extdir/pgmq.control" ]; then
    ok "removing quantum_flow removes its files and keeps pgmq's"
else fail "dpkg -r of quantum_flow"; fi
if dpkg --root="$root" --force-not-root -r "postgresql-$pg_major-pgmq" >/dev/null 2>&1 &&
    [ -z "$(cd "$root" && find . -path ./var -prune -o -type f -print)" ]; then
    ok "removing pgmq leaves no file behind"
else fail "dpkg -r of pgmq"; fi

# ---- 5. dependencies resolve against this machine's packages ------------------------------
banner "package: apt-get install --simulate"
if is_root; then
    if apt-get install --simulate -o Debug::NoLocking=1 "$pgmq_deb" "$qf_deb" >"$tmp/apt.log" 2>&1; then
        grep -q "^Inst postgresql-$pg_major-pgmq " "$tmp/apt.log" && grep -q "^Inst postgresql-$pg_major-quantum-flow " "$tmp/apt.log" &&
            ok "apt-get install --simulate ./both.deb: dependencies resolve ($(grep -c '^Inst ' "$tmp/apt.log") to install)" ||
            { cat "$tmp/apt.log"; fail "apt-get --simulate did not plan both packages"; }
    else
        cat "$tmp/apt.log"
        fail "apt-get install --simulate of both packages"
    fi
    if dpkg-query -W -f='${Status}' "postgresql-$pg_major-pgmq" 2>/dev/null | grep -q 'install ok installed'; then
        echo "note: postgresql-$pg_major-pgmq is installed here; skipping the missing-dependency check"
    elif apt-get install --simulate -o Debug::NoLocking=1 "$qf_deb" >"$tmp/apt1.log" 2>&1; then
        fail "apt-get accepted quantum_flow without the pgmq package"
    else
        grep -q "Depends: postgresql-$pg_major-pgmq (>= $pgmq_version) but it is not installable" "$tmp/apt1.log" &&
            ok "quantum_flow alone is refused: it depends on postgresql-$pg_major-pgmq" ||
            { cat "$tmp/apt1.log"; fail "apt-get refused quantum_flow alone for another reason"; }
    fi
else
    echo "skip: apt-get --simulate of local .deb files needs root"
fi

# ---- 6. the unpacked files work: a PostgreSQL 15 that sees only the packages' extension files
banner "package: a server loading the unpacked packages"
# PostgreSQL finds its share and library directories relative to its own binary (a relocatable
# installation: <prefix>/usr/lib/postgresql/15/bin -> <prefix>/usr/share/postgresql/15). A copy
# of the binaries under pgroot/ with the system's share and lib as a symlink farm - minus every
# quantum_flow and pgmq file - plus the packages' files unpacked by dpkg -x is a server whose
# only quantum_flow and pgmq are the packaged ones.
pgroot="$tmp/pgroot"
mkdir -p "$pgroot/usr/lib/postgresql/$pg_major" "$pgroot/usr/share/postgresql"
cp -a "/usr/lib/postgresql/$pg_major/bin" "$pgroot/usr/lib/postgresql/$pg_major/"
cp -rs "/usr/lib/postgresql/$pg_major/lib" "$pgroot/usr/lib/postgresql/$pg_major/"
cp -rs "/usr/share/postgresql/$pg_major" "$pgroot/usr/share/postgresql/"
find "$pgroot" \( -name 'quantum_flow*' -o -name 'pgmq*' \) -exec rm -f {} +
dpkg -x "$pgmq_deb" "$pgroot"
dpkg -x "$qf_deb" "$pgroot"
# Every quantum_flow and pgmq file the private server can see is a regular file from a package.
expect "the private server's quantum_flow and pgmq files are exactly the packages'" \
    "$( (dpkg-deb -c "$qf_deb"; dpkg-deb -c "$pgmq_deb") | awk '$1 ~ /^-/ { print $6 }' |
        grep -E '/(quantum_flow|pgmq)[^/]*$' | sed 's|^\.||' | sort | paste -sd' ')" \
    "$(cd "$pgroot" && find . \( -name 'quantum_flow*' -o -name 'pgmq*' \) -type f ! -path './usr/share/doc/*' |
        sed 's|^\.||' | sort | paste -sd' ')"
[ -z "$(find "$pgroot" \( -name 'quantum_flow*' -o -name 'pgmq*' \) -type l)" ] ||
    fail "a quantum_flow or pgmq symlink to the system's files is left in the private server's tree"
expect "the private server's library directory (relocated)" "$pgroot$pkglibdir" "$("$pg_bin/pg_config" --pkglibdir)"
expect "the private server's share directory (relocated)" "$pgroot/usr/share/postgresql/$pg_major" "$("$pg_bin/pg_config" --sharedir)"
is_root && chown -R postgres: "$tmp" && chown -R root: "$root" "$pgroot"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
runuser_ "$pg_bin/initdb" -D "$tmp/pgdata" -U postgres -A trust --no-sync >"$tmp/initdb.log" 2>&1 ||
    { cat "$tmp/initdb.log"; fail "initdb"; exit 1; }
runuser_ "$pg_bin/pg_ctl" -D "$tmp/pgdata" -l "$tmp/server.log" -w \
    -o "-p $port -k $tmp -c listen_addresses=''" start >/dev/null ||
    { cat "$tmp/server.log"; fail "the private server did not start"; exit 1; }
psql_() { "$pg_bin/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$tmp" -p "$port" -U postgres -d postgres "$@"; }
got="$(psql_ 2>&1 <<'SQL'
CREATE EXTENSION quantum_flow CASCADE;
SELECT extname || ' ' || extversion FROM pg_extension WHERE extname IN ('pgmq', 'quantum_flow') ORDER BY 1;
SELECT setting FROM pg_config WHERE name = 'PKGLIBDIR';
SELECT (quantum_flow.create_flow('pkg_check')).workflow_slug;
SELECT (quantum_flow.add_step('pkg_check', 'double')).step_slug;
SELECT quantum_flow.start_flow('pkg_check', '{"n": 21}') AS run_id \gset
SELECT step_slug || ' ' || (input -> 'run' ->> 'n') FROM quantum_flow.poll_tasks('pkg_check');
SELECT quantum_flow.complete_task(:'run_id', 'double', 0, '{"n": 42}');
SELECT quantum_flow.get_run(:'run_id') ->> 'status';
SELECT quantum_flow.get_run(:'run_id') -> 'output';
SQL
)" || true
expect "CREATE EXTENSION quantum_flow CASCADE and a workflow run on the packaged files" \
    "$(printf '%s\n' 'NOTICE:  installing required extension "pgmq"' "pgmq $pgmq_version" "quantum_flow $qf_version" "$pgroot$pkglibdir" pkg_check double 'double 21' t completed '{"double": {"n": 42}}')" \
    "$got"

banner "package: summary"
if [ "$fails" -gt 0 ]; then
    echo "package tier: $fails check(s) FAILED"
    exit 1
fi
echo "package tier: all checks passed"
