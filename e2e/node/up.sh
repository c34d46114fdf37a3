#!/usr/bin/env bash
# Start the e2e node on a running control plane (after node/net.sh up and
# controlplane/up.sh): a loopback OCI registry, containerd, the kubelet, kube-proxy,
# CoreDNS and a provisioner of local PersistentVolumes. Idempotent: what runs stays.
#
#   scheduler    kube-scheduler (the control plane has none without a node)
#   registry     Debian's docker-registry (runtime/plugins/tests/registry.sh) on
#                127.0.0.1:$REGISTRY_PORT, storage in node/registry; the images of
#                node/image.sh are pushed here and the kubelet pulls them from here
#   containerd   root, state and socket under node/containerd; CRI with
#                restrict_oom_score_adj (this machine may not lower oom_score_adj), the
#                CNI bridge plugin (conf in node/cni), netns mounts under its state dir,
#                runc state under node/runc, the pause image from the registry
#   kubelet      node causeway-e2e at 10.244.0.1, cgroupfs driver, oomScoreAdj 0, root
#                node/kubelet, pod logs node/pod-logs, cluster DNS 10.96.0.10, client
#                certificate system:node:causeway-e2e (Node authorizer)
#   kube-proxy   iptables mode, client certificate system:kube-proxy
#   coredns      on 10.244.0.1:53, the backend of Service kube-system/kube-dns
#                (10.96.0.10), answering cluster.local only (nothing is forwarded)
#   provisioner  node/provisioner.sh: a PersistentVolume (local, pre-bound) for each
#                Pending claim, a directory under node/volumes
set -euo pipefail
E2E_NODE_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../controlplane/lib.sh
source "$E2E_NODE_SRC/../controlplane/lib.sh"
# shellcheck source=lib.sh
source "$E2E_NODE_SRC/lib.sh"
# shellcheck source=/dev/null
source "$E2E_DIR/env.sh"

PKI=$E2E_DIR/pki
START=$(now)
node_net_ours || die "the node network is not up (e2e/node/net.sh up)"
mkdir -p "$NODE_DIR"/{certs,containerd,cni/net.d,cni/ipam,kubelet,pod-logs,volumes,registry,coredns,kube-proxy}

# ---- certificates and kubeconfigs ------------------------------------------------------

node_cert() { # node_cert NAME SUBJECT: a client certificate from the e2e CA
  local n=$1 subj=$2 d=$NODE_DIR/certs
  [[ -f $d/$n.crt ]] && return 0
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$d/$n.key" 2>/dev/null
  chmod 600 "$d/$n.key"
  openssl req -new -key "$d/$n.key" -subj "$subj" -config "$PKI/openssl.cnf" -out "$d/$n.csr"
  openssl x509 -req -in "$d/$n.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 3650 \
    -extfile "$PKI/openssl.cnf" -extensions client -out "$d/$n.crt" 2>/dev/null
  rm -f "$d/$n.csr"
}

node_kubeconfig() { # node_kubeconfig NAME USER
  local n=$1 d=$NODE_DIR/certs
  cat >"$d/$n.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: causeway-e2e
  cluster:
    server: $E2E_APISERVER
    certificate-authority: $PKI/ca.crt
users:
- name: $2
  user:
    client-certificate: $d/$n.crt
    client-key: $d/$n.key
contexts:
- name: causeway-e2e
  context: {cluster: causeway-e2e, user: $2}
current-context: causeway-e2e
KC
  chmod 600 "$d/$n.kubeconfig"
}

node_cert kube-scheduler "/CN=system:kube-scheduler"
node_cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
node_cert kube-proxy "/CN=system:kube-proxy"
node_cert coredns "/CN=causeway-e2e:coredns"
node_kubeconfig kube-scheduler system:kube-scheduler
node_kubeconfig kubelet "system:node:$NODE_NAME"
node_kubeconfig kube-proxy system:kube-proxy
node_kubeconfig coredns causeway-e2e:coredns

# ---- registry ------------------------------------------------------------------------

registry_up() { curl -fsS -o /dev/null "http://127.0.0.1:$REGISTRY_PORT/v2/"; }
if pid_alive registry; then
  log "registry already running on 127.0.0.1:$REGISTRY_PORT"
else
  proc_stop registry
  reg_bin=$("$REPO/runtime/plugins/tests/registry.sh")
  cat >"$NODE_DIR/registry/config.yml" <<CFG
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $NODE_DIR/registry/data}
  delete: {enabled: true}
http:
  addr: 127.0.0.1:$REGISTRY_PORT
CFG
  proc_start registry "$reg_bin" serve "$NODE_DIR/registry/config.yml"
  wait_for "registry on 127.0.0.1:$REGISTRY_PORT" 30 registry registry_up
  log "registry up on 127.0.0.1:$REGISTRY_PORT"
fi

# ---- containerd ----------------------------------------------------------------------

containerd_up() { ctr --address "$CONTAINERD_SOCK" version; }
if pid_alive containerd; then
  log "containerd already running ($CONTAINERD_SOCK)"
else
  proc_stop containerd
  cat >"$NODE_DIR/cni/net.d/10-causeway-e2e.conflist" <<CNI
{
  "cniVersion": "1.0.0",
  "name": "causeway-e2e",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$NODE_DIR/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
CNI
  cat >"$NODE_DIR/containerd/config.toml" <<TOML
version = 2
root = "$NODE_DIR/containerd/root"
state = "$NODE_DIR/containerd/state"
# Plugins that would touch places outside the run directory, or are of no use here.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "$CONTAINERD_SOCK"

[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "127.0.0.1:$REGISTRY_PORT/pause:$KUBE_VERSION"
  # This machine has no CAP_SYS_RESOURCE: no process may lower its oom_score_adj, and
  # sandboxes at -998 fail to start (docs/e2e.md).
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_unprivileged_ports = false
  tolerate_missing_hugetlb_controller = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$NODE_DIR/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_DIR/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."127.0.0.1:$REGISTRY_PORT"]
    endpoint = ["http://127.0.0.1:$REGISTRY_PORT"]
TOML
  proc_start containerd containerd --config "$NODE_DIR/containerd/config.toml"
  wait_for "containerd on $CONTAINERD_SOCK" 60 containerd containerd_up
  log "containerd up ($CONTAINERD_SOCK)"
fi

# ---- kube-scheduler ------------------------------------------------------------------

if pid_alive kube-scheduler; then
  log "kube-scheduler already running"
else
  proc_stop kube-scheduler
  mkdir -p "$NODE_DIR/kube-scheduler"
  kc=$NODE_DIR/certs/kube-scheduler.kubeconfig
  proc_start kube-scheduler "$(bin_path kube-scheduler)" \
    --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --authentication-skip-lookup=true \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" \
    --cert-dir="$NODE_DIR/kube-scheduler" \
    --leader-elect=false --v=1
  log "kube-scheduler started"
fi

# ---- kubelet -------------------------------------------------------------------------

node_ready() {
  [[ $(kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') == True ]]
}
if pid_alive kubelet; then
  log "kubelet already running"
else
  proc_stop kubelet
  # Pods with dnsPolicy Default get this (nothing): no resolver of this machine leaks in.
  : >"$NODE_DIR/kubelet/resolv.conf"
  cat >"$NODE_DIR/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
# containerd 1.6 does not answer the RuntimeConfig call, so the driver is named here.
cgroupDriver: cgroupfs
# This machine may not lower oom_score_adj (the kubelet's own -999 would fail).
oomScoreAdj: 0
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
resolvConf: $NODE_DIR/kubelet/resolv.conf
podLogsDir: $NODE_DIR/pod-logs
failSwapOn: false
# Secrets and ConfigMaps reach volumes within seconds (a pool's config is a Secret).
syncFrequency: 5s
serializeImagePulls: false
# The disk is shared and test pods are small: evict only when it is really full.
evictionHard: {memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%, nodefs.inodesFree: 2%}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
maxPods: 110
YAML
  proc_start kubelet "$(bin_path kubelet)" \
    --config="$NODE_DIR/kubelet/config.yaml" \
    --kubeconfig="$NODE_DIR/certs/kubelet.kubeconfig" \
    --root-dir="$NODE_DIR/kubelet/root" \
    --cert-dir="$NODE_DIR/kubelet/pki" \
    --hostname-override="$NODE_NAME" \
    --node-ip="$NODE_IP" \
    --v=1
  wait_for "node $NODE_NAME Ready" 120 kubelet node_ready
  log "kubelet up: node $NODE_NAME Ready"
fi

# ---- kube-proxy ----------------------------------------------------------------------

if pid_alive kube-proxy; then
  log "kube-proxy already running"
else
  proc_stop kube-proxy
  cat >"$NODE_DIR/kube-proxy/config.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $NODE_DIR/certs/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $CLUSTER_CIDR
oomScoreAdj: 0
# Leave the machine's conntrack settings alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
# NodePorts only on the node's bridge address, never on this machine's own network.
nodePortAddresses: [$NODE_IP/32]
YAML
  # The unreachable routes of node/net.sh are in place before kube-proxy programs any
  # Service address.
  ip route show type unreachable | grep -q "^unreachable $SERVICE_CIDR" || die "no unreachable route for $SERVICE_CIDR"
  proc_start kube-proxy "$(bin_path kube-proxy)" --config="$NODE_DIR/kube-proxy/config.yaml" --v=1
  wait_for "kube-proxy healthz" 60 kube-proxy curl -fsS -o /dev/null "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz"
  log "kube-proxy up (iptables)"
fi

# ---- cluster DNS ---------------------------------------------------------------------

# CoreDNS reads Services and EndpointSlices with a user of its own.
kubectl apply --server-side --field-manager=causeway-e2e -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "causeway-e2e:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "causeway-e2e:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "causeway-e2e:coredns"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "causeway-e2e:coredns"}
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  clusterIP: $DNS_IP
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: 53}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-node
  namespace: kube-system
  labels:
    kubernetes.io/service-name: kube-dns
    endpointslice.kubernetes.io/managed-by: causeway-e2e
addressType: IPv4
endpoints:
- addresses: [$NODE_IP]
  conditions: {ready: true}
ports:
- {name: dns, port: 53, protocol: UDP}
- {name: dns-tcp, port: 53, protocol: TCP}
YAML
dns_ready() { curl -fsS "http://127.0.0.1:$DNS_HEALTH_PORT/ready"; }
if pid_alive coredns; then
  log "coredns already running"
else
  proc_stop coredns
  cat >"$NODE_DIR/coredns/Corefile" <<COREFILE
.:53 {
    bind $NODE_IP
    errors
    # Every query, with its answer code: the e2e suite reads it (scenario 12).
    log
    health 127.0.0.1:$((DNS_HEALTH_PORT + 1))
    ready 127.0.0.1:$DNS_HEALTH_PORT
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $NODE_DIR/certs/coredns.kubeconfig causeway-e2e
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 5
}
COREFILE
  proc_start coredns "$(bin_path coredns)" -conf "$NODE_DIR/coredns/Corefile"
  wait_for "coredns ready" 60 coredns dns_ready
  log "coredns up on $NODE_IP:53 (Service kube-system/kube-dns $DNS_IP)"
fi

# ---- local PersistentVolumes ---------------------------------------------------------

if pid_alive provisioner; then
  log "provisioner already running"
else
  proc_stop provisioner
  proc_start provisioner "$E2E_NODE_SRC/provisioner.sh" "$NODE_DIR/volumes"
  log "provisioner up (volumes under $NODE_DIR/volumes)"
fi
log "node up in $(since "$START")s"
