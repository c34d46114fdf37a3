#!/usr/bin/env bash
# `make e2e-up`: the whole local e2e stack on loopback.
#
#   1. controlplane/build.sh   pinned kube-apiserver, kube-controller-manager, kubectl,
#                              etcd, helm under ~/.cache/causeway (seconds once cached)
#   2. controlplane/up.sh      etcd + kube-apiserver + kube-controller-manager
#   3. cargo build             causeway, causeway-operator, pod-runner (debug)
#   4. pod-runner              plays the kubelet (test infrastructure; docs/e2e.md)
#   5. helm upgrade --install  charts/causeway into causeway-system, with
#                              e2e/values-local.yaml; the operator's pod is run by the
#                              pod runner with the chart's ServiceAccount token
#   6. wait                    until the operator's pod is Ready
#   7. postgres                scripts/postgres.sh: a throwaway PostgreSQL on a loopback
#                              port for `storage: postgres` pools; its URL (password
#                              inside) is kept in $E2E_DIR/postgres/url, never printed
#
# Idempotent: what is already up stays up. The pod runner is restarted when its binary
# changed; the operator's pod rolls when the operator binary changed.
# Stop everything with e2e/controlplane/down.sh (`make e2e-down`).
#
# Env: E2E_DIR (default <repo>/.e2e), CARGO_TARGET_DIR, E2E_OPERATOR_TIMEOUT (s, 240),
#      E2E_POD_RANGE (default 127.<hash of E2E_DIR>.0.0/16), E2E_SKIP_BUILD=1,
#      E2E_POSTGRES_PORT (default 20000 + hash of E2E_DIR % 10000), E2E_POSTGRES=0 (none).
set -euo pipefail
E2E_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=controlplane/lib.sh
source "$E2E_SRC/controlplane/lib.sh"

START=$(now)
RELEASE=causeway
RELEASE_NS=causeway-system
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
BIN=$TARGET/debug
OPERATOR_TIMEOUT=${E2E_OPERATOR_TIMEOUT:-240}
# A /16 of loopback per run directory, so two stacks on one machine never share addresses.
hash=$(printf '%s' "$E2E_DIR" | cksum | cut -d' ' -f1)
POD_RANGE=${E2E_POD_RANGE:-127.$((1 + hash % 250)).0.0/16}

"$CP_DIR/build.sh"
cp_was_up=0
if pid_alive kube-apiserver; then cp_was_up=1; fi
"$CP_DIR/up.sh"
# A fresh control plane (new etcd; up.sh stopped whatever ran) knows none of the old
# pods and claims: drop their directories.
if ((cp_was_up == 0)) && [[ ${E2E_KEEP_DATA:-0} != 1 ]]; then
  rm -rf "$E2E_DIR/pods" "$E2E_DIR/volumes"
fi
# shellcheck source=/dev/null
source "$E2E_DIR/env.sh"

if [[ ${E2E_SKIP_BUILD:-0} != 1 ]]; then
  t=$(now)
  (cd "$REPO" && cargo build --bin causeway --bin causeway-operator --bin pod-runner)
  log "binaries built in $(since "$t")s"
fi
for b in causeway causeway-operator pod-runner; do
  [[ -x $BIN/$b ]] || die "$BIN/$b missing (cargo build failed?)"
done

# ---- pod runner ------------------------------------------------------------------
runner_current() {
  pid_alive pod-runner && [[ $(pid_file pod-runner) -nt $BIN/pod-runner ]]
}
if runner_current; then
  log "pod runner already running (pid $(<"$(pid_file pod-runner)"))"
else
  proc_stop pod-runner
  proc_start pod-runner "$BIN/pod-runner" --run-dir "$E2E_DIR" --bin-dir "$BIN" \
    --kubeconfig "$KUBECONFIG" --pod-range "$POD_RANGE" --node-name causeway-e2e
  wait_for "node causeway-e2e Ready" 60 pod-runner \
    bash -c '[[ $(kubectl get node causeway-e2e -o jsonpath="{.status.conditions[?(@.type==\"Ready\")].status}") == True ]]'
  log "pod runner up (pods on $POD_RANGE, logs under $E2E_DIR/pods)"
fi

# ---- the chart -------------------------------------------------------------------
# Helm installs the chart's crds/ on first install and never upgrades them, so a stack
# that outlives a CRD change would test stale CRDs: apply them first, as users must when
# they upgrade (docs/e2e.md). On a fresh stack this is what `helm install` would do.
kubectl apply --server-side --force-conflicts --field-manager=helm -f "$REPO/charts/causeway/crds/" >/dev/null
kubectl wait --for=condition=Established --timeout=60s -f "$REPO/charts/causeway/crds/" >/dev/null
# The pod template carries the operator binary's identity, so a rebuilt operator rolls.
build_id=$(stat -c '%s-%Y' "$BIN/causeway-operator")
t=$(now)
helm upgrade --install "$RELEASE" "$REPO/charts/causeway" \
  --namespace "$RELEASE_NS" --create-namespace \
  -f "$E2E_SRC/values-local.yaml" \
  --set-string "podAnnotations.causeway\.dev/e2e-build=$build_id" >/dev/null
log "helm upgrade --install $RELEASE done in $(since "$t")s"

t=$(now)
if ! kubectl -n "$RELEASE_NS" rollout status "deploy/$RELEASE-operator" --timeout="${OPERATOR_TIMEOUT}s" >&2; then
  log "the operator did not become Ready within ${OPERATOR_TIMEOUT}s"
  kubectl -n "$RELEASE_NS" get pods -o wide >&2 || true
  for f in "$E2E_DIR"/pods/"$RELEASE_NS"_*/operator.log; do
    [[ -e $f ]] || continue
    log "last lines of $f:"
    tail -n 40 "$f" >&2
  done
  exit 1
fi
log "operator Ready after $(since "$t")s"

# ---- a throwaway PostgreSQL --------------------------------------------------------
# For the postgres scenario (e2e/tests/e2e/postgres.rs): pods are local processes, so the
# workers reach it on loopback. Kept while it runs; a stale directory (stopped server) is
# started afresh. down.sh stops it by its PID. A server that cannot start does not stop
# the stack: the postgres scenario then fails and names the log.
PG_DIR=$E2E_DIR/postgres
PG_PORT=${E2E_POSTGRES_PORT:-$((20000 + hash % 10000))}
postgres_alive() {
  local pid
  [[ -s $PG_DIR/data/postmaster.pid && -s $PG_DIR/url ]] || return 1
  pid=$(head -1 "$PG_DIR/data/postmaster.pid")
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$PG_DIR"
}
if [[ ${E2E_POSTGRES:-1} == 1 ]]; then
  if postgres_alive; then
    log "postgres already running (pid $(head -1 "$PG_DIR/data/postmaster.pid"))"
  else
    rm -rf "$PG_DIR"
    mkdir -p "$E2E_DIR/logs"
    t=$(now)
    # stdout is the URL, with its password: into the directory only, never the console.
    if "$REPO/scripts/postgres.sh" start "$PG_DIR" "$PG_PORT" >/dev/null 2>"$E2E_DIR/logs/postgres.log"; then
      log "postgres up on 127.0.0.1:$PG_PORT in $(since "$t")s (URL in $PG_DIR/url)"
    else
      log "warning: postgres did not start (see $E2E_DIR/logs/postgres.log); the postgres scenario will fail"
    fi
  fi
fi
log "e2e stack up in $(since "$START")s: source $E2E_DIR/env.sh; cargo test -p causeway-e2e"
