#!/usr/bin/env bash
# make package: Debian packages of quantum_flow and of pgmq, for the PostgreSQL of $PG_CONFIG
# (default the system PostgreSQL 15, Debian's layout), in target/package/:
#
#   postgresql-15-quantum-flow_<Cargo.toml version>_<dpkg --print-architecture>.deb
#       quantum_flow.so, quantum_flow.control, quantum_flow--<version>.sql and the upgrade
#       scripts (sql/quantum_flow--*--*.sql) as `cargo pgrx package` (release build, the same
#       target/release that `make install` builds: incremental) wrote them; the SQL and
#       control files byte for byte, the .so stripped of its symbol table (as dh_strip does;
#       `strip --strip-unneeded` of the built library, byte for byte).
#       Depends: postgresql-15, postgresql-15-pgmq (>= <pgmq version>), and the shared
#       libraries the .so links (dpkg-shlibdeps).
#   postgresql-15-pgmq_<pgmq version>-0qf1_all.deb
#       pgmq.control and pgmq--<version>.sql, the files scripts/setup.sh installs, from the
#       pgmq crate cargo fetched for tools/pgmq-files. SQL only: Architecture all.
#
# pgmq is a package of its own, not files inside quantum_flow's: it is another project with
# its own version and licence, its databases can exist without quantum_flow (removing
# quantum_flow must not remove the extension files pgmq's databases need), and other
# packagings of pgmq for Debian use the same name and paths, postgresql-15-pgmq, so the
# dependency is met by whichever is installed, a newer one replaces ours as an ordinary upgrade
# (revision 0qf1 sorts before any -1), and no two packages ever own the same file.
# Install both with one command:  apt install ./target/package/*.deb
#
# Files are root-owned (dpkg-deb --root-owner-group), directories 0755, files 0644 (the .so
# too, as Debian's own PostgreSQL modules). Timestamps are SOURCE_DATE_EPOCH (default: the
# commit time of HEAD), so the same tree gives the same .deb files byte for byte.
#
# Environment: PG_CONFIG; QF_DEB_MAINTAINER ("Name <email>"; default "$DEBFULLNAME <$DEBEMAIL>"
# when both are set, else the author of the HEAD commit); SOURCE_DATE_EPOCH.
# Verified by tests/package/run.sh.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

say() { echo "package: $*"; }
die() {
    echo "package: error: $*" >&2
    exit 1
}

for tool in dpkg-deb dpkg-shlibdeps strip cargo python3 gzip md5sum; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "$tool is not installed (dpkg-deb, dpkg-shlibdeps and strip: apt-get install dpkg-dev binutils)"
done
[ -x "$PG_CONFIG" ] || die "PG_CONFIG=$PG_CONFIG is not an executable pg_config"
pg_major="$("$PG_CONFIG" --version | sed -n 's/^PostgreSQL \([0-9][0-9]*\).*/\1/p')"
[ -n "$pg_major" ] || die "cannot read the major version from $("$PG_CONFIG" --version)"
pkglibdir="$("$PG_CONFIG" --pkglibdir)"
sharedir="$("$PG_CONFIG" --sharedir)"
extdir="$sharedir/extension"
# A package installs into Debian's PostgreSQL layout; another installation's paths (a
# relocated copy, a pip wheel) would put the files where no Debian PostgreSQL looks.
[ "$pkglibdir" = "/usr/lib/postgresql/$pg_major/lib" ] && [ "$sharedir" = "/usr/share/postgresql/$pg_major" ] ||
    die "$PG_CONFIG is not Debian's PostgreSQL layout (pkglibdir $pkglibdir, sharedir $sharedir)"

# Versions, and where cargo keeps the pgmq crate, from cargo metadata.
metadata="$(cargo metadata --format-version 1 --manifest-path "$repo/Cargo.toml")" ||
    die "cargo metadata failed (see above)"
IFS=$'\t' read -r qf_version pgmq_crate_dir pgmq_crate_version pgmq_homepage < <(python3 -c '
import json, os, sys
m = json.load(sys.stdin)
qf = next(p for p in m["packages"] if p["name"] == "quantum_flow")
pgmq = next((p for p in m["packages"] if p["name"] == "pgmq"), None)
if pgmq is None:
    print(qf["version"], "", "", "", sep="\t")
else:
    print(qf["version"], os.path.dirname(pgmq["manifest_path"]), pgmq["version"],
          pgmq.get("homepage") or pgmq.get("repository") or "", sep="\t")
' <<<"$metadata")
[ -n "$qf_version" ] || die "no quantum_flow version in cargo metadata"
pgmq_dir="$pgmq_crate_dir/src/install/embedded"
[ -n "$pgmq_crate_dir" ] && [ -f "$pgmq_dir/pgmq.control" ] && [ -f "$pgmq_dir/sql/pgmq.sql" ] ||
    die "the pgmq crate's embedded extension files were not found (is tools/pgmq-files a workspace member?)"
pgmq_version="$(sed -n "s/^default_version *= *'\(.*\)'.*/\1/p" "$pgmq_dir/pgmq.control")"
[ -n "$pgmq_version" ] || die "no default_version in $pgmq_dir/pgmq.control"

arch="$(dpkg --print-architecture)"
qf_pkg="postgresql-$pg_major-quantum-flow"
pgmq_pkg="postgresql-$pg_major-pgmq"
pgmq_deb_version="$pgmq_version-0qf1"
if [ -n "${QF_DEB_MAINTAINER:-}" ]; then
    maintainer="$QF_DEB_MAINTAINER"
elif [ -n "${DEBFULLNAME:-}" ] && [ -n "${DEBEMAIL:-}" ]; then
    maintainer="$DEBFULLNAME <$DEBEMAIL>"
else
    maintainer="$(git -C "$repo" log -1 --format='%an <%ae>' 2>/dev/null || true)"
fi
maintainer_re='^[^<>]+ <[^<> ]+@[^<> ]+>$'
[[ "$maintainer" =~ $maintainer_re ]] ||
    die "maintainer '$maintainer' is not 'Name <email>' (set QF_DEB_MAINTAINER)"
# Not exported: cargo must build in the environment `make install` builds in. The cc crate
# (under pgrx-pg-sys) reruns on a change of SOURCE_DATE_EPOCH, so a cargo run that sees a
# different one rebuilds pgrx and quantum_flow from scratch (100 s here instead of 2 s).
# Only dpkg-deb gets it (its tar and ar timestamps).
source_date_epoch="${SOURCE_DATE_EPOCH:-}"
if [ -z "$source_date_epoch" ]; then
    source_date_epoch="$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)"
fi
deb_date="$(LC_ALL=C date -u -R -d "@$source_date_epoch")"
first_year="$(git -C "$repo" log --reverse --format=%cd --date=format:%Y 2>/dev/null | head -n 1 || true)"
last_year="$(date -u -d "@$source_date_epoch" +%Y)"
copyright_years="${first_year:-$last_year}"
[ "$copyright_years" = "$last_year" ] || copyright_years="$copyright_years-$last_year"

out="$repo/target/package"
build="$out/build"
pgrx_out="$repo/target/release/quantum_flow-pg$pg_major"
qf_deb="$out/${qf_pkg}_${qf_version}_${arch}.deb"
pgmq_deb="$out/${pgmq_pkg}_${pgmq_deb_version}_all.deb"

# ---------------------------------------------------------------------------------------------
# 1. cargo pgrx package: the release build (incremental after `make install`) and its files
# ---------------------------------------------------------------------------------------------
mkdir -p "$out"
rm -rf "$pgrx_out" # no stale file from an earlier version (a renamed upgrade script)
say "cargo pgrx package --pg-config $PG_CONFIG (release; log: $out/cargo-pgrx-package.log)"
t0=$SECONDS
if ! env -u RUST_BACKTRACE cargo pgrx package --pg-config "$PG_CONFIG" --out-dir "$pgrx_out" \
    >"$out/cargo-pgrx-package.log" 2>&1; then
    tail -n 40 "$out/cargo-pgrx-package.log" >&2
    die "cargo pgrx package failed (log: $out/cargo-pgrx-package.log)"
fi
say "built in $((SECONDS - t0))s: $pgrx_out"
# Everything it wrote must be under the library and extension directories.
unexpected="$(cd "$pgrx_out" && find . -type f ! -path ".$pkglibdir/*" ! -path ".$extdir/*")"
[ -z "$unexpected" ] || die "cargo pgrx package wrote files outside $pkglibdir and $extdir: $unexpected"
for f in "$pkglibdir/quantum_flow.so" "$extdir/quantum_flow.control" "$extdir/quantum_flow--$qf_version.sql"; do
    [ -f "$pgrx_out$f" ] || die "cargo pgrx package did not produce $f"
done
for f in sql/quantum_flow--*--*.sql; do
    [ -e "$f" ] || continue
    cmp -s "$f" "$pgrx_out$extdir/$(basename "$f")" ||
        die "cargo pgrx package's $(basename "$f") is not the repository's $f"
done

# ---------------------------------------------------------------------------------------------
# 2. The package trees, debian/<package>/ as debhelper lays them out (dpkg-shlibdeps wants it)
# ---------------------------------------------------------------------------------------------
rm -rf "$build"
mkdir -p "$build/debian"
qf_root="$build/debian/$qf_pkg"
pgmq_root="$build/debian/$pgmq_pkg"
install -d -m 755 "$qf_root/DEBIAN" "$qf_root$pkglibdir" "$qf_root$extdir" "$qf_root/usr/share/doc/$qf_pkg" \
    "$pgmq_root/DEBIAN" "$pgmq_root$extdir" "$pgmq_root/usr/share/doc/$pgmq_pkg"

# The library is stripped as dh_strip does (its symbol table only: it has no debug sections
# in the release profile; the dynamic symbols PostgreSQL looks up stay); the rest is copied.
(cd "$pgrx_out$pkglibdir" && find . -type f) | while read -r f; do
    case "$f" in
    *.so) strip --strip-unneeded --remove-section=.comment --remove-section=.note \
        -o "$qf_root$pkglibdir/$f" "$pgrx_out$pkglibdir/$f" && chmod 644 "$qf_root$pkglibdir/$f" ;;
    *) install -m 644 "$pgrx_out$pkglibdir/$f" "$qf_root$pkglibdir/$f" ;;
    esac
done
(cd "$pgrx_out$extdir" && find . -type f) | while read -r f; do
    install -m 644 "$pgrx_out$extdir/$f" "$qf_root$extdir/$f"
done
install -m 644 "$pgmq_dir/pgmq.control" "$pgmq_root$extdir/pgmq.control"
install -m 644 "$pgmq_dir/sql/pgmq.sql" "$pgmq_root$extdir/pgmq--$pgmq_version.sql"

# /usr/share/doc/<package>: copyright (machine-readable format) and a Debian changelog
cat >"$qf_root/usr/share/doc/$qf_pkg/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: quantum_flow
Comment: Built from the quantum_flow $qf_version source tree by scripts/package.sh. The
 extension requires pgmq, packaged as $pgmq_pkg.

Files: *
Copyright: $copyright_years the quantum_flow authors
License: Apache-2.0
 Licensed under the Apache License, Version 2.0 (the "License"); you may not
 use this file except in compliance with the License.
 .
 Unless required by applicable law or agreed to in writing, software
 distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
 WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
 License for the specific language governing permissions and limitations
 under the License.
 .
 On Debian systems, the complete text of the Apache License, Version 2.0 can
 be found in "/usr/share/common-licenses/Apache-2.0".
EOF
{
    cat <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: pgmq
Upstream-Contact: PGMQ Maintainers
Source: ${pgmq_homepage:-the pgmq crate}
Comment: pgmq $pgmq_version's extension files (src/install/embedded/pgmq.control and
 sql/pgmq.sql, installed as pgmq--$pgmq_version.sql) from the pgmq crate $pgmq_crate_version.

Files: *
Copyright: $(sed -n 's/^Copyright (c) *//p' "$pgmq_crate_dir/LICENSE" | head -n 1)
License: PostgreSQL
EOF
    # the licence text, DEP-5 style: one leading space, empty lines as " ."
    sed -e '1{/^The PostgreSQL License$/d}' -e '/^Copyright (c)/d' "$pgmq_crate_dir/LICENSE" |
        sed -e '/./,$!d' | fold -s -w 78 | sed -e 's/ *$//' -e 's/^$/./' -e 's/^/ /'
} >"$pgmq_root/usr/share/doc/$pgmq_pkg/copyright"
printf '%s (%s) unstable; urgency=medium\n\n  * quantum_flow %s, built by scripts/package.sh (see CHANGELOG.md in its\n    source tree).\n\n -- %s  %s\n' \
    "$qf_pkg" "$qf_version" "$qf_version" "$maintainer" "$deb_date" |
    gzip -9n >"$qf_root/usr/share/doc/$qf_pkg/changelog.gz"
printf '%s (%s) unstable; urgency=medium\n\n  * pgmq %s from the pgmq crate %s, packaged for quantum_flow.\n\n -- %s  %s\n' \
    "$pgmq_pkg" "$pgmq_deb_version" "$pgmq_version" "$pgmq_crate_version" "$maintainer" "$deb_date" |
    gzip -9n >"$pgmq_root/usr/share/doc/$pgmq_pkg/changelog.Debian.gz"
chmod 644 "$qf_root/usr/share/doc/$qf_pkg"/* "$pgmq_root/usr/share/doc/$pgmq_pkg"/*

# Shared library dependencies of the .so (dpkg-shlibdeps reads debian/control's existence)
printf 'Source: quantum-flow\n\nPackage: %s\nArchitecture: any\n' "$qf_pkg" >"$build/debian/control"
shlibs="$(cd "$build" && dpkg-shlibdeps -O -e"debian/$qf_pkg$pkglibdir/quantum_flow.so")" ||
    die "dpkg-shlibdeps failed on quantum_flow.so"
shlibs="${shlibs#shlibs:Depends=}"
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no shared library dependency for quantum_flow.so"

# Installed-Size as dpkg-gencontrol computes it: 1 KiB units per file rounded up, 1 per directory
installed_size() {
    (cd "$1" && find . -mindepth 1 -path ./DEBIAN -prune -o -printf '%y %s\n') |
        awk '$1 == "f" || $1 == "l" { n += int(($2 + 1023) / 1024); next } { n += 1 } END { print n }'
}
# md5sums of every file, as dh_md5sums writes them (dpkg --verify reads them)
md5sums() {
    (cd "$1" && find usr -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum) >"$1/DEBIAN/md5sums"
    chmod 644 "$1/DEBIAN/md5sums"
}

md5sums "$qf_root"
cat >"$qf_root/DEBIAN/control" <<EOF
Package: $qf_pkg
Version: $qf_version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $(installed_size "$qf_root")
Depends: postgresql-$pg_major, $pgmq_pkg (>= $pgmq_version), $shlibs
Section: database
Priority: optional
Description: durable DAG workflow engine inside PostgreSQL $pg_major, on pgmq
 quantum_flow is a PostgreSQL extension (CREATE EXTENSION quantum_flow CASCADE)
 that defines workflows as directed acyclic graphs of steps, runs them durably
 with retries, timeouts, map steps and flow control, and hands tasks to workers
 through pgmq queues (poll_tasks, complete_task, fail_task).
 .
 This package holds the extension's library, control file, install script and
 upgrade scripts for PostgreSQL $pg_major.
EOF

md5sums "$pgmq_root"
cat >"$pgmq_root/DEBIAN/control" <<EOF
Package: $pgmq_pkg
Version: $pgmq_deb_version
Architecture: all
Maintainer: $maintainer
Installed-Size: $(installed_size "$pgmq_root")
Depends: postgresql-$pg_major
Section: database
Priority: optional
${pgmq_homepage:+Homepage: $pgmq_homepage
}Description: lightweight message queue for PostgreSQL $pg_major (pgmq extension)
 pgmq is a message queue inside PostgreSQL, like AWS SQS, as an SQL-only
 extension (CREATE EXTENSION pgmq).
 .
 This package holds pgmq $pgmq_version's control file and install script, from the
 pgmq crate $pgmq_crate_version, packaged for quantum_flow, which requires it.
EOF

# Reproducible: every entry gets the same timestamp
find "$build/debian/$qf_pkg" "$build/debian/$pgmq_pkg" -exec touch -h -d "@$source_date_epoch" {} +

# ---------------------------------------------------------------------------------------------
# 3. dpkg-deb --build
# ---------------------------------------------------------------------------------------------
rm -f "$out"/*.deb
SOURCE_DATE_EPOCH="$source_date_epoch" dpkg-deb --root-owner-group -Zxz --build "$qf_root" "$qf_deb" >/dev/null
SOURCE_DATE_EPOCH="$source_date_epoch" dpkg-deb --root-owner-group -Zxz --build "$pgmq_root" "$pgmq_deb" >/dev/null
say "built $(realpath --relative-to="$repo" "$qf_deb") ($(stat -c %s "$qf_deb") bytes)"
say "built $(realpath --relative-to="$repo" "$pgmq_deb") ($(stat -c %s "$pgmq_deb") bytes)"
say "install both with: apt install ./$(realpath --relative-to="$repo" "$pgmq_deb") ./$(realpath --relative-to="$repo" "$qf_deb")"
