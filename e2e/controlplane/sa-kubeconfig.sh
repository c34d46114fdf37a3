#!/usr/bin/env bash
# Write a kubeconfig that authenticates as a ServiceAccount, with a token from the
# TokenRequest API (`kubectl create token`), for running a process (the operator, a
# worker) with exactly that ServiceAccount's RBAC against the e2e control plane.
#
#   e2e/controlplane/sa-kubeconfig.sh NAMESPACE SERVICEACCOUNT OUT [DURATION]
#
# DURATION defaults to 24h. Needs a running control plane (up.sh).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

(($# >= 3)) || die "usage: ${0##*/} NAMESPACE SERVICEACCOUNT OUT [DURATION]"
ns=$1 sa=$2 out=$3 duration=${4:-24h}
[[ -f $E2E_DIR/env.sh ]] || die "no $E2E_DIR/env.sh: run up.sh first"
# shellcheck source=/dev/null
source "$E2E_DIR/env.sh"

token=$(kubectl -n "$ns" create token "$sa" --duration="$duration")
umask 077
cat >"$out" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: causeway-e2e
  cluster:
    server: $E2E_APISERVER
    certificate-authority-data: $(base64 -w0 <"$E2E_CA_FILE")
users:
- name: system:serviceaccount:$ns:$sa
  user:
    token: $token
contexts:
- name: causeway-e2e
  context:
    cluster: causeway-e2e
    user: system:serviceaccount:$ns:$sa
    namespace: $ns
current-context: causeway-e2e
EOF
log "wrote $out (ServiceAccount $ns/$sa, token valid $duration)"
