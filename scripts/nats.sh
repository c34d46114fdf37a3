#!/usr/bin/env bash
# NATS for the broker destination tests (cli/tests/nats.rs): Debian's nats-server (JetStream
# with -js), installed when missing. The tests start their own servers on loopback ports
# and stop them by PID; installing starts no service on a machine without systemd.
#
#   scripts/nats.sh install     install nats-server when missing; prints its path
set -euo pipefail

find_bin() {
  local b
  for b in "$(command -v nats-server || true)" /usr/sbin/nats-server /usr/bin/nats-server; do
    [ -n "$b" ] && [ -x "$b" ] && { echo "$b"; return 0; }
  done
  return 1
}

install() {
  if find_bin; then return 0; fi
  echo "nats.sh: installing nats-server" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq nats-server >&2 || { apt-get update -qq >&2 && apt-get install -y -qq nats-server >&2; }
  find_bin
}

case "${1:-}" in
  install) install ;;
  *) echo "usage: $0 install" >&2; exit 2 ;;
esac
