#!/usr/bin/env bash
# Stop the test control plane started by scripts/cluster-up.sh and remove its state
# (certificates, etcd data, logs). The binary cache (~/.cache/cascade) is kept.
# Only the processes recorded in $STATE/pids/ are stopped (each by its process group:
# cluster-up starts every component in its own session). Idempotent.
#
# Environment: CASCADE_CLUSTER_DIR (default <repo>/.cache/cluster), as for cluster-up.sh;
#   CLUSTER_DOWN_KEEP_LOGS=1 keeps $STATE/logs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${CASCADE_CLUSTER_DIR:-$ROOT/.cache/cluster}
log() { echo "cluster-down: $*" >&2; }
# shellcheck source=scripts/cluster-lib.sh
source "$ROOT/scripts/cluster-lib.sh"

if [[ ! -d $STATE ]]; then
  log "nothing to do ($STATE does not exist)"
  exit 0
fi
if [[ ! -e $STATE/.cascade-cluster ]]; then
  log "$STATE is not a cluster state dir (no .cascade-cluster marker): leaving it alone"
  exit 1
fi

# Stop in stages, each stage at once: what runs on the cluster (the operator, or whatever
# CASCADE_CLUSTER_AFTER_UP started and recorded in pids/), then the API server's clients, then
# the API server, then etcd.
extras=()
for f in "$STATE"/pids/*.pid; do
  [[ -e $f ]] || continue
  case $(basename "$f" .pid) in
    kwok | kube-scheduler | kube-controller-manager | kube-apiserver | etcd) ;;
    *) extras+=("$(basename "$f" .pid)") ;;
  esac
done

# alive PGID: some process of the group is alive (zombies waiting for a reaper do not count)
alive() { ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ {f = 1} END {exit !f}'; }
stop() { # NAME...: SIGTERM their process groups, SIGKILL what is left after 10s
  local name f pid pids=() names=()
  for name in "$@"; do
    f=$STATE/pids/$name.pid
    [[ -e $f ]] || continue
    if running "$f"; then
      pid=$(cut -d' ' -f1 "$f")
      kill -TERM -- "-$pid" 2>/dev/null || true
      pids+=("$pid") names+=("$name")
    fi
  done
  local i
  for _ in $(seq 100); do
    for i in "${!pids[@]}"; do alive "${pids[$i]}" || unset "pids[$i]"; done
    [[ ${#pids[@]} -eq 0 ]] && break
    sleep 0.1
  done
  for i in "${!pids[@]}"; do
    log "${names[$i]} (pgid ${pids[$i]}) did not stop in 10s: SIGKILL"
    kill -KILL -- "-${pids[$i]}" 2>/dev/null || true
  done
  [[ ${#names[@]} -gt 0 ]] && log "stopped ${names[*]}"
  for name in "$@"; do rm -f "$STATE/pids/$name.pid"; done
}
[[ ${#extras[@]} -gt 0 ]] && stop "${extras[@]}"
stop kwok kube-scheduler kube-controller-manager
stop kube-apiserver
stop etcd

keep=()
[[ ${CLUSTER_DOWN_KEEP_LOGS:-} == 1 ]] && keep=(logs)
for entry in bin pids logs pki etcd run ready ports.env kubeconfig \
  controller-manager.kubeconfig scheduler.kubeconfig kwok.kubeconfig; do
  [[ " ${keep[*]} " == *" $entry "* ]] && continue
  rm -rf "${STATE:?}/$entry"
done
if [[ ${#keep[@]} -eq 0 ]]; then
  rm -f "$STATE/.cascade-cluster"
  rmdir "$STATE" 2>/dev/null || log "kept $STATE (holds files cluster-up did not make)"
fi
log "down"
