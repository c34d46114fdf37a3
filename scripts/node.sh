#!/usr/bin/env bash
# What a real e2e node needs from Debian: containerd, runc, the CNI plugins, iptables,
# buildah (the image) and gcc (the static pause binary). Installed only when missing;
# installing these starts no service on a machine without systemd (e2e/node/up.sh
# starts containerd itself, with its own root, state and socket under the run directory).
#
#   scripts/node.sh install   # install what is missing
#   scripts/node.sh check     # exit 1 and name what is missing
set -euo pipefail

PKGS=(containerd runc containernetworking-plugins iptables buildah gcc libc6-dev)
# One file per package that shows it is there.
have() {
  case $1 in
    containerd) command -v containerd >/dev/null && command -v ctr >/dev/null ;;
    runc) command -v runc >/dev/null ;;
    containernetworking-plugins) [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] ;;
    iptables) command -v iptables >/dev/null && command -v ip6tables >/dev/null ;;
    buildah) command -v buildah >/dev/null ;;
    gcc) command -v gcc >/dev/null ;;
    libc6-dev) [[ -f /usr/lib/x86_64-linux-gnu/libc.a || -n $(find /usr/lib -name libc.a -print -quit 2>/dev/null) ]] ;;
  esac
}

missing() {
  local p out=()
  for p in "${PKGS[@]}"; do have "$p" || out+=("$p"); done
  ((${#out[@]} == 0)) || printf '%s\n' "${out[@]}"
}

case ${1:-install} in
  check)
    m=$(missing)
    [[ -z $m ]] || { echo "node.sh: missing: $m (run scripts/node.sh install)" >&2; exit 1; }
    ;;
  install)
    mapfile -t m < <(missing)
    ((${#m[@]})) || exit 0
    command -v apt-get >/dev/null || { echo "node.sh: needs apt-get (Debian) to install ${m[*]}" >&2; exit 1; }
    echo "node.sh: installing ${m[*]}" >&2
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "${m[@]}" >&2; then
      # The package lists may be missing or stale on a fresh machine.
      apt-get update >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y "${m[@]}" >&2
    fi
    ;;
  *) echo "usage: $0 install | check" >&2; exit 2 ;;
esac
