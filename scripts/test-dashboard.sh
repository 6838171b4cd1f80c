#!/usr/bin/env bash
# Tier: the web dashboard (dashboard/) in a real browser. Vendors its Mermaid files
# (scripts/dashboard-assets.sh), runs the crate's unit tests, builds quantum_flow_dashboard
# (release), prepares the virtualenv with Playwright's Python package
# (scripts/python-venv.sh) and runs tests/dashboard with pytest: the dashboard connected as a
# role granted only quantum_flow_client, pages opened in Debian's headless Chromium
# (/usr/bin/chromium, QF_CHROMIUM), runs driven by SQL while the pages are watched.
# Screenshots of the main pages are kept in .qf/dashboard (QF_DASHBOARD_OUT). Runs against
# the cluster of QF_TEST_DATABASE_URL, as make test / make test-dashboard export it.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"
: "${QF_TEST_DATABASE_URL:?run through make test-dashboard, or eval \"\$(scripts/cluster.sh env)\"}"

chromium="${QF_CHROMIUM:-/usr/bin/chromium}"
[ -x "$chromium" ] || {
    echo "test-dashboard: no Chromium at $chromium (Debian: chromium; scripts/setup.sh installs it)" >&2
    exit 1
}
scripts/dashboard-assets.sh
# its own unit tests (hosts, durations, escaping), then the binary the browser tests drive
cargo test --release --locked -q -p quantum_flow_dashboard
cargo build --release --locked -q -p quantum_flow_dashboard
scripts/python-venv.sh
export QF_DASHBOARD_BIN="$repo/target/release/quantum_flow_dashboard"
export QF_CHROMIUM="$chromium"
export QF_DASHBOARD_OUT="${QF_DASHBOARD_OUT:-$(qf_state_dir)/dashboard}"
rm -rf "$QF_DASHBOARD_OUT"
mkdir -p "$QF_DASHBOARD_OUT"
.qf/venv/bin/python -m pytest -q -p no:cacheprovider tests/dashboard
echo "test-dashboard: screenshots in $QF_DASHBOARD_OUT: $(cd "$QF_DASHBOARD_OUT" && ls)"
