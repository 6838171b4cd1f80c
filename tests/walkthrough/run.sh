#!/usr/bin/env bash
# Executes docs/psql-walkthrough.md verbatim and fails, with a diff, when psql's output differs
# from what the document shows.
#
# Every ```sql block of the document runs, in order, in one psql session (psql -X -q, stdin
# not a terminal, so no pager) on a fresh database; the ```text block that follows it is the
# output psql must print for it (stdout and stderr together, as a terminal shows them). A sql
# block with no text block after it must print nothing. Lines are compared after trimming
# trailing whitespace, and blank lines at the end of a block are ignored.
#
# Connection: QF_TEST_DATABASE_URL (postgres://USER@HOST:PORT/DB) when set, else the PG*
# environment variables. The walkthrough runs in database $QF_WALKTHROUGH_DB (default
# qf_walkthrough), dropped and created first.
#
#   tests/walkthrough/run.sh [path/to/walkthrough.md]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
doc="${1:-$repo/docs/psql-walkthrough.md}"
db="${QF_WALKTHROUGH_DB:-qf_walkthrough}"

die() {
    echo "walkthrough: $*" >&2
    exit 1
}

command -v psql >/dev/null || die "psql is not installed"
[ -f "$doc" ] || die "no such document: $doc"
[[ "$db" =~ ^[a-z_][a-z0-9_]*$ ]] || die "QF_WALKTHROUGH_DB must be a plain lower-case name"

# psql connection arguments for the maintenance database and for the walkthrough database.
if [ -n "${QF_TEST_DATABASE_URL:-}" ]; then
    url="$QF_TEST_DATABASE_URL"
    [[ "$url" =~ ^(postgres(ql)?://[^/?]*)(/[^?]*)?(\?.*)?$ ]] ||
        die "cannot read QF_TEST_DATABASE_URL: $url"
    admin_conn=("$url")
    walk_conn=("${BASH_REMATCH[1]}/$db${BASH_REMATCH[4]}")
else
    admin_conn=(-d postgres)
    walk_conn=(-d "$db")
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Split the document into the script psql runs and the output it must print. Before each sql
# block both get the same marker line (psql prints it with \echo), so a diff names the block.
awk -v script="$work/script.sql" -v expected="$work/expected.txt" -v docname="${doc#"$repo"/}" '
    function marker(n, line) { return "---- block " n " (" docname ":" line ") ----" }
    /^```sql[[:space:]]*$/ {
        if (in_block) { print "line " NR ": a fence opens inside a block" > "/dev/stderr"; exit 2 }
        blocks++; in_block = "sql"; text_allowed = 0
        m = marker(blocks, NR)
        print "\\echo '\''" m "'\''" > script
        print m > expected
        next
    }
    /^```text[[:space:]]*$/ {
        if (in_block) { print "line " NR ": a fence opens inside a block" > "/dev/stderr"; exit 2 }
        if (!text_allowed) {
            print "line " NR ": a text block must follow a sql block directly" > "/dev/stderr"; exit 2
        }
        in_block = "text"; text_allowed = 0
        next
    }
    /^```/ {
        if (in_block == "sql") text_allowed = 1
        else if (in_block == "") text_allowed = 0
        in_block = ""
        next
    }
    in_block == "sql"  { print > script; next }
    in_block == "text" { print > expected; next }
    # Prose between a sql block and its text block is fine; another fenced block is not.
    END {
        if (in_block) { print "the document ends inside a block" > "/dev/stderr"; exit 2 }
        if (!blocks) { print "the document has no sql blocks" > "/dev/stderr"; exit 2 }
    }
' "$doc" || die "cannot read the blocks of $doc"

# Trailing whitespace and the blank lines that end a block do not count.
normalize() {
    sed -e 's/[[:space:]]*$//' "$1" | awk '
        /^---- block [0-9]+ \(.*\) ----$/ { blanks = 0; print; next }
        /^$/ { blanks++; next }
        { while (blanks > 0) { print ""; blanks-- } print }
    '
}

psql_quiet=(psql -X -q -v ON_ERROR_STOP=1)
"${psql_quiet[@]}" "${admin_conn[@]}" -c "SET client_min_messages TO warning" \
    -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null ||
    die "cannot create database $db"

# The walkthrough itself runs without ON_ERROR_STOP: it shows errors on purpose.
PAGER='' PSQL_PAGER='' psql -X -q "${walk_conn[@]}" <"$work/script.sql" >"$work/actual.raw" 2>&1 || true

normalize "$work/expected.txt" >"$work/expected.norm"
normalize "$work/actual.raw" >"$work/actual.norm"
blocks="$(grep -c '^---- block ' "$work/expected.norm")"
if ! diff -u --label "expected (${doc#"$repo"/})" --label "actual (psql)" \
    "$work/expected.norm" "$work/actual.norm"; then
    echo >&2
    die "FAILED: psql's output differs from the document (diff above, - document, + psql)"
fi

"${psql_quiet[@]}" "${admin_conn[@]}" -c "SET client_min_messages TO warning" \
    -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
echo "walkthrough: ok, $blocks sql blocks of ${doc#"$repo"/} print what the document shows"
