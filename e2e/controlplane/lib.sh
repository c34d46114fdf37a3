# shellcheck shell=bash
# Shared by build.sh, up.sh and down.sh (and by later e2e steps that want to start
# processes that down.sh will stop). Source it; it sets no shell options of its own.

CP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$CP_DIR/../.." && pwd)
# shellcheck source=versions.env
source "$CP_DIR/versions.env"

CACHE=${CAUSEWAY_CACHE:-$HOME/.cache/causeway}
CACHE_BIN=$CACHE/bin
E2E_DIR=$(realpath -m "${E2E_DIR:-$REPO/.e2e}")

# Core control plane processes, in start order; down.sh stops them in reverse.
CP_PROCS=(etcd kube-apiserver kube-controller-manager)

log() { printf '[%s] %s\n' "${0##*/}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# now: seconds since the epoch with microseconds (bash 5).
now() { printf '%s' "$EPOCHREALTIME"; }
# since START: seconds elapsed, one decimal.
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

pin_of() {
  case $1 in
    kube-apiserver | kube-controller-manager | kube-scheduler | kubectl | kubelet | kube-proxy | pause) printf '%s' "$KUBE_VERSION" ;;
    coredns) printf '%s' "$COREDNS_VERSION" ;;
    etcd) printf '%s' "$ETCD_VERSION" ;;
    helm) printf '%s' "$HELM_VERSION" ;;
    *) return 1 ;;
  esac
}

# bin_path NAME: the cached binary for the pinned version of NAME.
# etcd: the Go build of the pin; if that is missing (or ETCD_SOURCE=debian) and
# build.sh fell back to Debian's etcd-server, that one.
bin_path() {
  local p
  p="$CACHE_BIN/$1-$(pin_of "$1")"
  if [[ $1 == etcd && ( ${ETCD_SOURCE:-go} == debian || ! -x $p ) && -x $CACHE_BIN/etcd-debian ]]; then
    p=$(readlink -f "$CACHE_BIN/etcd-debian")
  fi
  printf '%s' "$p"
}

# ---- processes: pid files under $E2E_DIR/pids, logs under $E2E_DIR/logs ----------

pid_file() { printf '%s/pids/%s.pid' "$E2E_DIR" "$1"; }
log_file() { printf '%s/logs/%s.log' "$E2E_DIR" "$1"; }

# pid_alive NAME: the recorded pid runs and is ours (its command line mentions
# $E2E_DIR, which every process started through proc_start must do), so a recycled
# pid is never taken for ours.
pid_alive() {
  local f pid
  f=$(pid_file "$1")
  [[ -s $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  # A zombie still has /proc/PID but no command line.
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$E2E_DIR"
}

# proc_start NAME CMD ARGS...: start in its own session, stdin closed, output to
# the log, record the pid. Some argument must mention $E2E_DIR (see pid_alive).
proc_start() {
  local name=$1
  shift
  mkdir -p "$E2E_DIR/pids" "$E2E_DIR/logs"
  # A non-interactive script has no job control, so the background child is not a
  # group leader and setsid execs in place: $! is the pid of the program itself.
  setsid "$@" </dev/null >>"$(log_file "$name")" 2>&1 &
  printf '%s\n' "$!" >"$(pid_file "$name")"
}

# proc_stop NAME [GRACE]: SIGTERM the recorded pid, SIGKILL after GRACE seconds,
# remove the pid file. Only ever signals the recorded pid.
proc_stop() {
  local name=$1 grace=${2:-${E2E_STOP_GRACE:-10}} f pid i
  f=$(pid_file "$name")
  [[ -e $f ]] || return 0
  if pid_alive "$name"; then
    pid=$(<"$f")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
      pid_alive "$name" || break
      sleep 0.1
    done
    if pid_alive "$name"; then
      log "$name (pid $pid) still running after ${grace}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do pid_alive "$name" || break; sleep 0.1; done
    fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$f"
}

# wait_for DESCRIPTION TIMEOUT_S PID_NAME CMD...: poll CMD every 0.2 s until it
# succeeds; fail early if process PID_NAME died, or after TIMEOUT_S.
wait_for() {
  local what=$1 timeout=$2 name=$3 start
  shift 3
  start=$(now)
  while ! "$@" >/dev/null 2>&1; do
    if [[ -n $name ]] && ! pid_alive "$name"; then
      log "$name exited while waiting for $what; last lines of $(log_file "$name"):"
      tail -n 30 "$(log_file "$name")" >&2 || true
      return 1
    fi
    if awk -v a="$start" -v b="$EPOCHREALTIME" -v t="$timeout" 'BEGIN { exit !(b - a > t) }'; then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}

# pod_pid_ours PIDFILE: the pid in a pod runner's pid file ($E2E_DIR/pods/<pod>/<c>.pid)
# runs and is ours: the runner puts CAUSEWAY_E2E_POD=<pod dir> in each process's
# environment, so a recycled pid is never taken for ours.
pod_pid_ours() {
  local f=$1 pid
  pid=$(<"$f") || return 1
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/environ ]] || return 1
  tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "CAUSEWAY_E2E_POD=${f%/*}"
}

# stop_pod_procs: the processes the e2e pod runner started for pods (operator, workers).
# The runner stops them itself on SIGTERM; this catches what a SIGKILLed runner left:
# SIGTERM to each one's process group, SIGKILL after 5 s. Only recorded, verified pids.
stop_pod_procs() {
  local f pid i any left=()
  for f in "$E2E_DIR"/pods/*/*.pid; do
    [[ -e $f ]] || continue
    if pod_pid_ours "$f"; then
      pid=$(<"$f")
      log "stopping pod process $pid (${f#"$E2E_DIR"/pods/})"
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      left+=("$f")
    else
      rm -f "$f"
    fi
  done
  ((${#left[@]})) || return 0
  for ((i = 0; i < 50; i++)); do
    any=0
    for f in "${left[@]}"; do pod_pid_ours "$f" && { any=1; break; }; done
    ((any)) || break
    sleep 0.1
  done
  for f in "${left[@]}"; do
    if pod_pid_ours "$f"; then
      pid=$(<"$f")
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}

# stop_all: stop every process recorded under $E2E_DIR/pids. Processes that later
# steps registered with proc_start (operator, pod runner, ...) go first, then whatever
# pod processes a killed pod runner left, then the control plane in reverse start order.
stop_all() {
  local f name i core=" ${CP_PROCS[*]} "
  # A real node first (e2e/node/down.sh): its kubelet must not restart containers
  # while the rest stops, and its network, mounts and cgroups go with it.
  if [[ -d $E2E_DIR/node ]]; then "$CP_DIR/../node/down.sh"; fi
  for f in "$E2E_DIR"/pids/*.pid; do
    [[ -e $f ]] || continue
    name=${f##*/}
    name=${name%.pid}
    [[ $core == *" $name "* ]] || proc_stop "$name"
  done
  stop_pod_procs
  for ((i = ${#CP_PROCS[@]} - 1; i >= 0; i--)); do
    proc_stop "${CP_PROCS[i]}"
  done
}
