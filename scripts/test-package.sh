#!/usr/bin/env bash
# The package tier: builds the .deb files (scripts/package.sh, reusing the release build of
# `make install`) and checks their metadata, contents, reproducibility, dependencies, a dpkg
# install into a clean root, and a private PostgreSQL 15 loading the unpacked files
# (tests/package/README.md). Needs no cluster of the suite; starts its own, briefly.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/../tests/package/run.sh" "$@"
