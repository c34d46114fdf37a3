#!/usr/bin/env bash
# `make e2e`: bring the local stack up (up.sh), run the e2e suite, and stop what this
# run started. A stack that was already up (`make e2e-up`) is left running.
#
# Env: E2E_IMAGE (with KUBECONFIG and E2E_SINK_HOST: a real cluster instead, below),
#      E2E_DIR, E2E_TEST_THREADS (default 3: tests run in parallel, each in its own
# namespace), E2E_KEEP_UP=1 (leave the stack up), E2E_TEST_ARGS (extra libtest args,
# e.g. a test name filter). Against a real cluster:
# KUBECONFIG=... E2E_IMAGE=registry/causeway:tag E2E_SINK_HOST=... make e2e (docs/e2e.md).
set -euo pipefail
E2E_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=controlplane/lib.sh
source "$E2E_SRC/controlplane/lib.sh"

START=$(now)

# A real cluster: KUBECONFIG names it, E2E_IMAGE the image (built from the Containerfile
# or the Dockerfile and pushed where the cluster pulls from). The chart is installed
# with that image and the suite runs against it (docs/e2e.md, "Against a real cluster").
if [[ -n ${E2E_IMAGE:-} ]]; then
  [[ -n ${KUBECONFIG:-} ]] || die "E2E_IMAGE=$E2E_IMAGE needs KUBECONFIG naming the cluster"
  [[ -n ${E2E_SINK_HOST:-} ]] || die "E2E_IMAGE needs E2E_SINK_HOST: an address of this machine the cluster's pods reach"
  [[ $E2E_IMAGE == *:* && ${E2E_IMAGE##*:} != */* ]] || die "E2E_IMAGE must be REPOSITORY:TAG, got $E2E_IMAGE"
  "$CP_DIR/build.sh" >/dev/null
  kubectl() { "$(bin_path kubectl)" "$@"; }
  kubectl apply --server-side --force-conflicts --field-manager=helm -f "$REPO/charts/causeway/crds/" >/dev/null
  "$(bin_path helm)" upgrade --install "${E2E_RELEASE:-causeway}" "$REPO/charts/causeway" \
    --namespace "${E2E_RELEASE_NAMESPACE:-causeway-system}" --create-namespace \
    --set-string "image.repository=${E2E_IMAGE%:*}" --set-string "image.tag=${E2E_IMAGE##*:}" \
    --set-string worker.poolRouting=service --wait --timeout 5m
  log "chart installed with $E2E_IMAGE on $(kubectl config current-context)"
  rc=0
  # shellcheck disable=SC2086
  (cd "$REPO" && E2E_EXTERNAL=1 cargo test -p causeway-e2e -- --test-threads="${E2E_TEST_THREADS:-3}" ${E2E_TEST_ARGS:-}) || rc=$?
  log "suite finished against $KUBECONFIG (exit $rc) in $(since "$START")s"
  exit "$rc"
fi

was_up=0
if pid_alive kube-apiserver && pid_alive kubelet; then was_up=1; fi
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
