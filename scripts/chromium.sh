#!/usr/bin/env bash
# A headless browser for the console's browser test: Debian's chromium and chromium-driver,
# installed when missing, and axe-core (the accessibility checker) from npm into a cache
# directory at test time, so no third-party code lives in the repository.
#
#   scripts/chromium.sh install     install chromium and chromium-driver when missing;
#                                   prints the paths of chromium and chromedriver
#   scripts/chromium.sh axe         install axe-core into $CAUSEWAY_CACHE/axe when missing;
#                                   prints the path of axe.min.js
set -euo pipefail

CACHE=${CAUSEWAY_CACHE:-$HOME/.cache/causeway}

find_bins() {
  local browser driver
  browser=$(command -v chromium || true)
  driver=$(command -v chromedriver || true)
  [ -n "$browser" ] && [ -n "$driver" ] || return 1
  printf '%s\n%s\n' "$browser" "$driver"
}

install() {
  if find_bins; then return 0; fi
  echo "chromium.sh: installing chromium and chromium-driver" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2
  find_bins
}

axe() {
  local dir=$CACHE/axe
  local js=$dir/node_modules/axe-core/axe.min.js
  if [ ! -f "$js" ]; then
    echo "chromium.sh: installing axe-core into $dir" >&2
    mkdir -p "$dir"
    npm install --silent --no-audit --no-fund --prefix "$dir" axe-core@4 >&2
  fi
  [ -f "$js" ] && echo "$js"
}

case "${1:-}" in
  install) install ;;
  axe) axe ;;
  *) echo "usage: $0 install|axe" >&2; exit 2 ;;
esac
