#!/usr/bin/env bash
# Run a command inside the test cluster's network namespace, where the cluster and its
# clients live (scripts/cluster-up.sh), with KUBECONFIG and the cluster's kubectl and helm on
# PATH: scripts/cluster-exec.sh kubectl get pods -A; with no command, a shell.
# Environment: CASCADE_CLUSTER_DIR (default <repo>/.cache/cluster), as for cluster-up.sh.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${CASCADE_CLUSTER_DIR:-$ROOT/.cache/cluster}
[[ -f $STATE/netns && -f $STATE/kubeconfig ]] ||
  { echo "cluster-exec: no cluster in $STATE (make cluster-up)" >&2; exit 1; }
[[ $# -gt 0 ]] || set -- "${SHELL:-bash}"
KUBECONFIG=$STATE/kubeconfig PATH=$STATE/bin:$PATH \
  exec nsenter --net="/run/netns/$(cat "$STATE/netns")" -- "$@"
