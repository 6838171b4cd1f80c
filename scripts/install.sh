#!/usr/bin/env bash
# Builds quantum_flow and installs it into the PostgreSQL that $PG_CONFIG belongs to
# (default /usr/lib/postgresql/15/bin/pg_config). The build runs as the invoking user; when
# PostgreSQL's directories are not writable (not root), cargo-pgrx copies the files with
# sudo (its --sudo flag). pgmq's files are installed by scripts/setup.sh.
#   QF_PROFILE=release (default) | debug
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"
flags=(--pg-config "$PG_CONFIG")
if [ "${QF_PROFILE:-release}" = release ]; then flags+=(--release); fi
if [ ! -w "$("$PG_CONFIG" --pkglibdir)" ] || [ ! -w "$("$PG_CONFIG" --sharedir)/extension" ]; then
    flags+=(--sudo)
fi
cargo pgrx install "${flags[@]}"
echo "installed quantum_flow into $("$PG_CONFIG" --pkglibdir)"
