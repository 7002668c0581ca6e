#!/usr/bin/env bash
# Bring up the test control plane on loopback and print `KUBECONFIG=<path>` as the last line.
#
#   etcd -> kube-apiserver -> kube-controller-manager, kube-scheduler -> kwok (fake nodes)
#
# Binaries come from scripts/cluster-build.sh (built from Go modules once, then cached).
# Certificates are made here with openssl; every port is a free loopback port chosen at
# set-up (recorded in $STATE/ports.env), so several clusters can run side by side (one per
# state dir). Components run in the background in their own sessions; their pids are in
# $STATE/pids/, their logs in $STATE/logs/. scripts/cluster-down.sh stops them.
#
# Idempotent: when the cluster in $STATE is already up, it only prints the KUBECONFIG line;
# when it is half up (a component died), it is torn down and made again.
#
# Environment:
#   CASCADE_CLUSTER_DIR       state dir (default <repo>/.cache/cluster)
#   CASCADE_CACHE             binary cache (default ~/.cache/cascade), see cluster-build.sh
#   CASCADE_CLUSTER_AFTER_UP  the hook for applying the CRD and starting the operator: a shell
#                             command run from the repo root once the control plane is ready,
#                             with KUBECONFIG, CASCADE_CLUSTER_DIR and PATH (kubectl) set; its
#                             output goes to stderr. What it starts in the background it
#                             records in $CASCADE_CLUSTER_DIR/pids/ (see cluster-lib.sh) for
#                             cluster-down.sh to stop. A failing hook fails cluster-up; the
#                             control plane stays up for a look, and the next cluster-up
#                             starts over.
#   CLUSTER_UP_TIMEOUT        seconds to wait for each readiness step (default 120)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${CASCADE_CLUSTER_DIR:-$ROOT/.cache/cluster}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
TIMEOUT=${CLUSTER_UP_TIMEOUT:-120}
KUBECONFIG_PATH=$STATE/kubeconfig
SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1 # the `kubernetes` Service: first address of SERVICE_CIDR

log() { echo "cluster-up: $*" >&2; }
# shellcheck source=scripts/cluster-lib.sh
source "$ROOT/scripts/cluster-lib.sh"

# Already up? Every recorded component alive and the API server ready.
healthy() {
  [[ -f $STATE/ready && -f $KUBECONFIG_PATH ]] || return 1
  local f
  for f in "$STATE"/pids/*.pid; do
    running "$f" || return 1
  done
  "$STATE/bin/kubectl" --kubeconfig "$KUBECONFIG_PATH" get --raw /readyz >/dev/null 2>&1
}
if healthy; then
  echo "KUBECONFIG=$KUBECONFIG_PATH"
  exit 0
fi
if [[ -d $STATE/pids || -f $STATE/kubeconfig ]]; then
  log "found a stale or half-started cluster in $STATE: tearing it down"
  CASCADE_CLUSTER_DIR=$STATE "$ROOT/scripts/cluster-down.sh" >&2
  mkdir -p "$STATE"
fi

START=$SECONDS
BIN=$("$ROOT/scripts/cluster-build.sh" | tail -n 1)
log "binaries ready in $((SECONDS - START))s ($BIN)"

mkdir -p "$STATE"/{bin,pids,logs,pki,run}
mkdir -m 700 "$STATE/etcd"
touch "$STATE/.cascade-cluster" # cluster-down.sh removes only state dirs marked so
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kwok kubectl helm; do
  ln -sfn "$BIN/$b" "$STATE/bin/$b"
done
KUBECTL=("$STATE/bin/kubectl" --kubeconfig "$KUBECONFIG_PATH")

# ---- ports ---------------------------------------------------------------------------------
# Bind all at once to port 0 so the kernel hands out distinct free ports.
read -r ETCD_PORT ETCD_PEER_PORT API_PORT KCM_PORT SCHED_PORT < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
)
cat >"$STATE/ports.env" <<EOF
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
API_PORT=$API_PORT
KCM_PORT=$KCM_PORT
SCHED_PORT=$SCHED_PORT
EOF

# ---- certificates --------------------------------------------------------------------------
PKI=$STATE/pki
(
  cd "$PKI"
  umask 077
  ossl() { openssl "$@" 2>/dev/null; }
  ossl ecparam -name prime256v1 -genkey -noout -out ca.key
  ossl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=cascade-test-ca" -out ca.crt \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  # cert NAME SUBJECT EXTENDED-KEY-USAGE [SUBJECT-ALT-NAMES]
  cert() {
    local ext="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=$3"
    [[ -n ${4:-} ]] && ext+=$'\n'"subjectAltName=$4"
    ossl ecparam -name prime256v1 -genkey -noout -out "$1.key"
    ossl req -new -key "$1.key" -subj "$2" -out "$1.csr"
    ossl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 3650 \
      -extfile <(echo "$ext") -out "$1.crt"
    rm -f "$1.csr"
  }
  cert apiserver "/CN=kube-apiserver" serverAuth \
    "IP:127.0.0.1,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert admin "/O=system:masters/CN=cascade-admin" clientAuth
  cert controller-manager "/CN=system:kube-controller-manager" clientAuth
  cert scheduler "/CN=system:kube-scheduler" clientAuth
  # kwok writes the status of nodes and pods it fakes and renews their leases.
  cert kwok "/O=system:masters/CN=kwok" clientAuth
  # The front proxy: the API server's client identity towards aggregated API servers
  # (metrics-server and the like), with a CA of its own as Kubernetes recommends.
  ossl ecparam -name prime256v1 -genkey -noout -out front-proxy-ca.key
  ossl req -x509 -new -key front-proxy-ca.key -sha256 -days 3650 -subj "/CN=cascade-test-front-proxy-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out front-proxy-ca.crt
  ossl ecparam -name prime256v1 -genkey -noout -out front-proxy-client.key
  ossl req -new -key front-proxy-client.key -subj "/CN=front-proxy-client" -out front-proxy-client.csr
  ossl x509 -req -in front-proxy-client.csr -CA front-proxy-ca.crt -CAkey front-proxy-ca.key \
    -CAcreateserial -sha256 -days 3650 -out front-proxy-client.crt \
    -extfile <(printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n')
  rm -f front-proxy-client.csr
  # Service-account token signing key pair.
  ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
  ossl pkey -in sa.key -pubout -out sa.pub
)

kubeconfig() { # NAME CERT-NAME
  cat >"$STATE/$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: cascade-test
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$2.crt")
    client-key-data: $(base64 -w0 "$PKI/$2.key")
contexts:
- name: cascade-test
  context: {cluster: cascade-test, user: $2}
current-context: cascade-test
EOF
  chmod 600 "$STATE/$1"
}
kubeconfig kubeconfig admin
kubeconfig controller-manager.kubeconfig controller-manager
kubeconfig scheduler.kubeconfig scheduler
kubeconfig kwok.kubeconfig kwok

# ---- processes -----------------------------------------------------------------------------
# start NAME ARGS...: run in its own session (pid = process group id), output to logs/NAME.log
start() {
  local name=$1; shift
  setsid "$STATE/bin/$name" "$@" >"$STATE/logs/$name.log" 2>&1 </dev/null &
  record_pid "$name" $!
}

fail() {
  trap - ERR
  local f
  for f in "$STATE"/logs/*.log; do
    [[ -e $f ]] || continue
    echo "---- tail of $f" >&2
    tail -n 15 "$f" >&2
  done
  CLUSTER_DOWN_KEEP_LOGS=1 CASCADE_CLUSTER_DIR=$STATE "$ROOT/scripts/cluster-down.sh" >&2 || true
  log "FAILED: $*"
  log "logs kept in $STATE/logs (scripts/cluster-down.sh removes them)"
  exit 1
}
trap 'fail "line $LINENO: $BASH_COMMAND"' ERR

# wait_for WHAT COMMAND...: retry until it succeeds, TIMEOUT seconds at most
wait_for() {
  local what=$1; shift
  local deadline=$((SECONDS + TIMEOUT)) f
  until "$@" >/dev/null 2>&1; do
    for f in "$STATE"/pids/*.pid; do
      running "$f" || fail "$(basename "$f" .pid) exited while waiting for $what"
    done
    ((SECONDS < deadline)) || fail "timed out after ${TIMEOUT}s waiting for $what"
    sleep 0.2
  done
}

start etcd \
  --name cascade-test --data-dir "$STATE/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "cascade-test=http://127.0.0.1:$ETCD_PEER_PORT" \
  --quota-backend-bytes 2147483648 \
  --unsafe-no-fsync # a throwaway test store: durability buys nothing, fsync costs seconds
wait_for etcd curl -sf "http://127.0.0.1:$ETCD_PORT/health"

start kube-apiserver \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --client-ca-file "$PKI/ca.crt" \
  --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" \
  --requestheader-allowed-names front-proxy-client \
  --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
  --requestheader-extra-headers-prefix X-Remote-Extra- \
  --proxy-client-cert-file "$PKI/front-proxy-client.crt" \
  --proxy-client-key-file "$PKI/front-proxy-client.key" \
  --authorization-mode Node,RBAC \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --endpoint-reconciler-type none \
  --allow-privileged=true --profiling=false \
  --cert-dir "$STATE/run/apiserver"
# The `kubernetes` Service would point at 127.0.0.1, which endpoints may not hold; nothing
# runs inside the fake pods, so the endpoint reconciler is off.
wait_for "kube-apiserver /readyz" "${KUBECTL[@]}" get --raw /readyz

common=(--bind-address 127.0.0.1 --leader-elect=false --profiling=false
  --authorization-always-allow-paths "/healthz,/readyz,/livez,/metrics")
start kube-controller-manager "${common[@]}" \
  --kubeconfig "$STATE/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
  --secure-port "$KCM_PORT" --cert-dir "$STATE/run/controller-manager" \
  --controllers '*' --use-service-account-credentials \
  --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
  --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
  --kube-api-qps 100 --kube-api-burst 200
start kube-scheduler "${common[@]}" \
  --kubeconfig "$STATE/scheduler.kubeconfig" \
  --authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
  --authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
  --secure-port "$SCHED_PORT" --cert-dir "$STATE/run/scheduler"
# kwok also reads ~/.kwok/kwok.yaml when it exists: give it a HOME of its own.
mkdir -p "$STATE/run/kwok"
HOME=$STATE/run/kwok start kwok \
  --kubeconfig "$STATE/kwok.kubeconfig" \
  --config "$ROOT/cluster/kwok/stages.yaml" \
  --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
  --node-ip 127.0.0.1 --node-lease-duration-seconds 40
wait_for kube-controller-manager curl -sfk "https://127.0.0.1:$KCM_PORT/healthz"
wait_for kube-scheduler curl -sfk "https://127.0.0.1:$SCHED_PORT/healthz"

# ---- fake nodes ----------------------------------------------------------------------------
"${KUBECTL[@]}" apply -f "$ROOT/cluster/nodes.yaml" >&2
wait_for "nodes Ready" "${KUBECTL[@]}" wait --for=condition=Ready node --all --timeout=5s
# Pods can be created once the service-account controller has made `default` in `default`.
wait_for "default service account" "${KUBECTL[@]}" -n default get serviceaccount default

trap - ERR
log "control plane ready in $((SECONDS - START))s: https://127.0.0.1:$API_PORT, logs in $STATE/logs"
log "kubectl: $STATE/bin/kubectl"

# ---- hook: what runs on the control plane (CRD, operator) ----------------------------------
if [[ -n ${CASCADE_CLUSTER_AFTER_UP:-} ]]; then
  log "running CASCADE_CLUSTER_AFTER_UP"
  (cd "$ROOT" && KUBECONFIG=$KUBECONFIG_PATH CASCADE_CLUSTER_DIR=$STATE PATH=$STATE/bin:$PATH \
    bash -c "$CASCADE_CLUSTER_AFTER_UP") >&2 || {
    rc=$?
    log "FAILED: CASCADE_CLUSTER_AFTER_UP exited with $rc; the control plane is still up"
    log "(KUBECONFIG=$KUBECONFIG_PATH); the next cluster-up starts over"
    exit "$rc"
  }
fi

touch "$STATE/ready" # what healthy() looks for: set-up and hook both done

echo "KUBECONFIG=$KUBECONFIG_PATH"
