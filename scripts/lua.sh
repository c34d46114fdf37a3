#!/usr/bin/env bash
# A Lua interpreter for the Argo CD health script's test (docs/argocd/health.lua): Argo CD
# runs health checks with gopher-lua (Lua 5.1 semantics); the script keeps to what 5.1 and
# 5.4 share, and the test runs it with Debian's lua5.4.
#
#   scripts/lua.sh install     install Debian's lua5.4 when no lua5.4 is on PATH
#   scripts/lua.sh path        print the interpreter's path
set -euo pipefail

find_lua() {
  command -v lua5.4 || command -v lua5.3 || return 1
}

case "${1:-}" in
  install)
    if find_lua >/dev/null; then exit 0; fi
    echo "lua.sh: installing lua5.4" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq lua5.4 >&2
    find_lua >/dev/null
    ;;
  path) find_lua ;;
  *) echo "usage: $0 install|path" >&2; exit 2 ;;
esac
