#!/usr/bin/env bash
# What runs on the test control plane: the CASCADE_CLUSTER_AFTER_UP hook of `make cluster-up`
# and of the cluster tests (the same code). It applies the LiveStream CRD, starts a Redis for
# the operator and the operator itself (`cascade-operator`, against $KUBECONFIG, watching all
# namespaces), and returns once the operator's liveness endpoint answers.
#
# Idempotent: what already runs is kept, so after stopping the operator (its pid is in
# $CASCADE_CLUSTER_DIR/pids/operator.pid) running this again starts just the operator, with the
# same ports. Writes $CASCADE_CLUSTER_DIR/operator.env (REDIS_URL, OPERATOR_LIVENESS_URL,
# OPERATOR_METRICS_URL). scripts/cluster-down.sh stops both processes.
#
# Environment: KUBECONFIG and CASCADE_CLUSTER_DIR (cluster-up.sh sets both); the operator's
# own settings (MAX_CONCURRENT_STREAMS, CASCADE_STATUS_INTERVAL_SECONDS, ... see
# operator/cascade/operator/settings.py) pass through; CASCADE_OPERATOR picks the program
# (default .venv/bin/cascade-operator).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${CASCADE_CLUSTER_DIR:?set by cluster-up.sh}
: "${KUBECONFIG:?set by cluster-up.sh}"
OPERATOR=${CASCADE_OPERATOR:-$ROOT/.venv/bin/cascade-operator}
TIMEOUT=${CLUSTER_UP_TIMEOUT:-120}
log() { echo "cluster-operator: $*" >&2; }
# shellcheck source=scripts/cluster-lib.sh
source "$ROOT/scripts/cluster-lib.sh"
mkdir -p "$STATE/pids" "$STATE/logs"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Redis is stopped and restarted by tests: a port below the ephemeral range, so a client
# reconnecting while it is down can never connect to itself (a TCP self-connect).
free_server_port() {
  python3 - <<'PY'
import random, socket
for port in random.sample(range(20000, 32768), 200):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        print(port)
        break
PY
}

# ---- the CRD --------------------------------------------------------------------------------
kubectl apply -f "$ROOT/crds/livestreams.cascade.dev.yaml" >&2
kubectl wait --for=condition=Established crd/livestreams.cascade.dev --timeout="${TIMEOUT}s" >&2

# ---- Redis ----------------------------------------------------------------------------------
ENV_FILE=$STATE/operator.env
if [[ -f $ENV_FILE ]]; then
  # shellcheck disable=SC1090
  source "$ENV_FILE"
fi
if ! running "$STATE/pids/redis.pid" 2>/dev/null; then
  # The same port as before when restarted: a running operator keeps its REDIS_URL.
  REDIS_PORT=${REDIS_URL:+${REDIS_URL##*:}}
  REDIS_PORT=${REDIS_PORT%%/*}
  REDIS_PORT=${REDIS_PORT:-$(free_server_port)}
  setsid redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    >"$STATE/logs/redis.log" 2>&1 </dev/null &
  record_pid redis $!
  REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
  deadline=$((SECONDS + TIMEOUT))
  until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { log "FAILED: Redis did not start"; tail -n 20 "$STATE/logs/redis.log" >&2; exit 1; }
    sleep 0.1
  done
fi

# ---- the operator ---------------------------------------------------------------------------
OPERATOR_LIVENESS_PORT=${OPERATOR_LIVENESS_PORT:-$(free_port)}
OPERATOR_METRICS_PORT=${OPERATOR_METRICS_PORT:-$(free_port)}
cat >"$ENV_FILE" <<ENV
REDIS_URL=$REDIS_URL
OPERATOR_LIVENESS_PORT=$OPERATOR_LIVENESS_PORT
OPERATOR_METRICS_PORT=$OPERATOR_METRICS_PORT
OPERATOR_LIVENESS_URL=http://127.0.0.1:$OPERATOR_LIVENESS_PORT/healthz
OPERATOR_METRICS_URL=http://127.0.0.1:$OPERATOR_METRICS_PORT/metrics
ENV
if ! running "$STATE/pids/operator.pid" 2>/dev/null; then
  REDIS_URL=$REDIS_URL CASCADE_BIND_HOST=127.0.0.1 \
    CASCADE_LIVENESS_PORT=$OPERATOR_LIVENESS_PORT CASCADE_METRICS_PORT=$OPERATOR_METRICS_PORT \
    CASCADE_PLAYBACK_BASE_URL=${CASCADE_PLAYBACK_BASE_URL:-http://127.0.0.1:8080} \
    setsid "$OPERATOR" >>"$STATE/logs/operator.log" 2>&1 </dev/null &
  record_pid operator $!
  log "operator started (pid $!), log: $STATE/logs/operator.log"
fi
deadline=$((SECONDS + TIMEOUT))
until curl -sf "http://127.0.0.1:$OPERATOR_LIVENESS_PORT/healthz" >/dev/null 2>&1; do
  if ! running "$STATE/pids/operator.pid"; then
    log "FAILED: the operator exited"; tail -n 30 "$STATE/logs/operator.log" >&2; exit 1
  fi
  ((SECONDS < deadline)) || { log "FAILED: no liveness answer in ${TIMEOUT}s"; tail -n 30 "$STATE/logs/operator.log" >&2; exit 1; }
  sleep 0.2
done
log "operator live: http://127.0.0.1:$OPERATOR_LIVENESS_PORT/healthz, metrics :$OPERATOR_METRICS_PORT"
