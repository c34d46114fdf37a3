#!/usr/bin/env bash
# Smoke test of a running e2e control plane (up.sh): namespaces, RBAC, a CRD with a
# CEL validation rule, Deployment -> ReplicaSet -> Pods (Pending: no nodes), garbage
# collection, ServiceAccount tokens, namespace deletion. Works in its own namespace
# and deletes it. Exits non-zero if any check failed.
set -uo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ -f $E2E_DIR/env.sh ]] || die "no $E2E_DIR/env.sh: run up.sh first"
# shellcheck source=/dev/null
source "$E2E_DIR/env.sh"

NS=smoke-$RANDOM
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
passed=0 failed=0

ok() { passed=$((passed + 1)); printf 'ok   - %s\n' "$1"; }
fail() { failed=$((failed + 1)); printf 'FAIL - %s\n' "$1"; [[ -z ${2:-} ]] || printf '%s\n' "$2" | sed 's/^/       /'; }
check() { # check DESCRIPTION CMD...: CMD succeeds
  local d=$1 out
  shift
  if out=$("$@" 2>&1); then ok "$d"; else fail "$d" "$out"; fi
}
# eventually TIMEOUT CMD...: CMD succeeds within TIMEOUT seconds
eventually() {
  local t=$1 i
  shift
  for ((i = 0; i < t * 4; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  "$@"
}

t_namespaces() {
  local out
  out=$(kubectl get ns -o name 2>&1)
  if [[ $out == *namespace/default* && $out == *namespace/kube-system* ]]; then ok "kubectl get ns"; else fail "kubectl get ns" "$out"; fi
  check "kubectl auth can-i --list" kubectl auth can-i --list
  kubectl create namespace "$NS" >/dev/null
  check "kube-root-ca.crt published in a new namespace" eventually 30 kubectl -n "$NS" get configmap kube-root-ca.crt
}

t_crd_cel() {
  cat >"$TMP/crd.yaml" <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.causeway.dev
spec:
  group: smoke.causeway.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              min: {type: integer}
              max: {type: integer}
            x-kubernetes-validations:
            - rule: "self.min <= self.max"
              message: "min must not exceed max"
EOF
  check "apply CRD with an x-kubernetes-validations rule" kubectl apply -f "$TMP/crd.yaml"
  check "CRD established" kubectl wait --for=condition=Established crd/widgets.smoke.causeway.dev --timeout=60s
  printf 'apiVersion: smoke.causeway.dev/v1\nkind: Widget\nmetadata: {name: good}\nspec: {min: 1, max: 5}\n' >"$TMP/good.yaml"
  printf 'apiVersion: smoke.causeway.dev/v1\nkind: Widget\nmetadata: {name: bad}\nspec: {min: 5, max: 1}\n' >"$TMP/bad.yaml"
  check "valid Widget accepted" eventually 20 kubectl -n "$NS" apply -f "$TMP/good.yaml"
  local out
  if out=$(kubectl -n "$NS" apply -f "$TMP/bad.yaml" 2>&1); then
    fail "invalid Widget refused by the CEL rule" "accepted: $out"
  elif [[ $out == *"min must not exceed max"* ]]; then
    ok "invalid Widget refused by the CEL rule: ${out##*: }"
  else
    fail "invalid Widget refused with the rule's message" "$out"
  fi
  kubectl delete -f "$TMP/crd.yaml" --wait=false >/dev/null 2>&1
}

count() { kubectl -n "$NS" get "$1" -l app=web -o name 2>/dev/null | grep -c .; }
pods_pending_owned() {
  local got
  got=$(kubectl -n "$NS" get pods -l app=web -o jsonpath='{range .items[*]}{.status.phase}/{.metadata.ownerReferences[0].kind}{"\n"}{end}')
  [[ $(grep -c '^Pending/ReplicaSet$' <<<"$got") == 2 ]]
}

# Functions, so that `eventually` re-counts on every try.
rs_count_is() { test "$(count replicasets)" = "$1"; }
pod_count_is() { test "$(count pods)" = "$1"; }
t_deployment_gc() {
  check "create Deployment (2 replicas)" kubectl -n "$NS" create deployment web --image=example.invalid/web:1 --replicas=2
  check "controller-manager created a ReplicaSet" eventually 60 rs_count_is 1
  check "ReplicaSet created 2 Pods, Pending (no nodes)" eventually 60 pods_pending_owned
  check "delete Deployment" kubectl -n "$NS" delete deployment web
  check "garbage collector removed the ReplicaSet" eventually 60 rs_count_is 0
  check "garbage collector removed the Pods" eventually 60 pod_count_is 0
}

t_serviceaccount_token() {
  local out
  check "create ServiceAccount" kubectl -n "$NS" create serviceaccount robot
  if out=$(kubectl -n "$NS" create token robot 2>&1) && [[ $out == ey*.*.* ]]; then
    ok "kubectl create token (TokenRequest)"
  else
    fail "kubectl create token (TokenRequest)" "$out"
  fi
  "$CP_DIR/sa-kubeconfig.sh" "$NS" robot "$TMP/robot.kubeconfig" 1h 2>/dev/null
  out=$(kubectl --kubeconfig="$TMP/robot.kubeconfig" auth whoami -o jsonpath='{.status.userInfo.username}' 2>&1)
  if [[ $out == "system:serviceaccount:$NS:robot" ]]; then ok "token authenticates as $out"; else fail "token authenticates" "$out"; fi
  out=$(kubectl --kubeconfig="$TMP/robot.kubeconfig" get secrets 2>&1)
  if [[ $out == *Forbidden* ]]; then ok "RBAC denies the ServiceAccount what it was not granted"; else fail "RBAC denies" "$out"; fi
}

t_namespace_deletion() {
  check "delete namespace $NS (namespace controller empties it)" kubectl delete namespace "$NS" --timeout=120s
}

t_namespaces
t_crd_cel
t_deployment_gc
t_serviceaccount_token
t_namespace_deletion
printf '%d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
