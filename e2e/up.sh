#!/usr/bin/env bash
# `make e2e-up`: the whole local e2e stack on this machine.
#
#   1. controlplane/build.sh   pinned kube-apiserver, kube-controller-manager,
#                              kube-scheduler, kubectl, kubelet, kube-proxy, pause, etcd,
#                              helm, coredns under ~/.cache/causeway (seconds once cached)
#   2. scripts/node.sh install containerd, runc, CNI plugins, iptables, buildah, gcc
#                              from Debian when missing
#   3. node/net.sh up          the bridge 10.244.0.1/24, unreachable routes, containment
#   4. controlplane/up.sh      etcd + kube-apiserver (on 10.244.0.1) + kube-controller-manager
#   5. cargo build             causeway, causeway-operator (debug, features as `make unit`)
#   6. node/up.sh              kube-scheduler, registry, containerd, kubelet, kube-proxy,
#                              coredns, volume provisioner
#   7. node/image.sh           the image (Containerfile) from those binaries, pushed to
#                              the node's registry (once per build)
#   8. helm upgrade --install  charts/causeway into causeway-system, with
#                              e2e/values-local.yaml and the image from the registry;
#                              the operator runs as a pod with the chart's ServiceAccount
#   9. wait                    until the operator's pod is Ready
#  10. postgres                scripts/postgres.sh: a throwaway PostgreSQL on a port of
#                              127.0.0.1 and 10.244.0.1 for `storage: postgres` pools; its
#                              URL (password inside) is kept in $E2E_DIR/postgres/url,
#                              never printed
#
# Idempotent: what is already up stays up; the operator's pod rolls when the binaries
# changed (a new image tag). Stop everything with e2e/controlplane/down.sh (`make e2e-down`).
#
# Env: E2E_DIR (default <repo>/.e2e), CARGO_TARGET_DIR, E2E_OPERATOR_TIMEOUT (s, 240),
#      E2E_SKIP_BUILD=1, E2E_POSTGRES_PORT (default 20000 + hash of E2E_DIR % 10000),
#      E2E_POSTGRES=0 (none).
set -euo pipefail
E2E_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=controlplane/lib.sh
source "$E2E_SRC/controlplane/lib.sh"
# shellcheck source=node/lib.sh
source "$E2E_SRC/node/lib.sh"

START=$(now)
RELEASE=causeway
RELEASE_NS=causeway-system
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
# E2E_BIN_DIR: take causeway and causeway-operator from there and build nothing (e.g. a
# release build, for bench/operator-scale.sh at 10,000 Bridges).
BIN=${E2E_BIN_DIR:-$TARGET/debug}
OPERATOR_TIMEOUT=${E2E_OPERATOR_TIMEOUT:-240}
hash=$(printf '%s' "$E2E_DIR" | cksum | cut -d' ' -f1)

"$CP_DIR/build.sh"
if pid_alive kube-apiserver && ! node_net_ours; then
  # A stack from before the node (the pod runner's): the API server must move to the
  # node's address.
  log "a stack without a node runs in $E2E_DIR: stopping it to start one with a node"
  "$CP_DIR/down.sh"
fi
"$REPO/scripts/node.sh" install
"$E2E_SRC/node/net.sh" up
export E2E_APISERVER_BIND=$NODE_IP
"$CP_DIR/up.sh"
# shellcheck source=/dev/null
source "$E2E_DIR/env.sh"

if [[ ${E2E_SKIP_BUILD:-0} != 1 && -z ${E2E_BIN_DIR:-} ]]; then
  t=$(now)
  # The packages and targets of `make unit` (so its feature resolution, dev-dependencies
  # included): after it, only the operator's binary is new. A plain `cargo build --bin …`
  # resolves features differently and rebuilds most dependencies, which was the longest
  # step of a cold `make test`.
  (cd "$REPO" && cargo build --workspace --exclude causeway-e2e --bins --tests)
  log "binaries built in $(since "$t")s"
fi
for b in causeway causeway-operator; do
  [[ -x $BIN/$b ]] || die "$BIN/$b missing (cargo build failed?)"
done

# ---- the node and the image ----------------------------------------------------------
"$E2E_SRC/node/up.sh"
if ! grep -q '^export E2E_NODE=' "$E2E_DIR/env.sh"; then
  cat >>"$E2E_DIR/env.sh" <<EOF
# Written by e2e/up.sh: the stack's node (e2e/node/).
export E2E_NODE=1
export E2E_SINK_HOST='$NODE_IP'
export E2E_CONTAINERD_SOCK='$CONTAINERD_SOCK'
export E2E_REGISTRY='127.0.0.1:$REGISTRY_PORT'
EOF
fi
# The tag names the binaries it holds (size and mtime), so a rebuild gets a new tag and
# the operator's pod rolls onto it.
TAG=e2e-$(stat -c '%s-%Y' "$BIN/causeway" "$BIN/causeway-operator" | cksum | cut -d' ' -f1)
if curl -fsS -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
  -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
  "http://127.0.0.1:$REGISTRY_PORT/v2/causeway/manifests/$TAG" 2>/dev/null; then
  log "image causeway:$TAG already in the registry"
else
  "$E2E_SRC/node/image.sh" --bin-dir "$BIN" --tag "$TAG" --push "127.0.0.1:$REGISTRY_PORT"
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
  --set-string "image.repository=127.0.0.1:$REGISTRY_PORT/causeway" \
  --set-string "image.tag=$TAG" --set-string image.pullPolicy=IfNotPresent \
  --set-string worker.poolRouting=service \
  --set-string "podAnnotations.causeway\.dev/e2e-build=$build_id" >/dev/null
log "helm upgrade --install $RELEASE done in $(since "$t")s"

t=$(now)
if ! kubectl -n "$RELEASE_NS" rollout status "deploy/$RELEASE-operator" --timeout="${OPERATOR_TIMEOUT}s" >&2; then
  log "the operator did not become Ready within ${OPERATOR_TIMEOUT}s"
  kubectl -n "$RELEASE_NS" get pods -o wide >&2 || true
  kubectl -n "$RELEASE_NS" describe pods >&2 || true
  kubectl -n "$RELEASE_NS" logs -l app.kubernetes.io/component=operator --tail=40 >&2 || true
  exit 1
fi
log "operator Ready after $(since "$t")s"

# ---- a throwaway PostgreSQL --------------------------------------------------------
# For the postgres scenario (e2e/tests/e2e/postgres.rs), as a process of this machine
# (postgres_for_pods below: where the pods reach it). Kept while it runs; a stale directory (stopped server) is
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
# postgres_for_pods: pods are in their own network namespaces and reach this machine at
# the node's address: the server listens there too, takes password logins from the pod
# range, and the URL names that address.
postgres_for_pods() {
  printf "listen_addresses = '127.0.0.1,%s'\n" "$NODE_IP" >>"$PG_DIR/data/postgresql.conf"
  printf 'host all all %s scram-sha-256\n' "$CLUSTER_CIDR" >>"$PG_DIR/data/pg_hba.conf"
  sed -i "s#@127\.0\.0\.1:#@$NODE_IP:#" "$PG_DIR/url"
  "$REPO/scripts/postgres.sh" stop "$PG_DIR"
  "$REPO/scripts/postgres.sh" restart "$PG_DIR" >/dev/null
}
if [[ ${E2E_POSTGRES:-1} == 1 ]]; then
  if postgres_alive; then
    log "postgres already running (pid $(head -1 "$PG_DIR/data/postmaster.pid"))"
  else
    rm -rf "$PG_DIR"
    mkdir -p "$E2E_DIR/logs"
    t=$(now)
    # stdout is the URL, with its password: into the directory only, never the console.
    if "$REPO/scripts/postgres.sh" start "$PG_DIR" "$PG_PORT" >/dev/null 2>"$E2E_DIR/logs/postgres.log" &&
      postgres_for_pods; then
      log "postgres up on $NODE_IP:$PG_PORT in $(since "$t")s (URL in $PG_DIR/url)"
    else
      log "warning: postgres did not start (see $E2E_DIR/logs/postgres.log); the postgres scenario will fail"
    fi
  fi
fi
log "e2e stack up in $(since "$START")s: source $E2E_DIR/env.sh; cargo test -p causeway-e2e"
