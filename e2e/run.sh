#!/usr/bin/env bash
# `make e2e`: bring the local stack up (up.sh), run the e2e suite, and stop what this
# run started. A stack that was already up (`make e2e-up`) is left running.
#
# Env: E2E_DIR, E2E_TEST_THREADS (default 3: tests run in parallel, each in its own
# namespace), E2E_KEEP_UP=1 (leave the stack up), E2E_TEST_ARGS (extra libtest args,
# e.g. a test name filter). Against a real cluster run the suite directly instead:
# E2E_EXTERNAL=1 KUBECONFIG=... cargo test -p causeway-e2e (docs/e2e.md).
set -euo pipefail
E2E_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=controlplane/lib.sh
source "$E2E_SRC/controlplane/lib.sh"

START=$(now)
was_up=0
if pid_alive kube-apiserver && pid_alive pod-runner; then was_up=1; fi
if ((was_up == 0)) && [[ ${E2E_KEEP_UP:-0} != 1 ]]; then
  trap '"$CP_DIR/down.sh"' EXIT
fi

"$E2E_SRC/up.sh"
log "stack ready after $(since "$START")s"

t=$(now)
rc=0
# shellcheck disable=SC2086
(cd "$REPO" && E2E_DIR=$E2E_DIR cargo test -p causeway-e2e -- --test-threads="${E2E_TEST_THREADS:-3}" ${E2E_TEST_ARGS:-}) || rc=$?
log "suite finished in $(since "$t")s (exit $rc); make e2e took $(since "$START")s"
exit "$rc"
