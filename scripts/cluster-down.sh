#!/usr/bin/env bash
# Stop the test cluster started by scripts/cluster-up.sh and remove its state (certificates,
# etcd data, the node's containers and images, logs) and its network namespace (with it every
# interface, route and iptables rule the cluster made). The binary and image caches
# (~/.cache/cascade) are kept. Only the processes recorded in $STATE/pids/ are stopped (each by
# its process group: cluster-up starts every component in its own session), and the shims of
# the node's own containerd. Afterwards nothing is mounted under $STATE. Idempotent.
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
    kwok | kube-scheduler | kube-controller-manager | kube-apiserver | etcd | node-*) ;;
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

# The real node: the kubelet first (it would restart what is stopped next), then every pod
# sandbox through the CRI (containerd tears down its network and removes its network
# namespace), then containerd and its shims, then the node's other processes.
NODE=$STATE/node
NETNS=
[[ -f $STATE/netns ]] && NETNS=/run/netns/$(cat "$STATE/netns")
if [[ -e $STATE/pids/node-kubelet.pid ]]; then stop node-kubelet; fi
ids=()
if [[ -e $STATE/pids/node-containerd.pid ]] && running "$STATE/pids/node-containerd.pid" && [[ -n $NETNS ]]; then
  crictl=(nsenter --net="$NETNS" -- "$STATE/bin/crictl" --runtime-endpoint "unix://$NODE/containerd.sock" --timeout 20s)
  mapfile -t pods < <("${crictl[@]}" pods -q 2>/dev/null || true)
  mapfile -t ids < <("${crictl[@]}" ps -a -q 2>/dev/null || true)
  ids+=("${pods[@]}")
  if [[ ${#pods[@]} -gt 0 ]]; then
    "${crictl[@]}" stopp "${pods[@]}" >/dev/null 2>&1 || log "crictl stopp failed"
    "${crictl[@]}" rmp --force "${pods[@]}" >/dev/null 2>&1 || log "crictl rmp failed"
    log "removed ${#pods[@]} pod sandbox(es)"
  fi
fi
# Shims outlive containerd by design (they are not in its process group); each task's shim
# pid is in containerd's state dir.
shims=()
for f in "$NODE"/containerd/state/io.containerd.runtime.v2.task/*/*/shim.pid; do
  [[ -e $f ]] && shims+=("$(cat "$f")")
done
[[ -e $STATE/pids/node-containerd.pid ]] && stop node-containerd
if [[ ${#shims[@]} -gt 0 ]]; then
  for pid in "${shims[@]}"; do kill -KILL "$pid" 2>/dev/null && log "killed leftover shim $pid" || true; done
fi
stop node-kube-proxy node-coredns node-metrics-server

stop kwok kube-scheduler kube-controller-manager
stop kube-apiserver
stop etcd

# Mounts under the state dir (containerd's overlay snapshots and sandbox /dev/shm, the
# kubelet's volumes), deepest first.
if [[ -d $NODE ]]; then
  mapfile -t mounts < <(findmnt -rn -o TARGET | awk -v d="$NODE/" 'index($0, d) == 1' | sort -r)
  for m in "${mounts[@]}"; do umount -l "$m" 2>/dev/null || log "could not unmount $m"; done
  [[ ${#mounts[@]} -gt 0 ]] && log "unmounted ${#mounts[@]} mount(s) under $NODE"
fi
if [[ -e $NODE/made-run-containerd ]]; then
  rmdir /run/containerd/s /run/containerd/fifo /run/containerd 2>/dev/null || true
fi
# The cluster's network namespace: its interfaces, routes and iptables rules go with it.
if [[ -n $NETNS && -e $NETNS ]]; then
  ip netns delete "$(basename "$NETNS")" 2>/dev/null || log "could not delete network namespace $NETNS"
fi
# The cgroups runc made for the node's containers (cgroupfs driver, cgroup v1: one tree per
# controller, /k8s.io/<id>, containerd's default parent when the kubelet gives none): rmdir
# removes only a cgroup without processes or children, so another containerd's stay.
for id in "${ids[@]}"; do rmdir /sys/fs/cgroup/*/k8s.io/"$id" 2>/dev/null || true; done
rmdir /sys/fs/cgroup/*/k8s.io 2>/dev/null || true

keep=()
[[ ${CLUSTER_DOWN_KEEP_LOGS:-} == 1 ]] && keep=(logs)
for entry in bin pids logs pki etcd run node ready ports.env netns kubeconfig \
  controller-manager.kubeconfig scheduler.kubeconfig kwok.kubeconfig kubelet.kubeconfig \
  kube-proxy.kubeconfig coredns.kubeconfig metrics-server.kubeconfig operator.env; do
  [[ " ${keep[*]} " == *" $entry "* ]] && continue
  rm -rf "${STATE:?}/$entry"
done
if [[ ${#keep[@]} -eq 0 ]]; then
  rm -f "$STATE/.cascade-cluster"
  rmdir "$STATE" 2>/dev/null || log "kept $STATE (holds files cluster-up did not make)"
fi
log "down"
