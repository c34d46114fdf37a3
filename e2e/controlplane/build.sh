#!/usr/bin/env bash
# Build and cache the e2e control plane and node tools at the versions pinned in versions.env:
#   kube-apiserver, kube-controller-manager, kubectl  (k8s.io/kubernetes)
#   kube-scheduler, kubelet, kube-proxy              (k8s.io/kubernetes, the node)
#   pause                                            (build/pause/linux/pause.c of that module, gcc -static)
#   etcd                                             (go.etcd.io/etcd/server/v3)
#   helm                                             (helm.sh/helm/v3)
#   coredns                                          (github.com/coredns/coredns, the cluster DNS)
# Binaries land in $CACHE/bin/<name>-<version> (CACHE=${CAUSEWAY_CACHE:-~/.cache/causeway}),
# with a convenience symlink $CACHE/bin/<name>. Every existing binary's version output
# is checked against its pin; only missing or mismatching ones are built, so a second
# run takes seconds. GOPATH, GOMODCACHE and GOCACHE all live under $CACHE/go.
#
# Env: CAUSEWAY_CACHE, KUBE_VERSION/ETCD_VERSION/HELM_VERSION (override pins),
#      ETCD_SOURCE=debian (use Debian's etcd-server instead of building etcd),
#      GO (go binary; default: go on PATH, else /usr/local/go/bin/go).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
TOOLS=("${K8S_CMDS[@]}" pause etcd helm coredns)

go_env() {
  GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
  [[ -x $GO ]] || die "no go toolchain found (set GO=/path/to/go)"
  export GOPATH=$CACHE/go
  export GOMODCACHE=$CACHE/go/pkg/mod
  export GOCACHE=$CACHE/go/build-cache
  export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-buildvcs=false
  # go.mod files written here must not pick up a parent module.
  export GO111MODULE=on
}

# version_line NAME BIN: the part of BIN's version output that must equal the pin.
version_line() {
  local name=$1 bin=$2 tmp
  case $name in
    kube-apiserver | kube-controller-manager | kube-scheduler | kubelet | kube-proxy)
      "$bin" --version 2>/dev/null | sed -n 's/^Kubernetes //p' | head -n1 ;;
    pause)
      "$bin" -v 2>/dev/null | sed -n 's/^pause\.c //p' | head -n1 ;;
    coredns)
      "$bin" -version 2>/dev/null | sed -n 's/^CoreDNS-/v/p' | head -n1 ;;
    kubectl)
      "$bin" version --client 2>/dev/null | sed -n 's/^Client Version: //p' | head -n1 ;;
    etcd)
      "$bin" --version 2>/dev/null | sed -n 's/^etcd Version: /v/p' | head -n1 ;;
    helm)
      tmp=$(mktemp -d)
      HELM_CACHE_HOME=$tmp HELM_CONFIG_HOME=$tmp HELM_DATA_HOME=$tmp \
        "$bin" version --template '{{.Version}}' 2>/dev/null || true
      rm -rf "$tmp" ;;
  esac
}

# up_to_date NAME: the cached binary exists and reports the pinned version.
up_to_date() {
  local bin
  bin=$(bin_path "$1")
  [[ -x $bin ]] || return 1
  if [[ $1 == etcd && ${ETCD_SOURCE:-go} == debian ]]; then [[ $bin == *etcd-debian-* ]]; return; fi
  # A Debian fallback made when the Go build failed stays in use until removed
  # ($CACHE/bin/etcd-debian), so that later runs stay fast.
  if [[ $1 == etcd && $bin == *etcd-debian-* ]]; then return 0; fi
  [[ $(version_line "$1" "$bin") == "$(pin_of "$1")" ]]
}

install_bin() { # install_bin NAME FILE: move FILE into the cache as NAME-<pin>
  local dst
  dst=$CACHE_BIN/$1-$(pin_of "$1")
  mkdir -p "$CACHE_BIN"
  chmod 0755 "$2"
  mv -f "$2" "$dst"
  ln -sfn "${dst##*/}" "$CACHE_BIN/$1"
}

# ---- kubernetes ---------------------------------------------------------------------

# k8s_module_dir: a wrapper module requiring k8s.io/kubernetes at the pin, with every
# `=> ./staging/...` replace of its go.mod pointed at the published k8s.io/<name>.
k8s_module_dir() {
  local v=$KUBE_VERSION dir kmod staging m
  dir=$CACHE/src/k8s-$v
  if [[ -f $dir/.ready ]]; then
    # A module made for fewer commands (before kubelet and kube-proxy were built) is
    # tidied again for the full list.
    if [[ $(<"$dir/.ready") != "${K8S_CMDS[*]}" ]]; then
      k8s_tools_go >"$dir/tools.go"
      (cd "$dir" && "$GO" mod tidy) >&2 || die "go mod tidy failed in $dir"
      printf '%s' "${K8S_CMDS[*]}" >"$dir/.ready"
    fi
    printf '%s' "$dir"
    return
  fi
  [[ $v =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || die "KUBE_VERSION must look like v1.Y.Z, got $v"
  staging=v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}
  rm -rf "$dir"
  mkdir -p "$dir"
  log "k8s: resolving k8s.io/kubernetes@$v (staging modules at $staging)"
  kmod=$(cd "$dir" && "$GO" mod download -json "k8s.io/kubernetes@$v" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
  [[ -f $kmod ]] || die "could not download k8s.io/kubernetes@$v"
  {
    printf 'module causeway.local/k8s-build\n\n'
    grep -m1 '^go ' "$kmod"
    # Carry over the godebug defaults Kubernetes is built and tested with.
    awk '/^godebug \(/ { inblk = 1 } inblk || /^godebug / { print } inblk && /^\)/ { inblk = 0 }' "$kmod"
    printf '\nrequire k8s.io/kubernetes %s\n' "$v"
  } >"$dir/go.mod"
  for m in $(sed -nE 's#^[[:space:]]*(replace[[:space:]]+)?(k8s\.io/[A-Za-z0-9._-]+)[[:space:]]+=>[[:space:]]+\./staging/.*#\2#p' "$kmod"); do
    (cd "$dir" && "$GO" mod edit "-replace=$m=$m@$staging")
  done
  k8s_tools_go >"$dir/tools.go"
  (cd "$dir" && "$GO" mod tidy) >&2 || die "go mod tidy failed in $dir"
  printf '%s' "${K8S_CMDS[*]}" >"$dir/.ready"
  printf '%s' "$dir"
}

# k8s_tools_go: a tools.go importing every command we build, so that `go mod tidy`
# records what they need.
k8s_tools_go() {
  local n
  printf '//go:build tools\n\n// Only here so that `go mod tidy` records what these commands need.\npackage tools\n\nimport (\n'
  for n in "${K8S_CMDS[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$n"; done
  printf ')\n'
}

build_k8s() { # build_k8s NAME...: build these k8s commands in one go build
  local dir tmp ldflags pkg=() n v=$KUBE_VERSION major minor start
  dir=$(k8s_module_dir)
  [[ $v =~ ^v([0-9]+)\.([0-9]+)\. ]] && major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]}
  ldflags="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=$v -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  for n in "$@"; do pkg+=("k8s.io/kubernetes/cmd/$n"); done
  tmp=$(mktemp -d "$CACHE/tmp.XXXXXX")
  start=$(now)
  log "k8s: go build $* ($v); a cold build takes several minutes"
  (cd "$dir" && "$GO" build -trimpath -ldflags "$ldflags" -o "$tmp/" "${pkg[@]}") >&2 ||
    { rm -rf "$tmp"; die "go build of $* failed"; }
  for n in "$@"; do install_bin "$n" "$tmp/$n"; done
  rm -rf "$tmp"
  log "k8s: built $* in $(since "$start")s"
}

# ---- etcd ---------------------------------------------------------------------------

build_etcd_go() {
  local v=$ETCD_VERSION dir tmp start
  dir=$CACHE/src/etcd-$v
  if [[ ! -f $dir/.ready ]]; then
    rm -rf "$dir"
    mkdir -p "$dir"
    printf 'module causeway.local/etcd-build\n\ngo 1.24.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$v" >"$dir/go.mod"
    cat >"$dir/main.go" <<'EOF'
// etcd built from the go.etcd.io/etcd/server/v3 module: the same entry point as
// upstream's server/main.go.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
    (cd "$dir" && "$GO" mod tidy) >&2 || return 1
    touch "$dir/.ready"
  fi
  tmp=$(mktemp -d "$CACHE/tmp.XXXXXX")
  start=$(now)
  log "etcd: go build go.etcd.io/etcd/server/v3 $v"
  if ! (cd "$dir" && "$GO" build -trimpath -ldflags "-s -w" -o "$tmp/etcd" .) >&2; then
    rm -rf "$tmp"
    return 1
  fi
  install_bin etcd "$tmp/etcd"
  rm -rf "$tmp"
  log "etcd: built in $(since "$start")s"
}

# Debian's etcd-server, unpacked (never installed: installing starts a service).
etcd_from_debian() {
  local d=$CACHE/debs deb ver x
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || return 1
  mkdir -p "$d"
  if ! (cd "$d" && apt-get download etcd-server) >&2; then
    apt-get update >&2 || true
    (cd "$d" && apt-get download etcd-server) >&2 || return 1
  fi
  deb=$(ls -t "$d"/etcd-server_*.deb | head -n1)
  ver=$(dpkg-deb -f "$deb" Version)
  x=$d/etcd-server-$ver
  rm -rf "$x"
  dpkg-deb -x "$deb" "$x"
  mkdir -p "$CACHE_BIN"
  install -m 0755 "$x/usr/bin/etcd" "$CACHE_BIN/etcd-debian-$ver"
  ln -sfn "etcd-debian-$ver" "$CACHE_BIN/etcd-debian"
  log "etcd: using Debian's etcd-server $ver"
}

build_etcd() {
  if [[ ${ETCD_SOURCE:-go} == debian ]]; then
    etcd_from_debian || die "could not unpack Debian's etcd-server"
  elif ! build_etcd_go; then
    log "etcd: building $ETCD_VERSION from Go modules failed; falling back to Debian's etcd-server"
    etcd_from_debian || die "no etcd: Go build and Debian fallback both failed"
  fi
}

# ---- helm ---------------------------------------------------------------------------

build_helm() {
  local v=$HELM_VERSION tmp start
  tmp=$(mktemp -d "$CACHE/tmp.XXXXXX")
  start=$(now)
  log "helm: go install helm.sh/helm/v3/cmd/helm@$v"
  (cd "$CACHE" && GOBIN=$tmp "$GO" install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$v -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
    "helm.sh/helm/v3/cmd/helm@$v") >&2 || { rm -rf "$tmp"; die "go install of helm $v failed"; }
  install_bin helm "$tmp/helm"
  rm -rf "$tmp"
  log "helm: built in $(since "$start")s"
}

# ---- pause (the pod sandbox's process) ----------------------------------------------

# build_pause: pause.c from the pinned k8s.io/kubernetes module, linked statically, so
# the pause image is this one file in a scratch image (e2e/node/images.sh).
build_pause() {
  local dir src tmp
  dir=$(k8s_module_dir)
  src=$(cd "$dir" && "$GO" list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
  [[ -f $src ]] || die "no pause.c at $src"
  command -v gcc >/dev/null || die "gcc missing (scripts/node.sh install)"
  tmp=$(mktemp -d "$CACHE/tmp.XXXXXX")
  gcc -Os -Wall -Werror -static -DVERSION="$KUBE_VERSION" -o "$tmp/pause" "$src" >&2 ||
    { rm -rf "$tmp"; die "gcc -static pause.c failed (Debian: apt-get install gcc libc6-dev)"; }
  strip "$tmp/pause" 2>/dev/null || true
  install_bin pause "$tmp/pause"
  rm -rf "$tmp"
  log "pause: built from $src"
}

# ---- coredns (cluster DNS) -------------------------------------------------------------

build_coredns() {
  local v=$COREDNS_VERSION tmp start
  tmp=$(mktemp -d "$CACHE/tmp.XXXXXX")
  start=$(now)
  log "coredns: go install github.com/coredns/coredns@$v"
  (cd "$CACHE" && GOBIN=$tmp "$GO" install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$v") >&2 ||
    { rm -rf "$tmp"; die "go install of coredns $v failed"; }
  install_bin coredns "$tmp/coredns"
  rm -rf "$tmp"
  log "coredns: built in $(since "$start")s"
}

# ---- main ---------------------------------------------------------------------------

summary() {
  local n bin ver
  for n in "${TOOLS[@]}"; do
    bin=$(bin_path "$n")
    if [[ $n == etcd && $bin == *etcd-debian-* ]]; then
      ver="$("$bin" --version | sed -n 's/^etcd Version: /v/p') (Debian fallback)"
    else
      ver=$(version_line "$n" "$bin")
    fi
    printf '%-24s %-10s %s\n' "$n" "$ver" "$bin"
  done
}

main() {
  local start k8s=() n
  start=$(now)
  mkdir -p "$CACHE_BIN"
  # One build at a time per cache (two checkouts may share it).
  exec 9>"$CACHE/.build.lock"
  flock 9
  for n in "${K8S_CMDS[@]}"; do
    up_to_date "$n" || k8s+=("$n")
  done
  go_env
  ((${#k8s[@]} == 0)) || build_k8s "${k8s[@]}"
  up_to_date pause || build_pause
  up_to_date etcd || build_etcd
  up_to_date helm || build_helm
  up_to_date coredns || build_coredns
  for n in "${TOOLS[@]}"; do
    up_to_date "$n" || die "$n at $(bin_path "$n") does not report version $(pin_of "$n") after building"
  done
  rm -rf "$CACHE"/tmp.*
  summary
  log "done in $(since "$start")s (cache: $CACHE)"
}

main "$@"
