#!/usr/bin/env bash
# bench/paired.sh REF [ROUNDS] [SCENARIOS]: run `bench run --only SCENARIOS` (default
# 1,2,3) with this tree's worker and with the worker of commit REF, alternating, ROUNDS
# times each (default 2), so both see the same machine at nearly the same moment. Each
# report is kept under $BENCH_PAIRED_OUT (default target/bench-paired/); the Targets rows
# of every report are printed side by side at the end.
#
# The baseline binary is built from a detached worktree of REF into its own target dir
# under $CAUSEWAY_CACHE (never this tree's: two trees must not share a target dir).
set -euo pipefail
ref=${1:?usage: bench/paired.sh REF [ROUNDS] [SCENARIOS]}
rounds=${2:-2}
only=${3:-1,2,3}
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${CAUSEWAY_CACHE:-$HOME/.cache/causeway}
target=${CARGO_TARGET_DIR:-$repo/target}
out=${BENCH_PAIRED_OUT:-$target/bench-paired}
rev=$(git -C "$repo" rev-parse --short=12 "$ref")
base_bin=$cache/bench-ref/$rev/causeway

if [[ ! -x $base_bin ]]; then
  wt=$(mktemp -d)
  trap 'git -C "$repo" worktree remove --force "$wt" >/dev/null 2>&1 || true' EXIT
  git -C "$repo" worktree add --detach "$wt" "$rev" >/dev/null
  echo "paired: building the worker of $rev" >&2
  (cd "$wt" && CARGO_TARGET_DIR=$cache/target-ref cargo build --release --quiet --bin causeway)
  mkdir -p "$(dirname "$base_bin")"
  cp "$cache/target-ref/release/causeway" "$base_bin"
fi

make -C "$repo" --quiet plugins >/dev/null
# setup.sh installs nginx and (for scenario 3) wasmtime-cli, which takes long cold;
# BENCH_SKIP_SETUP=1 uses what the cache already holds.
[[ ${BENCH_SKIP_SETUP:-0} == 1 ]] || "$repo/bench/setup.sh"
# Two builds: `--bin causeway` would filter causeway-bench's binaries out of one build.
(cd "$repo" && cargo build --release --quiet -p causeway --bin causeway &&
  cargo build --release --quiet -p causeway-bench)
head=$(git -C "$repo" rev-parse --short=12 HEAD)
mkdir -p "$out"
run_head() {
  echo "paired: round $1/$rounds, this tree ($head)" >&2
  (cd "$repo" && env -u BENCH_CAUSEWAY "$target/release/bench" run --only "$only" \
    --out "$out/head-$1.md" --work "$out/work")
}
run_base() {
  echo "paired: round $1/$rounds, $rev" >&2
  (cd "$repo" && BENCH_CAUSEWAY=$base_bin "$target/release/bench" run --only "$only" \
    --out "$out/base-$1.md" --work "$out/work")
}
# The order alternates: on this machine the side that ran second in a round measured about
# a fifth less worker CPU per event in forward (2026-12-03: the same two binaries, three
# rounds in each order; bench/notes.md).
for ((i = 1; i <= rounds; i++)); do
  if ((i % 2)); then
    run_head "$i"
    run_base "$i"
  else
    run_base "$i"
    run_head "$i"
  fi
done

echo
echo "Targets rows, this tree ($head) against $rev, $rounds rounds each:"
for ((i = 1; i <= rounds; i++)); do
  for who in head base; do
    echo "-- $who round $i"
    awk '/^## Targets/ { on = 1; next } /^## / { on = 0 } on && /^\| [A-Z]/ && !/^\| target/' \
      "$out/$who-$i.md"
  done
done
