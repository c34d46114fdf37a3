#!/usr/bin/env bash
# The e2e node's PersistentVolume provisioner: for each Pending claim, a `local`
# PersistentVolume on node causeway-e2e, pre-bound to that claim (claimRef with its uid),
# backed by a fresh directory VOLUMES/<ns>_<claim>_<uid>; a re-created claim gets a new
# one, as dynamic provisioning would. Released volumes (their claim deleted) are deleted
# with their directory. Polls every second. Started by node/up.sh, stopped by down.sh.
#
#   e2e/node/provisioner.sh VOLUMES_DIR     (KUBECONFIG and kubectl from env.sh)
set -uo pipefail
VOLUMES=$1
NODE_NAME=causeway-e2e
LABEL=causeway.dev/e2e-provisioner
mkdir -p "$VOLUMES"
log() { printf '[provisioner %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

provision() { # ns claim uid size class modes
  local ns=$1 claim=$2 uid=$3 size=$4 class=$5 modes=$6 dir pv
  dir=$VOLUMES/${ns}_${claim}_${uid}
  pv=e2e-pv-$uid
  mkdir -p "$dir"
  # Containers run as non-root users of their own choosing; a local volume has no
  # fsGroup ownership change, so the directory is open to all.
  chmod 0777 "$dir"
  if kubectl create -f - >/dev/null <<YAML; then
apiVersion: v1
kind: PersistentVolume
metadata:
  name: $pv
  labels: {$LABEL: "true"}
spec:
  capacity: {storage: $size}
  accessModes: [${modes:-ReadWriteOnce}]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: "$class"
  claimRef: {namespace: $ns, name: $claim, uid: $uid}
  local: {path: $dir}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {key: kubernetes.io/hostname, operator: In, values: [$NODE_NAME]}
YAML
    log "provisioned $pv for $ns/$claim ($size) at $dir"
  fi
}

release() { # pv path
  kubectl delete pv "$1" --wait=false >/dev/null 2>&1 || return 0
  case $2 in "$VOLUMES"/*) rm -rf -- "$2" ;; esac
  log "deleted released $1 and $2"
}

while true; do
  while read -r ns claim uid size class modes; do
    [[ -n $uid ]] || continue
    kubectl get pv "e2e-pv-$uid" >/dev/null 2>&1 || provision "$ns" "$claim" "$uid" "$size" "${class#-}" "${modes// /, }"
  done < <(kubectl get pvc -A -o jsonpath='{range .items[?(@.status.phase=="Pending")]}{.metadata.namespace} {.metadata.name} {.metadata.uid} {.spec.resources.requests.storage} -{.spec.storageClassName} {.spec.accessModes[*]}{"\n"}{end}' 2>/dev/null)
  while read -r pv phase path; do
    [[ $phase == Released || $phase == Failed ]] && release "$pv" "$path"
  done < <(kubectl get pv -l "$LABEL" -o jsonpath='{range .items[*]}{.metadata.name} {.status.phase} {.spec.local.path}{"\n"}{end}' 2>/dev/null)
  sleep 1
done
