#!/usr/bin/env bash
# Build the Causeway image (Containerfile) and the pause image with buildah, from binaries
# already built on this machine, and optionally push both to a registry.
#
#   e2e/node/image.sh --bin-dir DIR --tag TAG [--push HOST:PORT] [--no-pause]
#   make image        # release binaries; IMAGE_TAG (dev), IMAGE_PUSH (a registry host)
#
# Images: causeway:TAG (FROM scratch: the two binaries, the glibc libraries they link,
# nonroot user 65532, no shell) and pause:<KUBE_VERSION> (the static pause binary of
# build.sh). buildah keeps its storage under $E2E_DIR/node/buildah (--root/--runroot),
# uses the vfs driver (no mounts left behind) and chroot isolation (no netavark, no
# iptables chains). Pushed over plain HTTP to a loopback registry.
# The binaries are stripped of debug info in the build context (a debug build's
# causeway is ~700 MB, ~150 MB without its DWARF).
set -euo pipefail
# shellcheck source=../controlplane/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../controlplane/lib.sh"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BIN_DIR= TAG= PUSH= PAUSE=1
while (($#)); do
  case $1 in
    --no-pause) PAUSE=0; shift ;;
    --bin-dir) BIN_DIR=$2; shift 2 ;;
    --tag) TAG=$2; shift 2 ;;
    --push) PUSH=$2; shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done
[[ -n $BIN_DIR && -n $TAG ]] || die "usage: $0 --bin-dir DIR --tag TAG [--push HOST:PORT]"

B=$NODE_DIR/buildah
bh() { buildah --root "$B/root" --runroot "$B/runroot" --storage-driver vfs "$@"; }

# copy_with_libs ROOTFS FILE...: each file into ROOTFS at its own path, with what ldd
# says it loads (the loader included), at their paths.
copy_libs() {
  local root=$1 f lib
  shift
  for f in "$@"; do
    while read -r lib; do
      [[ -n $lib && -e $lib ]] || continue
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done < <(ldd "$f" | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }')
  done
}

build_causeway() {
  local ctx=$NODE_DIR/image/causeway root b
  rm -rf "$ctx"
  root=$ctx/rootfs
  mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp"
  chmod 1777 "$root/tmp"
  for b in causeway causeway-operator; do
    [[ -x $BIN_DIR/$b ]] || die "$BIN_DIR/$b missing"
    objcopy --strip-debug "$BIN_DIR/$b" "$root/usr/local/bin/$b"
  done
  copy_libs "$root" "$root/usr/local/bin/causeway" "$root/usr/local/bin/causeway-operator"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
  [[ -f /etc/ssl/certs/ca-certificates.crt ]] && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  cp "$REPO/Containerfile" "$ctx/Containerfile"
  bh bud --quiet --isolation chroot --layers=false -f "$ctx/Containerfile" -t "localhost/causeway:$TAG" "$ctx" >/dev/null
}

build_pause() {
  local ctx=$NODE_DIR/image/pause
  rm -rf "$ctx"
  mkdir -p "$ctx/rootfs"
  install -m 0755 "$(bin_path pause)" "$ctx/rootfs/pause"
  printf 'FROM scratch\nCOPY rootfs/ /\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$ctx/Containerfile"
  bh bud --quiet --isolation chroot --layers=false -f "$ctx/Containerfile" -t "localhost/pause:$KUBE_VERSION" "$ctx" >/dev/null
}

start=$(now)
mkdir -p "$B"
build_causeway
((PAUSE == 0)) || build_pause
log "image causeway:$TAG built in $(since "$start")s"
if [[ -n $PUSH ]]; then
  t=$(now)
  # Plain HTTP only to a registry on loopback (the e2e node's).
  tls=true
  [[ $PUSH == 127.0.0.1:* || $PUSH == localhost:* ]] && tls=false
  bh push --quiet --tls-verify=$tls "localhost/causeway:$TAG" "docker://$PUSH/causeway:$TAG"
  ((PAUSE == 0)) || bh push --quiet --tls-verify=$tls "localhost/pause:$KUBE_VERSION" "docker://$PUSH/pause:$KUBE_VERSION"
  log "pushed to $PUSH in $(since "$t")s"
  # The registry holds them now: the local copies only take disk.
  bh rmi --all --force >/dev/null 2>&1 || true
fi
