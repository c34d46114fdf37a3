#!/usr/bin/env bash
# The e2e node's network, made before the control plane starts (the API server listens
# on the bridge's address, where both this machine and the pods reach it):
#
#   bridge cwe2e0 10.244.0.1/24   the node's address and the pods' gateway; the CNI
#                                 bridge plugin attaches each pod's veth to it
#   ip route unreachable 10.244.0.0/16 and 10.96.0.0/16
#                                 the cluster's pod and Service ranges stay on this
#                                 machine: an address nobody has is refused here rather
#                                 than sent to the default gateway (which answers)
#   iptables -t mangle FORWARD -> CAUSEWAY-E2E-CONTAIN
#                                 drops anything forwarded between the bridge and any
#                                 other interface: pods reach each other, the Services
#                                 and this machine's own addresses, never the network
#   net.ipv4.ip_forward=1         pod -> ClusterIP -> pod is routed through this host;
#                                 the previous value is restored by `down`
#
#   e2e/node/net.sh up | down | check
set -euo pipefail
# shellcheck source=../controlplane/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../controlplane/lib.sh"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

up() {
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    node_net_ours || die "bridge $BRIDGE exists but $NODE_DIR/net.env does not: another run directory's node? (its e2e-down removes it)"
    log "network already up ($BRIDGE $NODE_IP)"
    return 0
  fi
  mkdir -p "$NODE_DIR"
  # Written first: a half-made network is still torn down by `down`.
  printf 'IP_FORWARD=%s\n' "$(cat /proc/sys/net/ipv4/ip_forward)" >"$NODE_DIR/net.env"
  ip link add "$BRIDGE" type bridge
  ip addr add "$NODE_IP/${POD_CIDR#*/}" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  ip route add unreachable "$CLUSTER_CIDR"
  ip route add unreachable "$SERVICE_CIDR"
  iptables -w -t mangle -N "$CONTAIN_CHAIN"
  iptables -w -t mangle -A "$CONTAIN_CHAIN" -i "$BRIDGE" ! -o "$BRIDGE" -j DROP
  iptables -w -t mangle -A "$CONTAIN_CHAIN" ! -i "$BRIDGE" -o "$BRIDGE" -j DROP
  iptables -w -t mangle -I FORWARD 1 -j "$CONTAIN_CHAIN"
  echo 1 >/proc/sys/net/ipv4/ip_forward
  log "network up: $BRIDGE $NODE_IP/${POD_CIDR#*/}, $CLUSTER_CIDR and $SERVICE_CIDR unreachable off the bridge"
}

down() {
  local l fwd
  node_net_ours || return 0
  # Host ends of pod veths whose namespace is still around.
  for l in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link del "$l" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  ip route del unreachable "$CLUSTER_CIDR" 2>/dev/null || true
  ip route del unreachable "$SERVICE_CIDR" 2>/dev/null || true
  while iptables -w -t mangle -D FORWARD -j "$CONTAIN_CHAIN" 2>/dev/null; do :; done
  iptables -w -t mangle -F "$CONTAIN_CHAIN" 2>/dev/null || true
  iptables -w -t mangle -X "$CONTAIN_CHAIN" 2>/dev/null || true
  fwd=$(sed -n 's/^IP_FORWARD=//p' "$NODE_DIR/net.env")
  [[ $fwd =~ ^[01]$ ]] && echo "$fwd" >/proc/sys/net/ipv4/ip_forward
  rm -f "$NODE_DIR/net.env"
  log "network down: $BRIDGE, routes and $CONTAIN_CHAIN removed, ip_forward=$fwd"
}

# check: what of the network is left (exit 1 if anything).
check() {
  local left=0
  ip link show "$BRIDGE" >/dev/null 2>&1 && { log "left: bridge $BRIDGE"; left=1; }
  ip route show type unreachable | grep -qE "^unreachable ($CLUSTER_CIDR|$SERVICE_CIDR)" && { log "left: unreachable routes"; left=1; }
  iptables -w -t mangle -S 2>/dev/null | grep -q "$CONTAIN_CHAIN" && { log "left: $CONTAIN_CHAIN"; left=1; }
  return "$left"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  check) check ;;
  *) echo "usage: $0 up | down | check" >&2; exit 2 ;;
esac
