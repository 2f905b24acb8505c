# Sourced by pds-setup.sh and prism-setup.sh: `npm ci` one folder of tests/ from its lock
# file, once per lock file and Node version.
#
# npm_lock_install NAME DIR NEED: NAME prefixes every line printed, DIR holds the
# package-lock.json, NEED says which Node.js is needed. The caller defines two functions:
#   installed  true when DIR/node_modules is usable as it is
#   verify     run after `npm ci`; fails when the install is not usable
# A stamp in DIR/node_modules records what was installed, so running again does nothing.

npm_lock_install() {
  local name=$1 dir=$2 need=$3
  local stamp="$dir/node_modules/.autopost-installed"
  local start want tool
  start=$(date +%s)

  for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      echo "$name: $tool is not installed ($need is needed)" >&2
      exit 1
    fi
  done

  want="$(node --version) $(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && installed; then
    echo "$name: already installed ($want); nothing to do"
    return 0
  fi

  echo "$name: npm ci in $dir (node $(node --version), npm $(npm --version))"
  (cd "$dir" && npm ci --no-audit --no-fund)
  verify
  echo "$want" > "$stamp"
  echo "$name: done in $(( $(date +%s) - start )) s"
}
