#!/usr/bin/env bash
# The CloudEvents SDK for Python (the `cloudevents` package, installed with pip) for the tests that check the
# worker against an independent implementation: installed into a virtual environment in
# the cache directory when missing, so no third-party code lives in the repository.
#
#   scripts/cloudevents.sh install    create $CAUSEWAY_CACHE/cloudevents-py when missing;
#                                     prints the path of its python
set -euo pipefail

CACHE=${CAUSEWAY_CACHE:-$HOME/.cache/causeway}
VENV=$CACHE/cloudevents-py
PY=$VENV/bin/python

have() { "$PY" -c 'import cloudevents.http, cloudevents.conversion' 2>/dev/null; }

install() {
  if ! have; then
    command -v python3 >/dev/null || { echo "cloudevents.sh: needs python3" >&2; exit 1; }
    mkdir -p "$CACHE"
    # Tests run in parallel and each may ask first: one installs, the others wait for it.
    exec 9>"$CACHE/cloudevents-py.lock"
    flock 9
    if ! have; then
      echo "cloudevents.sh: installing the cloudevents SDK into $VENV" >&2
      # --clear: a venv left half-made by an interrupted install is made again.
      python3 -m venv --clear "$VENV" >&2
      "$PY" -m pip install --quiet --disable-pip-version-check 'cloudevents>=1.10,<2' >&2
    fi
    flock -u 9
  fi
  echo "$PY"
}

case "${1:-}" in
  install) install ;;
  *) echo "usage: $0 install" >&2; exit 2 ;;
esac
