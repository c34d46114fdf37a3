#!/usr/bin/env bash
# Installs a real OCI registry (Debian's `docker-registry`, the CNCF distribution
# registry v2) for the causeway-plugins OCI tests, without installing the package
# system-wide (installing it would start a system service): the .deb is downloaded
# with apt-get and unpacked with dpkg-deb into ~/.cache/causeway/registry.
#
#   runtime/plugins/tests/registry.sh          # install if missing, print the binary path
#   runtime/plugins/tests/registry.sh --check  # exit 1 if it is not installed
#
# The tests look for the binary at $CAUSEWAY_REGISTRY_BIN, else at
# ~/.cache/causeway/registry/usr/bin/docker-registry. They run it on 127.0.0.1 only,
# with storage in a temporary directory.
set -euo pipefail

root="${CAUSEWAY_CACHE:-$HOME/.cache/causeway}/registry"
bin="$root/usr/bin/docker-registry"

if [[ "${1:-}" == "--check" ]]; then
  [[ -x "$bin" ]] && { echo "$bin"; exit 0; }
  echo "registry.sh: $bin not installed (run runtime/plugins/tests/registry.sh)" >&2
  exit 1
fi

if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi

command -v apt-get >/dev/null || { echo "registry.sh: needs apt-get (Debian/Ubuntu)" >&2; exit 1; }
command -v dpkg-deb >/dev/null || { echo "registry.sh: needs dpkg-deb" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download docker-registry >/dev/null 2>&1; then
  # The package lists may be missing or stale in a fresh container.
  apt-get update >/dev/null
  apt-get download docker-registry >/dev/null
fi
deb="$(ls docker-registry_*.deb)"
mkdir -p "$root"
dpkg-deb -x "$deb" "$root"
[[ -x "$bin" ]] || { echo "registry.sh: $deb did not contain usr/bin/docker-registry" >&2; exit 1; }
echo "$bin"
