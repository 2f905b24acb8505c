#!/usr/bin/env bash
# Install Stoplight Prism (tests/prism, from its lock file), used by tests/test_x_prism.py
# as a contract check in front of the fake X server.
#
# Safe to run again: when node_modules already holds this lock file's install for this
# Node version, it does nothing. Installs nothing outside tests/prism.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prism="$here/tests/prism"
# shellcheck source=npm-lock-install.sh
source "$here/.ci/npm-lock-install.sh"

installed() { [[ -x "$prism/node_modules/.bin/prism" ]]; }
verify() { "$prism/node_modules/.bin/prism" --version; }

npm_lock_install prism-setup "$prism" "Node.js >= 18.20 with npm"
