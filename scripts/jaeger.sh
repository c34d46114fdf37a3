#!/usr/bin/env bash
# A real OTLP receiver for the traces test (cli/tests/traces.rs): Jaeger all-in-one, built
# from its Go module once into the cache. It takes OTLP/HTTP and answers
# `GET /api/traces/<trace id>` on its query port; the test starts it on free loopback
# ports with a config of its own (in-memory storage) and stops it by its PID.
#
#   scripts/jaeger.sh            build if missing, print the binary's path
#   scripts/jaeger.sh --check    exit 1 if it is not built
#   scripts/jaeger.sh path       print the binary's path (built or not)
#
# The binary lands in $CACHE/bin/jaeger-<version> (CACHE=${CAUSEWAY_CACHE:-~/.cache/causeway});
# GOPATH, GOMODCACHE and GOCACHE live under $CACHE/go, as for the e2e tools. A cold build
# (module download and compile) took 389 s here on two shared cores; later runs, none.
#
# Env: CAUSEWAY_CACHE, JAEGER_VERSION (the pin), GO (go binary; default: go on PATH, else
#      /usr/local/go/bin/go).
set -euo pipefail

JAEGER_VERSION=${JAEGER_VERSION:-v1.76.0}
CACHE=${CAUSEWAY_CACHE:-$HOME/.cache/causeway}
bin="$CACHE/bin/jaeger-$JAEGER_VERSION"

case "${1:-}" in
  path) echo "$bin"; exit 0 ;;
  --check)
    [[ -x $bin ]] && { echo "$bin"; exit 0; }
    echo "jaeger.sh: $bin not built (run scripts/jaeger.sh)" >&2
    exit 1 ;;
  "") ;;
  *) echo "usage: $0 [--check|path]" >&2; exit 2 ;;
esac

if [[ -x $bin ]]; then
  echo "$bin"
  exit 0
fi

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[[ -x $GO ]] || { echo "jaeger.sh: no go toolchain found (set GO=/path/to/go)" >&2; exit 1; }
export GOPATH=$CACHE/go
export GOMODCACHE=$CACHE/go/pkg/mod
export GOCACHE=$CACHE/go/build-cache
export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-buildvcs=false GO111MODULE=on

mkdir -p "$CACHE/bin"
# A scratch module that requires Jaeger as a tool: `go install pkg@version` refuses a
# module whose go.mod has replace directives; a requiring module ignores them.
work=$(mktemp -d "$CACHE/jaeger-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
start=$EPOCHREALTIME
echo "jaeger.sh: building github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION" >&2
(
  cd "$work"
  "$GO" mod init causeway-jaeger-build >/dev/null 2>&1
  "$GO" get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION" >&2
  "$GO" build -trimpath -ldflags "-s -w" -o "$work/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger >&2
)
mv -f "$work/jaeger" "$bin"
ln -sfn "${bin##*/}" "$CACHE/bin/jaeger"
awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "jaeger.sh: built in %.0f s\n", b - a }' >&2
echo "$bin"
