#!/usr/bin/env bash
# A throwaway PostgreSQL for tests and benchmarks: a server of its own in a directory, on a
# loopback port, with a password (scram-sha-256, as users run it), stopped by its PID.
#
#   scripts/postgres.sh install            install Debian's postgresql when it is missing
#   scripts/postgres.sh start DIR PORT     start one; prints its URL on stdout
#   scripts/postgres.sh stop DIR           stop it (the postmaster's PID, from DIR)
#   scripts/postgres.sh restart DIR        start a stopped one again
#   scripts/postgres.sh tls DIR            TLS only, with a CA of its own (prints its path)
#   scripts/postgres.sh url DIR            print the URL of a running one
#
# initdb refuses to run as root, so as root the server runs as the `postgres` user the
# package creates. pg_stat_statements is loaded, for the benchmarks' statement counts.
set -euo pipefail

bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

install() {
  if bindir >/dev/null; then return 0; fi
  echo "postgres.sh: installing postgresql" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql postgresql-contrib >&2
  bindir >/dev/null
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start() {
  local dir=$1 port=$2
  install
  local bin
  bin=$(bindir)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  local pass
  pass=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 20)
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
  chmod 700 "$dir"
  printf '%s\n' "$pass" >"$dir/.pw"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir/.pw"; fi
  as_owner "$bin/initdb" -D "$dir/data" -U causeway --auth=scram-sha-256 --pwfile="$dir/.pw" \
    -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
  cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
shared_preload_libraries = 'pg_stat_statements'
max_connections = 200
log_min_messages = warning
EOF
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
    || { cat "$dir/server.log" >&2; exit 1; }
  PGPASSWORD=$pass "$bin/psql" -q -h 127.0.0.1 -p "$port" -U causeway -d postgres \
    -c "CREATE DATABASE causeway" >/dev/null
  printf 'postgres://causeway:%s@127.0.0.1:%s/causeway\n' "$pass" "$port" >"$dir/url"
  cat "$dir/url"
}

# TLS only: a CA of its own (DIR/ca.pem), a server certificate for 127.0.0.1 and
# localhost, `hostssl` in pg_hba.conf (a plain connection is refused), then a restart.
tls() {
  local dir=$1
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=causeway test CA" \
      -keyout ca.key -out ca.pem >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
      -keyout server.key -out server.csr >/dev/null 2>&1
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -extfile san.ext -out server.pem >/dev/null 2>&1
    cp server.pem server.key data/
    chmod 600 data/server.key
    if [ "$(id -u)" = 0 ]; then chown postgres: data/server.pem data/server.key; fi
    printf "ssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\n" \
      >>data/postgresql.conf
    sed -i 's/^host /hostssl /' data/pg_hba.conf
  )
  stop "$dir"
  restart "$dir"
  echo "$dir/ca.pem"
}

# Start again a server stopped with `stop` (same data, port and password).
restart() {
  local dir=$1
  local bin
  bin=$(bindir)
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
    || { cat "$dir/server.log" >&2; exit 1; }
}

stop() {
  local dir=$1
  [ -f "$dir/data/postmaster.pid" ] || return 0
  local pid
  pid=$(head -1 "$dir/data/postmaster.pid")
  # SIGINT is PostgreSQL's fast shutdown; wait for the PID to go.
  kill -INT "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

case "${1:-}" in
  install) install ;;
  start) start "$2" "$3" ;;
  stop) stop "$2" ;;
  restart) restart "$2" ;;
  tls) tls "$2" ;;
  url) cat "$2/url" ;;
  *) echo "usage: $0 install | start DIR PORT | stop DIR | restart DIR | tls DIR | url DIR" >&2; exit 2 ;;
esac
