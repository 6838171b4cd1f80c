#!/usr/bin/env bash
# The dashboard's front-end files, vendored from npm: `npm ci` in dashboard/assets (Mermaid,
# pinned by package-lock.json) when node_modules is missing or the lock file changed; about a
# second when all is there. The dashboard serves them from there (--assets); nothing is
# fetched at run time. Needs node and npm (the machine's Node.js).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
command -v npm >/dev/null 2>&1 || {
    echo "dashboard-assets: npm is not installed (it comes with Node.js)" >&2
    exit 1
}
qf_npm_ci "$repo/dashboard/assets"
[ -f "$repo/dashboard/assets/node_modules/mermaid/dist/mermaid.min.js" ] || {
    echo "dashboard-assets: npm ci did not install mermaid/dist/mermaid.min.js" >&2
    exit 1
}
