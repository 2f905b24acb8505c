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
stamp="$pds/node_modules/.autopost-installed"
start=$(date +%s)

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "pds-setup: $tool is not installed (Node.js >= 18.7 with npm is needed)" >&2
    exit 1
  fi
done

want="$(node --version) $(sha256sum "$pds/package-lock.json" | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
    && (cd "$pds" && node -e "require('better-sqlite3')" 2>/dev/null); then
  echo "pds-setup: already installed ($want); nothing to do"
  exit 0
fi

echo "pds-setup: npm ci in $pds (node $(node --version), npm $(npm --version))"
export npm_config_nodedir="${npm_config_nodedir:-/usr}"
(cd "$pds" && npm ci --no-audit --no-fund)
(cd "$pds" && node -e "require('better-sqlite3'); require.resolve('@atproto/pds')")
echo "$want" > "$stamp"
echo "pds-setup: done in $(( $(date +%s) - start )) s"
