#!/usr/bin/env bash
# Installs the baselines `make bench` runs, into $CAUSEWAY_CACHE (default ~/.cache/causeway).
# Idempotent: what is there already is kept.
#
#   nginx     Debian's `nginx` package, downloaded with `apt-get download` and unpacked with
#             `dpkg-deb -x` into $CAUSEWAY_CACHE/nginx: no system service is installed or
#             started. The benchmark runs it with its own configuration, pid and logs.
#   wasmtime  `cargo install wasmtime-cli` at the version the worker links, into
#             $CAUSEWAY_CACHE/wasmtime. Cold, this takes long (38 min on a 2-core machine).
#             BENCH_NO_WASMTIME=1 skips it: scenario 3 then reports no `wasmtime serve` floor
#             (it says so) and every other figure is unchanged.
set -euo pipefail

CACHE=${CAUSEWAY_CACHE:-$HOME/.cache/causeway}
WASMTIME_VERSION=48.0.8

say() { printf 'bench/setup.sh: %s\n' "$*" >&2; }

# ---- nginx ------------------------------------------------------------------------
NGINX=$CACHE/nginx/usr/sbin/nginx
if [[ -x $NGINX ]] && "$NGINX" -v >/dev/null 2>&1; then
  :
else
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null ||
    { say "needs apt-get and dpkg-deb (Debian or Ubuntu) to fetch nginx"; exit 1; }
  debs=$CACHE/debs/nginx
  mkdir -p "$debs"
  say "downloading Debian's nginx package into $debs"
  if ! (cd "$debs" && apt-get download nginx 2>/dev/null); then
    say "apt-get download failed; refreshing the package lists (apt-get update) and retrying"
    apt-get update -qq
    (cd "$debs" && apt-get download nginx)
  fi
  deb=$(ls -t "$debs"/nginx_*.deb | head -1)
  mkdir -p "$CACHE/nginx"
  dpkg-deb -x "$deb" "$CACHE/nginx"
  if ! "$NGINX" -v 2>/dev/null; then
    say "nginx was unpacked but does not run; missing libraries:"
    ldd "$NGINX" | grep 'not found' >&2 || true
    say "install them (for example: apt-get install libpcre2-8-0 libssl3 zlib1g libcrypt1)"
    exit 1
  fi
  say "nginx ready: $("$NGINX" -v 2>&1)"
fi

# ---- wasmtime serve ---------------------------------------------------------------
WASMTIME=$CACHE/wasmtime/bin/wasmtime
if [[ ${BENCH_NO_WASMTIME:-0} == 1 ]]; then
  say "BENCH_NO_WASMTIME=1: wasmtime-cli not installed; scenario 3 runs without its floor"
elif [[ -x $WASMTIME ]] && "$WASMTIME" --version 2>/dev/null | grep -q " $WASMTIME_VERSION"; then
  :
else
  say "installing wasmtime-cli $WASMTIME_VERSION into $CACHE/wasmtime with cargo install."
  say "This compiles wasmtime from source: it takes long (38 min cold on a 2-core machine)."
  cargo install wasmtime-cli --version "$WASMTIME_VERSION" --locked --root "$CACHE/wasmtime"
  say "wasmtime ready: $("$WASMTIME" --version)"
fi
