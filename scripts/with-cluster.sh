#!/usr/bin/env bash
# Runs a command with the throwaway cluster up and its PG* variables (and
# QF_TEST_DATABASE_URL) exported, then stops the cluster whatever the command did (failure,
# Ctrl-C) - unless the cluster was already running before, which is then left running.
#
#   scripts/with-cluster.sh scripts/demo.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ $# -gt 0 ] || { echo "usage: $0 command [args...]" >&2; exit 2; }

cluster="$repo/scripts/cluster.sh"
if "$cluster" status >/dev/null 2>&1; then
    echo "with-cluster: the cluster was already running; leaving it running afterwards"
else
    trap '"$cluster" stop || true' EXIT
fi
trap 'exit 130' INT
trap 'exit 143' TERM
"$cluster" start
eval "$("$cluster" env)"
"$@"
