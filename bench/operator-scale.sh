#!/usr/bin/env bash
# Scenario 7, operator scale: apply N Bridges at once to the e2e stack and measure the time
# until all are Ready, the API requests made meanwhile, and the operator's RSS.
#
#   bench/operator-scale.sh [RUNS]      (run by `bench run` for scenario 7)
#
# Starts the e2e stack with its own E2E_DIR (default target/bench-e2e) unless one is up
# there, and stops it afterwards if it started it (e2e/controlplane/down.sh: by PID).
# Each run uses a fresh namespace, deleted afterwards. Prints one `key=value` line per
# figure and run (`run=<i> ready_s=… requests=… …`) on stdout; progress on stderr.
#
# Env: BENCH_E2E_DIR, BENCH_OPERATOR_BRIDGES (1000; 10000 for the issue-15 target),
#      BENCH_OPERATOR_TIMEOUT (s, 600), BENCH_OPERATOR_WAIT_DELETE (1: wait until each run's
#      namespace is gone and read the operator's RSS again before the next run; 0: delete
#      in the background as before issue 15), BENCH_OPERATOR_APPLY_JOBS (1: one
#      `kubectl apply` of every Bridge; J: the Bridges split into J files applied by J
#      kubectl processes at once, as a GitOps tool with parallel syncs does),
#      BENCH_OPERATOR_POLL_S (1: seconds between the harness's lists of the Bridges; each
#      list of 10,000 Bridges is ~10 MB the API server encodes on the same 2 cores).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${1:-1}
N=${BENCH_OPERATOR_BRIDGES:-1000}
TIMEOUT=${BENCH_OPERATOR_TIMEOUT:-600}
JOBS=${BENCH_OPERATOR_APPLY_JOBS:-1}
POLL_S=${BENCH_OPERATOR_POLL_S:-1}
export E2E_DIR=${BENCH_E2E_DIR:-$REPO/target/bench-e2e}
say() { printf '[operator-scale] %s\n' "$*" >&2; }

started=0
if [[ -f $E2E_DIR/env.sh ]] && (source "$E2E_DIR/env.sh" && kubectl get --raw /readyz >/dev/null 2>&1); then
  say "e2e stack already up in $E2E_DIR"
else
  say "starting the e2e stack in $E2E_DIR (e2e/up.sh)"
  started=1
  "$REPO/e2e/up.sh" >&2
fi
stop_stack() {
  if [[ $started == 1 ]]; then
    say "stopping the e2e stack it started"
    "$REPO/e2e/controlplane/down.sh" >&2 || true
  fi
}
trap stop_stack EXIT
# shellcheck source=/dev/null
source "$E2E_DIR/env.sh"

# Sum of apiserver_request_total, in total and for the causeway.dev group.
requests() {
  kubectl get --raw /metrics | awk '
    /^apiserver_request_total\{/ { total += $NF; if ($0 ~ /group="causeway.dev"/) cw += $NF }
    END { printf "%d %d\n", total, cw }'
}

# The operator's process: on the real node it runs in a container, whose processes this
# machine sees; its command is the image's /usr/local/bin/causeway-operator.
operator_pid() {
  local f pid
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}
    pid=${pid%/cmdline}
    # (stderr first: a process may end between the glob and the read)
    if tr '\0' ' ' 2>/dev/null <"$f" | grep -q '^/usr/local/bin/causeway-operator '; then
      echo "$pid"
      return
    fi
  done
}

# A counter from the operator's /metrics (its pod IP, the chart's metrics port): the pool
# renders and the status writes the operator made; empty when it cannot be read.
operator_metric() {
  local ip
  ip=$(kubectl get pods -n causeway-system -l app.kubernetes.io/component=operator \
    -o jsonpath='{.items[0].status.podIP}' 2>/dev/null) || return 0
  [[ -n $ip ]] || return 0
  local body
  body=$(curl -sf --max-time 5 "http://$ip:8080/metrics") || return 0
  # A counter not incremented yet has no series: 0.
  awk -v m="$1" 'index($0, m) == 1 { sum += $NF } END { printf "%d\n", sum }' <<<"$body"
}

rss_mib() { awk '/^VmRSS:/ { printf "%.1f\n", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo nan; }

for run in $(seq 0 $((RUNS - 1))); do
  ns=bench-scale-$run-$$
  dir=$E2E_DIR/bench/$ns
  mkdir -p "$dir"
  rm -f "$dir"/bridges-*.yaml
  j=0
  for i in $(seq -w 0 $((N - 1))); do
    printf -- '---\napiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {name: b%s, namespace: %s}\nspec:\n  destinations:\n  - name: out\n    url: "http://127.0.0.1:9/b%s"\n' "$i" "$ns" "$i" >>"$dir/bridges-$j.yaml"
    j=$(( (j + 1) % JOBS ))
  done
  kubectl create namespace "$ns" >/dev/null
  op=$(operator_pid)
  rss_before=$( [[ -n $op ]] && rss_mib "$op" || echo nan)
  read -r total0 cw0 < <(requests)
  renders0=$(operator_metric causeway_operator_renders_total)
  bwrites0=$(operator_metric 'causeway_operator_status_writes_total{controller="bridge"}')
  t0=$(date +%s.%N)
  pids=()
  for f in "$dir"/bridges-*.yaml; do
    kubectl apply --server-side -f "$f" >/dev/null &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  t_applied=$(date +%s.%N)
  polls=0
  ready=0
  rss_peak=$rss_before
  while :; do
    polls=$((polls + 1))
    ready=$(kubectl get bridges.causeway.dev -n "$ns" -o json |
      jq '[.items[] | select(any(.status.conditions[]?; .type == "Ready" and .status == "True"))] | length')
    if [[ -n $op ]]; then
      r=$(rss_mib "$op")
      rss_peak=$(awk -v a="$rss_peak" -v b="$r" 'BEGIN { if (a == "nan" || b + 0 > a + 0) print b; else print a }')
    fi
    [[ $ready -ge $N ]] && break
    if awk -v t0="$t0" -v now="$(date +%s.%N)" -v lim="$TIMEOUT" 'BEGIN { exit !(now - t0 > lim) }'; then
      say "run $run: only $ready of $N Ready after ${TIMEOUT}s"
      break
    fi
    sleep "$POLL_S"
  done
  t1=$(date +%s.%N)
  read -r total1 cw1 < <(requests)
  renders1=$(operator_metric causeway_operator_renders_total)
  bwrites1=$(operator_metric 'causeway_operator_status_writes_total{controller="bridge"}')
  renders=nan bwrites=nan
  [[ -n $renders0 && -n $renders1 ]] && renders=$((renders1 - renders0))
  [[ -n $bwrites0 && -n $bwrites1 ]] && bwrites=$((bwrites1 - bwrites0))
  rss_after=$( [[ -n $op ]] && rss_mib "$op" || echo nan)
  ready_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  apply_s=$(awk -v a="$t0" -v b="$t_applied" 'BEGIN { printf "%.2f", b - a }')
  # The harness's own requests: N applies plus one list per poll (and two metric reads).
  echo "run=$run bridges=$N ready=$ready ready_s=$ready_s apply_s=$apply_s requests=$((total1 - total0)) causeway_requests=$((cw1 - cw0)) own_requests=$((N + polls + 2)) polls=$polls operator_rss_before_mib=$rss_before operator_rss_peak_mib=$rss_peak operator_rss_after_mib=$rss_after renders=$renders bridge_status_writes=$bwrites"
  say "run $run: $ready/$N Ready after ${ready_s}s"
  if [[ ${BENCH_OPERATOR_WAIT_DELETE:-1} == 1 ]]; then
    # Each run alone: the namespace (and its Bridges, which drain) is gone before the
    # next run starts, and the operator's RSS is read once more then.
    kubectl delete namespace "$ns" --wait=true --timeout="${TIMEOUT}s" >/dev/null || true
    sleep 35 # one trim interval of the operator (src/memory.rs) and then some
    echo "run=$run operator_rss_deleted_mib=$( [[ -n $op ]] && rss_mib "$op" || echo nan)"
  else
    kubectl delete namespace "$ns" --wait=false >/dev/null || true
  fi
done
