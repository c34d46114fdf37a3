# shellcheck shell=bash
# The e2e node's fixed layout, shared by node/net.sh, node/up.sh and node/down.sh.
# Sourced after controlplane/lib.sh (E2E_DIR, CACHE_BIN, log, proc_*).
#
# One node stack per machine: its bridge, routes and iptables chains have fixed names,
# and `node/net.sh up` refuses to take over a bridge another run directory made.

NODE_NAME=causeway-e2e
NODE_DIR=$E2E_DIR/node
BRIDGE=cwe2e0
# Pods get 10.244.0.0/24 on the bridge; the cluster's pod range and the Service range
# are routed `unreachable` on this machine, so nothing in them ever leaves it.
CLUSTER_CIDR=10.244.0.0/16
POD_CIDR=10.244.0.0/24
NODE_IP=10.244.0.1
SERVICE_CIDR=10.96.0.0/16
DNS_IP=10.96.0.10
# iptables chain (mangle FORWARD) that drops pod traffic leaving other than by the bridge.
CONTAIN_CHAIN=CAUSEWAY-E2E-CONTAIN
CONTAINERD_SOCK=$NODE_DIR/containerd/containerd.sock

# Ports from the run directory's hash, below the ephemeral range.
node_ports() {
  local h
  h=$(printf '%s' "$E2E_DIR" | cksum | cut -d' ' -f1)
  REGISTRY_PORT=${E2E_REGISTRY_PORT:-$((15000 + h % 5000))}
  KUBELET_PORT=10250
  KUBELET_HEALTHZ_PORT=$((10300 + h % 500))
  PROXY_HEALTHZ_PORT=$((10800 + h % 500))
  PROXY_METRICS_PORT=$((11300 + h % 500))
  DNS_HEALTH_PORT=$((11800 + h % 500))
  SCHEDULER_PORT=$((12300 + h % 500))
}
node_ports

# ctr against the node's containerd, in the CRI's namespace.
node_ctr() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

# Is the node stack (its network) ours? net.env marks the run directory that made it.
node_net_ours() { [[ -f $NODE_DIR/net.env ]]; }
