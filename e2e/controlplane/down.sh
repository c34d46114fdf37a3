#!/usr/bin/env bash
# Stop the control plane started by up.sh: exactly the pids recorded in
# $E2E_DIR/pids (SIGTERM, then SIGKILL after E2E_STOP_GRACE seconds, default 10),
# and remove the pid files. Processes that later e2e steps recorded there with
# lib.sh's proc_start are stopped first. Never looks processes up by name.
# Data, logs and certificates stay in $E2E_DIR for inspection; up.sh starts afresh.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if ! compgen -G "$E2E_DIR/pids/*.pid" >/dev/null; then
  log "nothing recorded in $E2E_DIR/pids: nothing to stop"
  exit 0
fi
stop_all
log "stopped (run dir kept: $E2E_DIR)"
