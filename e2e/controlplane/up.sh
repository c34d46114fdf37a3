#!/usr/bin/env bash
# Start a real Kubernetes control plane on loopback: etcd, kube-apiserver and
# kube-controller-manager, from the binaries build.sh caches. No kubelet, no nodes:
# pods are created and stay Pending unless an e2e pod runner plays the kubelet.
#
# Run directory: $E2E_DIR (default <repo>/.e2e). It gets
#   kubeconfig  admin kubeconfig (CN=admin, O=system:masters)
#   env.sh      `source` it: KUBECONFIG, KUBECACHEDIR, HELM_*_HOME, PATH (kubectl, helm),
#               E2E_APISERVER, E2E_CA_FILE, ...
#   pids/<name>.pid, logs/<name>.log, pki/, etcd/ (data), kcm/, kube-cache/, helm/, bin/
#
# If the control plane is already up (recorded pids alive, /readyz ok) it says so and
# exits 0. Otherwise it stops whatever is still recorded and starts afresh: etcd data
# and certificates are recreated unless E2E_KEEP_DATA=1.
# Later steps: run this, `source "$E2E_DIR/env.sh"`, then do their own work; processes
# they start with lib.sh's proc_start are stopped by down.sh too.
#
# Env: E2E_DIR, CAUSEWAY_CACHE, E2E_KEEP_DATA=1, E2E_READY_TIMEOUT (s, default 180),
#      E2E_APISERVER_BIND (default 127.0.0.1; the e2e node's bridge address 10.244.0.1
#      when the stack has a real node, so that pods reach the API server too).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

READY_TIMEOUT=${E2E_READY_TIMEOUT:-180}
PKI=$E2E_DIR/pki
KUBECONFIG_ADMIN=$E2E_DIR/kubeconfig
export KUBECACHEDIR=$E2E_DIR/kube-cache
SERVICE_CIDR=10.96.0.0/16
BIND=${E2E_APISERVER_BIND:-127.0.0.1}
SA_ISSUER=https://kubernetes.default.svc.cluster.local

kubectl_admin() { "$(bin_path kubectl)" --kubeconfig="$KUBECONFIG_ADMIN" "$@"; }

# ---- state ------------------------------------------------------------------------

already_up() {
  local n
  for n in "${CP_PROCS[@]}"; do pid_alive "$n" || return 1; done
  [[ -f $KUBECONFIG_ADMIN ]] && kubectl_admin get --raw=/readyz >/dev/null 2>&1
}

ensure_binaries() {
  local n
  for n in "${CP_PROCS[@]}" kubectl helm; do
    if [[ ! -x $(bin_path "$n") ]]; then
      log "$(bin_path "$n") missing: running build.sh"
      "$CP_DIR/build.sh" >&2
      return
    fi
  done
}

# reset_state: stop what is recorded, remove what a previous run left of ours (only
# our own paths: later steps may keep files in $E2E_DIR too).
reset_state() {
  local n
  stop_all
  for n in "${CP_PROCS[@]}"; do rm -f "$(log_file "$n")"; done
  rm -rf "$E2E_DIR/kube-cache" "$E2E_DIR/kcm" "$E2E_DIR/apiserver" "$E2E_DIR/env.sh" "$KUBECONFIG_ADMIN"
  if [[ ${E2E_KEEP_DATA:-0} != 1 ]]; then rm -rf "$E2E_DIR/etcd" "$PKI"; fi
  mkdir -p "$E2E_DIR"/{pids,logs,bin,kube-cache,helm,kcm/flexvolume,kcm/certs,apiserver/certs} "$PKI"
}

# ---- ports --------------------------------------------------------------------------

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pick_ports: four free 127.0.0.1 ports below the ephemeral range (32768+), so an
# outgoing connection cannot take one between now and the bind.
pick_ports() {
  local taken=" " p i names=(ETCD_PORT ETCD_PEER_PORT APISERVER_PORT KCM_PORT) n
  for n in "${names[@]}"; do
    for ((i = 0; i < 200; i++)); do
      p=$((20000 + RANDOM % 12000))
      [[ $taken == *" $p "* ]] && continue
      port_in_use "$p" || break
    done
    printf -v "$n" '%s' "$p"
    taken+="$p "
  done
  printf 'ETCD_PORT=%s\nETCD_PEER_PORT=%s\nAPISERVER_PORT=%s\nKCM_PORT=%s\n' \
    "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" "$KCM_PORT" >"$E2E_DIR/ports.env"
}

# ---- certificates (openssl) ---------------------------------------------------------

write_openssl_conf() {
  cat >"$PKI/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = IP:127.0.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local, IP:10.96.0.1, IP:10.244.0.1
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
}

new_key() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null && chmod 600 "$1"; }

# sign NAME SUBJECT PROFILE: certificate NAME.crt for NAME.key, signed by the e2e CA.
sign() {
  local name=$1 subj=$2 profile=$3
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -config "$PKI/openssl.cnf" -out "$PKI/$name.csr"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 3650 \
    -extfile "$PKI/openssl.cnf" -extensions "$profile" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr"
}

# gen_pki: one throw-away CA that issues the apiserver's serving certificate (SAN
# 127.0.0.1, localhost, kubernetes.default.svc...) and the client certificates, and
# is the client CA, the cluster-signing CA and the root CA published to pods; plus
# the service-account token key pair.
gen_pki() {
  if [[ -f $PKI/ca.crt && -f $PKI/sa.key && -f $PKI/kcm.crt && -f $PKI/apiserver-kubelet.crt ]]; then return; fi
  write_openssl_conf
  local k pids=()
  # RSA keys take a while on a busy machine: make them in parallel (waiting for
  # these pids only: a bare `wait` would wait for etcd too).
  for k in ca apiserver admin kcm sa apiserver-kubelet; do
    new_key "$PKI/$k.key" &
    pids+=($!)
  done
  for k in "${pids[@]}"; do wait "$k" || die "openssl genpkey failed"; done
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=causeway-e2e-ca" -days 3650 \
    -config "$PKI/openssl.cnf" -extensions ca -out "$PKI/ca.crt"
  sign apiserver "/CN=kube-apiserver" server
  sign admin "/O=system:masters/CN=admin" client
  sign kcm "/CN=system:kube-controller-manager" client
  # The API server's client certificate towards kubelets (logs, exec).
  sign apiserver-kubelet "/O=system:masters/CN=kube-apiserver-kubelet-client" client
  openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
}

# write_kubeconfig FILE USER CERTNAME: certificates embedded, so the file stands alone.
write_kubeconfig() {
  local file=$1 user=$2 cert=$3
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: causeway-e2e
  cluster:
    server: https://$BIND:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/$cert.crt")
    client-key-data: $(base64 -w0 <"$PKI/$cert.key")
contexts:
- name: causeway-e2e
  context:
    cluster: causeway-e2e
    user: $user
current-context: causeway-e2e
EOF
  chmod 600 "$file"
}

# ---- processes ----------------------------------------------------------------------

start_etcd() {
  local bin extra=()
  bin=$(bin_path etcd)
  # Test data only: skip fsync (much faster on a shared disk), if this etcd knows how.
  if "$bin" --help 2>&1 | grep -q -- '--unsafe-no-fsync'; then extra+=(--unsafe-no-fsync=true); fi
  proc_start etcd "$bin" \
    --name=e2e \
    --data-dir="$E2E_DIR/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster-state=new \
    "${extra[@]}"
}

etcd_healthy() {
  (
    exec 3<>"/dev/tcp/127.0.0.1/$ETCD_PORT"
    printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
    timeout 2 cat <&3
  ) 2>/dev/null | grep -q '"health":"true"'
}

start_apiserver() {
  local reconciler=none
  # With a node, the `kubernetes` Service points at the API server's address, which
  # pods reach; on loopback there is nothing to point at (the API server refuses
  # loopback endpoints).
  [[ $BIND == 127.0.0.1 ]] || reconciler=lease
  proc_start kube-apiserver "$(bin_path kube-apiserver)" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address="$BIND" \
    --secure-port="$APISERVER_PORT" \
    --advertise-address="$BIND" \
    --endpoint-reconciler-type="$reconciler" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet.key" \
    --kubelet-preferred-address-types=InternalIP \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --cert-dir="$E2E_DIR/apiserver/certs" \
    --tls-cert-file="$PKI/apiserver.crt" \
    --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --authorization-mode=Node,RBAC \
    --service-account-issuer="$SA_ISSUER" \
    --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" \
    --profiling=false
}

apiserver_ready() { kubectl_admin get --raw=/readyz; }

start_controller_manager() {
  local kc=$E2E_DIR/kcm/kubeconfig
  write_kubeconfig "$kc" system:kube-controller-manager kcm
  proc_start kube-controller-manager "$(bin_path kube-controller-manager)" \
    --kubeconfig="$kc" \
    --authentication-kubeconfig="$kc" \
    --authorization-kubeconfig="$kc" \
    --authentication-skip-lookup=true \
    --bind-address=127.0.0.1 \
    --secure-port="$KCM_PORT" \
    --cert-dir="$E2E_DIR/kcm/certs" \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" \
    --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" \
    --cluster-signing-key-file="$PKI/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --flex-volume-plugin-dir="$E2E_DIR/kcm/flexvolume" \
    --controllers='*'
}

# The serviceaccount controller has made `default` in namespace default: the
# controller manager is up, and pods can be created there.
controller_manager_ready() { kubectl_admin -n default get serviceaccount default; }

# ---- environment for later steps -----------------------------------------------------

write_env() {
  ln -sfn "$(bin_path kubectl)" "$E2E_DIR/bin/kubectl"
  ln -sfn "$(bin_path helm)" "$E2E_DIR/bin/helm"
  cat >"$E2E_DIR/env.sh" <<EOF
# Written by e2e/controlplane/up.sh. Source it.
export E2E_DIR='$E2E_DIR'
export KUBECONFIG='$KUBECONFIG_ADMIN'
export KUBECACHEDIR='$KUBECACHEDIR'
export HELM_CACHE_HOME='$E2E_DIR/helm/cache'
export HELM_CONFIG_HOME='$E2E_DIR/helm/config'
export HELM_DATA_HOME='$E2E_DIR/helm/data'
export E2E_APISERVER='https://$BIND:$APISERVER_PORT'
export E2E_APISERVER_HOST='$BIND'
export E2E_APISERVER_PORT='$APISERVER_PORT'
export E2E_CA_FILE='$PKI/ca.crt'
export E2E_ETCD='http://127.0.0.1:$ETCD_PORT'
case ":\$PATH:" in *":$E2E_DIR/bin:"*) ;; *) export PATH='$E2E_DIR/bin':"\$PATH" ;; esac
EOF
}

main() {
  local start
  start=$(now)
  if already_up; then
    log "control plane already up ($E2E_DIR): source $E2E_DIR/env.sh"
    return 0
  fi
  ensure_binaries
  reset_state
  pick_ports
  start_etcd # plain HTTP on loopback: needs no certificates, so it boots meanwhile
  gen_pki
  write_kubeconfig "$KUBECONFIG_ADMIN" admin admin
  wait_for "etcd /health" 30 etcd etcd_healthy
  log "etcd ready on 127.0.0.1:$ETCD_PORT after $(since "$start")s"

  start_apiserver
  wait_for "kube-apiserver /readyz" "$READY_TIMEOUT" kube-apiserver apiserver_ready
  log "kube-apiserver ready (/readyz ok) on https://127.0.0.1:$APISERVER_PORT after $(since "$start")s"

  start_controller_manager
  wait_for "kube-controller-manager (ServiceAccount default/default)" 120 kube-controller-manager controller_manager_ready
  write_env
  log "control plane ready after $(since "$start")s: source $E2E_DIR/env.sh"
}

# A failed start stops what it started (logs stay) unless E2E_KEEP_ON_FAILURE=1.
on_exit() {
  local rc=$?
  if ((rc != 0)) && [[ ${E2E_KEEP_ON_FAILURE:-0} != 1 ]]; then
    log "failed: stopping what was started; logs are in $E2E_DIR/logs"
    stop_all
  fi
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

main "$@"
