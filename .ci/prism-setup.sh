#!/usr/bin/env bash
# Install Stoplight Prism (tests/prism, from its lock file), used by tests/test_x_prism.py
# as a contract check in front of the fake X server.
#
# Safe to run again: when node_modules already holds this lock file's install for this
# Node version, it does nothing. Installs nothing outside tests/prism.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prism="$here/tests/prism"
stamp="$prism/node_modules/.autopost-installed"
start=$(date +%s)

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "prism-setup: $tool is not installed (Node.js >= 18.20 with npm is needed)" >&2
    exit 1
  fi
done

want="$(node --version) $(sha256sum "$prism/package-lock.json" | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$prism/node_modules/.bin/prism" ]]; then
  echo "prism-setup: already installed ($want); nothing to do"
  exit 0
fi

echo "prism-setup: npm ci in $prism (node $(node --version), npm $(npm --version))"
(cd "$prism" && npm ci --no-audit --no-fund)
"$prism/node_modules/.bin/prism" --version
echo "$want" > "$stamp"
echo "prism-setup: done in $(( $(date +%s) - start )) s"
