#!/usr/bin/env bash
# Stop the control plane started by up.sh: exactly the pids recorded in
# $E2E_DIR/pids (SIGTERM, then SIGKILL after E2E_STOP_GRACE seconds, default 10),
# and remove the pid files. Processes that later e2e steps recorded there with
# lib.sh's proc_start are stopped first (a real node is torn down by node/down.sh: its
# containers, mounts, iptables rules and cgroups, then node/net.sh down its network); the
# PostgreSQL of up.sh last, by the PID in its data directory. Never looks processes up by name.
# Data, logs and certificates stay in $E2E_DIR for inspection; up.sh starts afresh.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if compgen -G "$E2E_DIR/pids/*.pid" >/dev/null; then
  stop_all
  log "stopped (run dir kept: $E2E_DIR)"
else
  log "nothing recorded in $E2E_DIR/pids: nothing to stop"
fi
# The e2e node's network (bridge, routes, containment chain), once nothing uses it.
"$CP_DIR/../node/net.sh" down
# The throwaway PostgreSQL of e2e/up.sh, after the workers that use it: by its PID, once
# that PID is seen to be the server of this directory (not a recycled one).
pg_pid_file=$E2E_DIR/postgres/data/postmaster.pid
if [[ -s $pg_pid_file ]]; then
  pg_pid=$(head -1 "$pg_pid_file")
  if [[ $pg_pid =~ ^[0-9]+$ && -r /proc/$pg_pid/cmdline ]] &&
    tr '\0' ' ' <"/proc/$pg_pid/cmdline" | grep -qF -- "$E2E_DIR/postgres"; then
    "$REPO/scripts/postgres.sh" stop "$E2E_DIR/postgres"
    log "stopped postgres (pid $pg_pid)"
  fi
fi
