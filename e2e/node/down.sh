#!/usr/bin/env bash
# Tear the e2e node down, leaving nothing of it on the machine: called by
# controlplane/down.sh (`make e2e-down`) through lib.sh's stop_all, before the control
# plane stops. In order:
#   1. the kubelet and the provisioner stop (nothing restarts containers any more)
#   2. every container and sandbox of the node's containerd is killed and deleted (ctr);
#      runc's shims exit with their tasks; shims still running afterwards (their command
#      line names our containerd socket) are killed by pid
#   3. kube-proxy, CoreDNS, containerd and the registry stop
#   4. iptables: kube-proxy --cleanup, then whatever KUBE-* chains the kubelet made
#   5. every mount under the run directory (overlay roots, netns, shm, Secret and
#      projected volumes), deepest first; the kubelet's symlinks in /var/log/containers
#   6. the network is left: controlplane/down.sh removes it (node/net.sh down) after the
#      control plane, which listens on the bridge's address, has stopped
#   7. the kubepods cgroups the kubelet made, deepest first (empty by now)
#   8. containerd's and buildah's storage and the registry's data (disk)
set -uo pipefail
# shellcheck source=../controlplane/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../controlplane/lib.sh"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -d $NODE_DIR ]] || exit 0

proc_stop kubelet 15
proc_stop provisioner 2

# 2. containers
if pid_alive containerd; then
  for id in $(node_ctr task ls -q 2>/dev/null); do
    node_ctr task kill -s SIGKILL "$id" >/dev/null 2>&1 || true
  done
  for ((i = 0; i < 50; i++)); do
    node_ctr task ls 2>/dev/null | awk 'NR > 1 && $3 != "STOPPED"' | grep -q . || break
    sleep 0.2
  done
  for id in $(node_ctr task ls -q 2>/dev/null); do node_ctr task rm -f "$id" >/dev/null 2>&1 || true; done
  for id in $(node_ctr container ls -q 2>/dev/null); do node_ctr container rm "$id" >/dev/null 2>&1 || true; done
fi
for p in /proc/[0-9]*; do
  [[ -r $p/cmdline ]] || continue
  if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q "^/usr/bin/containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK "; then
    log "killing leftover shim ${p#/proc/}"
    kill -KILL "${p#/proc/}" 2>/dev/null || true
  fi
done

# 3. the node's daemons
for n in kube-scheduler kube-proxy coredns containerd registry; do proc_stop "$n" 10; done

# 4. iptables
kp=$(bin_path kube-proxy)
if [[ -x $kp ]] && iptables-save 2>/dev/null | grep -q 'KUBE-'; then
  "$kp" --cleanup --v=0 >/dev/null 2>&1 || true
fi
for ipt in iptables ip6tables; do
  for table in filter nat mangle; do
    chains=$("$ipt" -w -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }')
    [[ -n $chains ]] || continue
    # Rules jumping to them first, then the chains.
    "$ipt" -w -t "$table" -S 2>/dev/null | grep -E -- '-j KUBE-' | grep -v '^-N' |
      while read -r rule; do
        [[ $rule == -A\ KUBE-* ]] && continue
        # shellcheck disable=SC2086
        "$ipt" -w -t "$table" ${rule/-A /-D } 2>/dev/null || true
      done
    for c in $chains; do "$ipt" -w -t "$table" -F "$c" 2>/dev/null || true; done
    for c in $chains; do "$ipt" -w -t "$table" -X "$c" 2>/dev/null || true; done
  done
done

# 5. mounts under the run directory, deepest first
for ((round = 0; round < 3; round++)); do
  mapfile -t mounts < <(awk -v d="$NODE_DIR/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2-)
  ((${#mounts[@]})) || break
  for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
done
for l in /var/log/containers/*.log; do
  [[ -L $l ]] || continue
  [[ $(readlink "$l") == "$NODE_DIR"/* ]] && rm -f "$l"
done

# 7. cgroups
for h in /sys/fs/cgroup/*/; do
  [[ -d ${h}kubepods ]] || continue
  find "${h}kubepods" -depth -type d -exec rmdir {} + 2>/dev/null || true
done

# 8. storage
rm -rf "$NODE_DIR/containerd/root" "$NODE_DIR/containerd/state" "$NODE_DIR/runc" \
  "$NODE_DIR/buildah" "$NODE_DIR/registry/data" "$NODE_DIR/kubelet/root" "$NODE_DIR/image" \
  "$NODE_DIR/volumes" "$NODE_DIR/cni/ipam" "$NODE_DIR/pod-logs" 2>/dev/null || true
left=$(awk -v d="$NODE_DIR/" 'index($5, d) == 1' /proc/self/mountinfo | wc -l)
((left == 0)) || log "warning: $left mounts under $NODE_DIR remain"
log "node down"
