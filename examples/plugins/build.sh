#!/usr/bin/env bash
# Builds every example plugin into examples/plugins/dist/<name>.wasm.
#
#   examples/plugins/build.sh              # everything (Rust workspace + JavaScript)
#   examples/plugins/build.sh --rust-only  # skip the JavaScript and Python plugins
#   examples/plugins/build.sh --imports    # also print each component's imports/exports
#
# Idempotent and incremental: cargo only rebuilds what changed, npm runs only when
# package-lock.json changed, and the JavaScript component is rebuilt only when its
# sources, WIT or lockfile are newer than it. Needs: rustup (or a toolchain that has
# the wasm32-wasip2 target), cargo, for JavaScript node >= 18 with npm, and for Python
# python3 with venv (componentize-py is installed into $CAUSEWAY_CACHE by this script).
#
# Honours CARGO_TARGET_DIR (default: examples/plugins/target) and CARGO_BUILD_JOBS.
# Set SKIP_JS=1 for the same effect as --rust-only; SKIP_PY=1 skips only Python.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

rust_only="${SKIP_JS:-}"
show_imports=""
for arg in "$@"; do
  case "$arg" in
    --rust-only) rust_only=1 ;;
    --imports) show_imports=1 ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

target_dir="${CARGO_TARGET_DIR:-$here/target}"
export CARGO_TARGET_DIR="$target_dir"
dist="$here/dist"
mkdir -p "$target_dir" "$dist"

# One build at a time per target dir (make plugins and a test harness may race).
exec 9>"$target_dir/.causeway-plugins.lock"
flock 9

log() { printf '==> %s\n' "$*" >&2; }

# --- Rust -----------------------------------------------------------------------------
if command -v rustup >/dev/null 2>&1; then
  if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    log "adding the wasm32-wasip2 target"
    rustup target add wasm32-wasip2
  fi
fi

# Reproducible components: the same sources give the same bytes (and sha256) on any
# machine. Panic messages embed source paths; map the machine-specific prefixes away.
# (With a --target build, RUSTFLAGS reach only the wasm artifacts, not build scripts or
# proc macros, so a target dir shared with the host workspace is not invalidated.)
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
export RUSTFLAGS="${RUSTFLAGS:-} --remap-path-prefix=$here=/causeway/examples/plugins --remap-path-prefix=$cargo_home=/cargo"

log "cargo build --release (target dir: $target_dir)"
# --locked: build exactly the committed Cargo.lock.
cargo build --release --locked --manifest-path "$here/Cargo.toml"

# Every cdylib crate of the workspace is a component; cargo names the file after the
# crate with '-' turned into '_'.
rust_plugins=(stripe-to-crm store-api loyalty inbox tagger fx-loop fx-membomb fx-forbidden fx-trap fx-sleep)
built=()
for name in "${rust_plugins[@]}"; do
  src="$target_dir/wasm32-wasip2/release/${name//-/_}.wasm"
  [[ -f "$src" ]] || { echo "build.sh: missing $src" >&2; exit 1; }
  built+=("$name=$src")
done

# --- JavaScript -----------------------------------------------------------------------
if [[ -z "$rust_only" ]]; then
  js="$here/js-enricher"
  command -v npm >/dev/null 2>&1 || {
    echo "build.sh: npm not found (install node >= 18, or use --rust-only)" >&2
    exit 1
  }
  stamp="$js/node_modules/.causeway-lock.sha256"
  lock_sum="$(sha256sum "$js/package-lock.json" | cut -d' ' -f1)"
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$lock_sum" ]]; then
    # Not `npm ci`: the registry this project builds from lacks a few other-platform
    # optional packages (darwin/win32/musl bindings of rolldown, jco-node-fs, qjs), so
    # npm left them out of package-lock.json and `npm ci` refuses the lock as "out of
    # sync". `npm install --no-save` installs exactly the locked versions and never
    # rewrites the lock.
    log "npm install --no-save (js-enricher, pinned by package-lock.json)"
    (cd "$js" && npm install --no-save --no-audit --no-fund --loglevel=error)
    echo "$lock_sum" >"$stamp"
  fi
  out="$js/build/js-enricher.wasm"
  # Rebuild when any input is newer than the output.
  if [[ ! -f "$out" ]] || [[ -n "$(find "$js/src" "$js/wit" "$js/package-lock.json" -newer "$out" -print -quit)" ]]; then
    log "componentize-js (js-enricher)"
    mkdir -p "$js/build"
    # componentize-js writes the component directly; write to a temp name so an
    # interrupted build never leaves a truncated file that looks up to date.
    (cd "$js" && node_modules/.bin/componentize-js \
      --wit wit --world-name proxy --out build/js-enricher.wasm.tmp src/enricher.js)
    mv "$js/build/js-enricher.wasm.tmp" "$out"
  fi
  built+=("js-enricher=$out")
fi

# --- Python ---------------------------------------------------------------------------
# componentize-py bundles CPython (compiled to WebAssembly) with the app into a
# wasi:http/proxy component. It is pinned and installed into a venv of its own under the
# cache, never into the system's Python.
if [[ -z "$rust_only" && -z "${SKIP_PY:-}" ]]; then
  py="$here/py-redactor"
  cpy_version=0.25.1
  venv="${CAUSEWAY_CACHE:-$HOME/.cache/causeway}/componentize-py-$cpy_version"
  cpy="$venv/bin/componentize-py"
  if [[ ! -x "$cpy" ]]; then
    command -v python3 >/dev/null 2>&1 || {
      echo "build.sh: python3 not found (install it, or set SKIP_PY=1)" >&2
      exit 1
    }
    log "installing componentize-py $cpy_version into $venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
      log "python3 -m venv failed: installing Debian's python3-venv"
      apt-get install -y -qq python3-venv >/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; }
      rm -rf "$venv"
      python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$cpy_version"
  fi
  out="$py/build/py-redactor.wasm"
  if [[ ! -f "$out" ]] || [[ -n "$(find "$py/src" "$py/wit/" -newer "$out" -print -quit)" ]]; then
    log "componentize-py (py-redactor)"
    mkdir -p "$py/build"
    (cd "$py" && "$cpy" -d wit -w proxy componentize -p src app -o build/py-redactor.wasm.tmp >/dev/null)
    mv "$py/build/py-redactor.wasm.tmp" "$out"
  fi
  built+=("py-redactor=$out")
fi

# --- dist/ ----------------------------------------------------------------------------
log "artifacts in $dist"
sums="$dist/SHA256SUMS"
: >"$sums.tmp"
for entry in "${built[@]}"; do
  name="${entry%%=*}"
  src="${entry#*=}"
  dest="$dist/$name.wasm"
  # Copy only when the content changed, so dist/ mtimes mean something.
  cmp -s "$src" "$dest" 2>/dev/null || cp "$src" "$dest"
  sum="$(sha256sum "$dest" | cut -d' ' -f1)"
  size="$(stat -c %s "$dest")"
  printf '%s  %s.wasm\n' "$sum" "$name" >>"$sums.tmp"
  printf '%-14s %9d bytes  sha256:%s\n' "$name" "$size" "$sum"
done
mv "$sums.tmp" "$sums"

if [[ -n "$show_imports" ]]; then
  jco="$here/js-enricher/node_modules/.bin/jco"
  if [[ -x "$jco" ]]; then
    for entry in "${built[@]}"; do
      name="${entry%%=*}"
      echo "--- $name"
      "$jco" wit "$dist/$name.wasm" | grep -E '^\s*(import|export) '
    done
  elif command -v wasm-tools >/dev/null 2>&1; then
    for entry in "${built[@]}"; do
      name="${entry%%=*}"
      echo "--- $name"
      wasm-tools component wit "$dist/$name.wasm" | grep -E '^\s*(import|export) '
    done
  else
    echo "build.sh: --imports needs jco (run without --rust-only once) or wasm-tools" >&2
  fi
fi
