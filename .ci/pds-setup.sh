#!/usr/bin/env bash
# Install the Bluesky reference PDS used by tests/e2e (tests/pds, from its lock file).
#
# Safe to run again: when node_modules already holds this lock file's install for this
# Node version, it does nothing. Installs nothing outside tests/pds. better-sqlite3 has
# no prebuilt binary offline and compiles from source (about 70 s on 2 cores); node-gyp
# takes the Node headers from /usr (npm_config_nodedir) instead of downloading them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pds="$here/tests/pds"
# shellcheck source=npm-lock-install.sh
source "$here/.ci/npm-lock-install.sh"

installed() { (cd "$pds" && node -e "require('better-sqlite3')" 2>/dev/null); }
verify() { (cd "$pds" && node -e "require('better-sqlite3'); require.resolve('@atproto/pds')"); }

export npm_config_nodedir="${npm_config_nodedir:-/usr}"
npm_lock_install pds-setup "$pds" "Node.js >= 18.7 with npm"
