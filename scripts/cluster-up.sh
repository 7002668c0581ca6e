#!/usr/bin/env bash
# Bring up the test cluster and print `KUBECONFIG=<path>` as the last line.
#
#   etcd -> kube-apiserver -> kube-controller-manager, kube-scheduler -> kwok (fake nodes)
#        -> the real node (scripts/node-up.sh: containerd, kubelet, CNI, kube-proxy, CoreDNS,
#           metrics-server), unless CASCADE_CLUSTER_NODE=0
#
# The whole cluster lives in a network namespace of its own, made here (its name in
# $STATE/netns): the node IP on a veth whose peer is down, the pods' bridge below it, loopback,
# and a default route into that veth (which drops what it is given): no packet can leave it. Clients
# run inside it too: scripts/cluster-exec.sh CMD, or the kubectl and helm of $STATE/bin
# (wrappers that enter it). Several clusters run side by side, one namespace per state dir, so
# the ports inside are fixed.
#
# Binaries come from scripts/cluster-build.sh (built from Go modules once, then cached), the
# node's images from `make images` and scripts/node-images.sh (built if missing).
# Certificates are made here with openssl. Components run in the background in their own
# sessions; their pids are in $STATE/pids/, their logs in $STATE/logs/.
# scripts/cluster-down.sh stops them and removes the namespace.
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
#                             The hook runs inside the cluster's network namespace.
#   CASCADE_CLUSTER_NODE      1 (default): start the real node; 0: the fake nodes only
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
DNS_IP=10.96.0.10    # kube-system/kube-dns, the pods' resolver (CoreDNS on the node)
# Addresses that exist only inside the cluster's namespace: the node's on the dummy interface,
# and the real node's pods (the fake nodes' podCIDRs in cluster/nodes.yaml are 10.244.0-2.x).
NODE_IP=10.200.0.1
NODE_NAME=cascade-node
POD_CIDR=10.244.100.0/24
WITH_NODE=${CASCADE_CLUSTER_NODE:-1}

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
  [[ -f $STATE/netns && -e $(netns_path "$STATE") ]] || return 1
  nsenter --net="$(netns_path "$STATE")" -- "$STATE/bin/.kubectl" --kubeconfig "$KUBECONFIG_PATH" \
    get --raw /readyz >/dev/null 2>&1
}
if healthy; then
  echo "KUBECONFIG=$KUBECONFIG_PATH"
  exit 0
fi
if [[ -d $STATE/pids || -f $STATE/kubeconfig || -f $STATE/netns ]]; then
  log "found a stale or half-started cluster in $STATE: tearing it down"
  CASCADE_CLUSTER_DIR=$STATE "$ROOT/scripts/cluster-down.sh" >&2
  mkdir -p "$STATE"
fi

START=$SECONDS
BIN=$("$ROOT/scripts/cluster-build.sh" | tail -n 1)
log "binaries ready in $((SECONDS - START))s ($BIN)"
if [[ $WITH_NODE == 1 ]]; then
  # The node's images: Cascade's three (make images) and the pause and Redis images.
  "$ROOT/scripts/images-build.sh" >&2
  "$ROOT/scripts/node-images.sh" >&2
fi

mkdir -p "$STATE"/{bin,pids,logs,pki,run}
mkdir -m 700 "$STATE/etcd"
touch "$STATE/.cascade-cluster" # cluster-down.sh removes only state dirs marked so
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kwok kubelet kube-proxy \
  coredns metrics-server crictl; do
  ln -sfn "$BIN/$b" "$STATE/bin/$b"
done
# The clients a user runs: wrappers that enter the cluster's namespace (the real ones as .NAME).
for b in kubectl helm; do
  ln -sfn "$BIN/$b" "$STATE/bin/.$b"
  cat >"$STATE/bin/$b" <<EOF
#!/bin/sh
# $b inside the Cascade test cluster's network namespace (scripts/cluster-up.sh)
exec nsenter --net=/run/netns/\$(cat "$STATE/netns") -- "$STATE/bin/.$b" "\$@"
EOF
  chmod +x "$STATE/bin/$b"
done

# ---- the network namespace -----------------------------------------------------------------
NETNS_NAME=cascade-$(echo "$STATE" | sha256sum | cut -c1-10)
ip netns delete "$NETNS_NAME" 2>/dev/null || true
ip netns add "$NETNS_NAME"
echo "$NETNS_NAME" >"$STATE/netns"
NETNS=/run/netns/$NETNS_NAME
inns ip link set lo up
# The node IP on one end of a veth pair whose other end stays down (this kernel has no dummy
# interfaces: "Unknown device type"): what is routed out of it is dropped, both ends are in the
# namespace. Service IPs (and anything else not local) take the default route there;
# kube-proxy's DNAT rewrites Service traffic before it would leave.
inns ip link add cascade0 type veth peer name cascade0-down
inns ip addr add "$NODE_IP/24" dev cascade0
inns ip link set cascade0 up
inns ip route add default dev cascade0
KUBECTL=(inns "$BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH")

# ---- ports (inside the namespace: fixed) ---------------------------------------------------
ETCD_PORT=2379 ETCD_PEER_PORT=2380 API_PORT=6443 KCM_PORT=10257 SCHED_PORT=10259
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
    "IP:127.0.0.1,IP:$NODE_IP,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert admin "/O=system:masters/CN=cascade-admin" clientAuth
  cert controller-manager "/CN=system:kube-controller-manager" clientAuth
  cert scheduler "/CN=system:kube-scheduler" clientAuth
  # kwok writes the status of nodes and pods it fakes and renews their leases.
  cert kwok "/O=system:masters/CN=kwok" clientAuth
  # The real node: the kubelet (Node authorizer: system:node:<name> in system:nodes), its
  # serving certificate (the API server and metrics-server check it), kube-proxy (bound to
  # system:node-proxier by the default RBAC policy). CoreDNS and metrics-server read across
  # the cluster and metrics-server is also the metrics API's server; in this throwaway test
  # cluster they are masters rather than each given its ClusterRole.
  cert kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
  cert kubelet "/CN=$NODE_NAME" serverAuth "IP:$NODE_IP,DNS:$NODE_NAME"
  cert kube-proxy "/CN=system:kube-proxy" clientAuth
  cert coredns "/O=system:masters/CN=coredns" clientAuth
  cert metrics-server "/O=system:masters/CN=metrics-server" serverAuth,clientAuth \
    "IP:$NODE_IP,DNS:metrics-server.kube-system.svc,DNS:metrics-server.kube-system.svc.cluster.local"
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
kubeconfig kubelet.kubeconfig kubelet-client
kubeconfig kube-proxy.kubeconfig kube-proxy
kubeconfig coredns.kubeconfig coredns
kubeconfig metrics-server.kubeconfig metrics-server

# ---- processes -----------------------------------------------------------------------------
# start NAME ARGS...: $STATE/bin/NAME in the namespace (cluster-lib.sh's start_in_ns)
start() { start_in_ns "$1" "$@"; }

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


start etcd \
  --name cascade-test --data-dir "$STATE/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "cascade-test=http://127.0.0.1:$ETCD_PEER_PORT" \
  --quota-backend-bytes 2147483648 \
  --unsafe-no-fsync # a throwaway test store: durability buys nothing, fsync costs seconds
wait_for etcd inns curl -sf "http://127.0.0.1:$ETCD_PORT/health"

start kube-apiserver \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 0.0.0.0 --advertise-address "$NODE_IP" --secure-port "$API_PORT" \
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
  --kubelet-client-certificate "$PKI/admin.crt" --kubelet-client-key "$PKI/admin.key" \
  --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
  --enable-aggregator-routing=true \
  --allow-privileged=true --profiling=false \
  --cert-dir "$STATE/run/apiserver"
# The `kubernetes` Service points at the node IP (bound inside the namespace only), so the
# real node's pods (the operator) reach the API server through it. The aggregated metrics API
# is reached at its endpoint (metrics-server on the node), not through a Service IP.
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
wait_for kube-controller-manager inns curl -sfk "https://127.0.0.1:$KCM_PORT/healthz"
wait_for kube-scheduler inns curl -sfk "https://127.0.0.1:$SCHED_PORT/healthz"

# ---- fake nodes ----------------------------------------------------------------------------
"${KUBECTL[@]}" apply -f "$ROOT/cluster/nodes.yaml" >&2
wait_for "nodes Ready" "${KUBECTL[@]}" wait --for=condition=Ready node --all --timeout=5s
# Pods can be created once the service-account controller has made `default` in `default`.
wait_for "default service account" "${KUBECTL[@]}" -n default get serviceaccount default

# ---- the real node -------------------------------------------------------------------------
if [[ $WITH_NODE == 1 ]]; then
  STATE=$STATE NETNS=$NETNS BIN=$BIN PKI=$PKI NODE_IP=$NODE_IP NODE_NAME=$NODE_NAME \
    POD_CIDR=$POD_CIDR DNS_IP=$DNS_IP CLUSTER_UP_TIMEOUT=$TIMEOUT \
    PAUSE_IMAGE=localhost/cascade/pause:local \
    IMAGES_INDEX=${CASCADE_CACHE:-$HOME/.cache/cascade}/images/index.tsv \
    "$ROOT/scripts/node-up.sh"
fi

trap - ERR
log "cluster ready in $((SECONDS - START))s: https://127.0.0.1:$API_PORT in network namespace $NETNS_NAME, logs in $STATE/logs"
log "clients: scripts/cluster-exec.sh CMD (or $STATE/bin/kubectl, $STATE/bin/helm)"

# ---- hook: what runs on the control plane (CRD, operator) ----------------------------------
if [[ -n ${CASCADE_CLUSTER_AFTER_UP:-} ]]; then
  log "running CASCADE_CLUSTER_AFTER_UP"
  (cd "$ROOT" && KUBECONFIG=$KUBECONFIG_PATH CASCADE_CLUSTER_DIR=$STATE PATH=$STATE/bin:$PATH \
    inns bash -c "$CASCADE_CLUSTER_AFTER_UP") >&2 || {
    rc=$?
    log "FAILED: CASCADE_CLUSTER_AFTER_UP exited with $rc; the control plane is still up"
    log "(KUBECONFIG=$KUBECONFIG_PATH); the next cluster-up starts over"
    exit "$rc"
  }
fi

touch "$STATE/ready" # what healthy() looks for: set-up and hook both done

echo "KUBECONFIG=$KUBECONFIG_PATH"
