#!/usr/bin/env bash
# The official AsyncAPI parser (@asyncapi/parser from npm) for the test that checks the
# documents `causeway asyncapi` generates. Installed into a cache directory at test time,
# so no third-party code lives in the repository.
#
#   scripts/asyncapi.sh install           install it into $CAUSEWAY_CACHE/asyncapi when missing;
#                                         prints the path of the checker script
#   scripts/asyncapi.sh check FILE...     parse each document; print every diagnostic of
#                                         severity error and exit 1 when there is one
set -euo pipefail

CACHE=${CAUSEWAY_CACHE:-$HOME/.cache/causeway}
DIR=$CACHE/asyncapi
CHECKER=$DIR/check.mjs

install() {
  mkdir -p "$DIR"
  # Tests run in parallel and each may ask first: one installs, the others wait for it
  # (a parser directory that exists may still be half-written by another install).
  exec 9>"$CACHE/asyncapi.lock"
  flock 9
  if [ ! -d "$DIR/node_modules/@asyncapi/parser" ]; then
    command -v npm >/dev/null || { echo "asyncapi.sh: needs node and npm" >&2; exit 1; }
    echo "asyncapi.sh: installing @asyncapi/parser into $DIR" >&2
    mkdir -p "$DIR"
    npm install --silent --no-audit --no-fund --prefix "$DIR" @asyncapi/parser@3 >&2
  fi
  # Written each time: the checker is ours, only the parser comes from npm.
  cat >"$CHECKER.tmp" <<'JS'
import { readFileSync } from 'node:fs';
import { Parser } from '@asyncapi/parser';

// Severity 0 is an error in Spectral's scale (1 warning, 2 info, 3 hint).
const parser = new Parser();
let failed = false;
for (const file of process.argv.slice(2)) {
  const { document, diagnostics } = await parser.parse(readFileSync(file, 'utf8'), { source: file });
  const errors = diagnostics.filter((d) => d.severity === 0);
  for (const d of errors) {
    console.log(`${file}: error: ${d.code}: ${d.message} at ${JSON.stringify(d.path)}`);
  }
  if (errors.length > 0 || !document) {
    failed = true;
  } else {
    console.log(`${file}: ok (${document.channels().length} channels, ${diagnostics.length} diagnostics below error)`);
  }
}
process.exit(failed ? 1 : 0);
JS
  mv "$CHECKER.tmp" "$CHECKER"
  flock -u 9
  echo "$CHECKER"
}

case "${1:-}" in
  install) install ;;
  check)
    shift
    install >/dev/null
    exec node "$CHECKER" "$@"
    ;;
  *) echo "usage: $0 install | check FILE..." >&2; exit 2 ;;
esac
