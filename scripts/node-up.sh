#!/usr/bin/env bash
# The test cluster's real node, beside the kwok fakes: containerd + runc (Debian packages), the
# kubelet, CNI (Debian's containernetworking-plugins: bridge + host-local + portmap), kube-proxy
# (iptables mode), CoreDNS and metrics-server, all inside the cluster's network namespace.
# Run by scripts/cluster-up.sh once the control plane answers (not on its own): it exports
# STATE, NETNS, BIN, PKI, NODE_IP, NODE_NAME, POD_CIDR, DNS_IP and sources cluster-lib.sh's
# helpers through CLUSTER_LIB. Processes are recorded in $STATE/pids/ (node-*.pid) for
# scripts/cluster-down.sh, which also stops the pods (crictl) and unmounts what they mounted.
#
# CoreDNS and metrics-server run as processes of the node, not as pods: no registry is
# reachable for their images, and a process in the namespace is what a pod of the host network
# would be. Each sits behind a selector-less Service (kube-system/kube-dns at $DNS_IP,
# kube-system/metrics-server for the aggregated metrics API) whose EndpointSlice names the node
# IP, so pods reach them through kube-proxy's rules as in any cluster.
#
# The node is tainted cascade.dev/node=real:NoSchedule: only pods that ask for it (the chart
# with helm/cascade/values-local.yaml, LiveStreams whose scheduling tolerates it) run here; the
# fake nodes keep everything else (the kwok tests' pods never start FFmpeg by accident).
set -euo pipefail
: "${STATE:?}" "${NETNS:?}" "${BIN:?}" "${PKI:?}" "${NODE_IP:?}" "${NODE_NAME:?}" "${POD_CIDR:?}" "${DNS_IP:?}"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/cluster-lib.sh
source "$ROOT/scripts/cluster-lib.sh"
TIMEOUT=${CLUSTER_UP_TIMEOUT:-120}
NODE=$STATE/node
log() { echo "node-up: $*" >&2; }
KUBECTL=(inns "$BIN/kubectl" --kubeconfig "$STATE/kubeconfig")

mkdir -p "$NODE"/{containerd,cni,cni-ipam,kubelet,pod-logs,run}
SOCK=$NODE/containerd.sock
CTR=(inns ctr --address "$SOCK" --namespace k8s.io)

# ---- containerd ----------------------------------------------------------------------------
# Its own root, state, runc state and socket (a system containerd, if any, is left alone); the pause image
# is the one built here (scripts/node-images.sh); CNI configuration and IPAM state in $NODE.
cat >"$NODE/containerd.toml" <<EOF
version = 2
root = "$NODE/containerd/root"
state = "$NODE/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$NODE/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # This machine gives root no CAP_SYS_RESOURCE, so runc may not lower a process's
  # oom_score_adj (the kubelet asks -998 for sandboxes: "failed to update
  # /proc/self/oom_score_adj: Permission denied"); containerd then keeps it at or above its own.
  restrict_oom_score_adj = true
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$NODE/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE/cni"
    max_conf_num = 1
EOF
# The pod network: a bridge in the cluster's namespace, host-local addresses from POD_CIDR
# (its state in $NODE, not /var/lib/cni), hairpin so a pod reaches itself through a Service.
cat >"$NODE/cni/10-cascade.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "cascade",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$NODE/cni-ipam",
              "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
# containerd keeps its shims' sockets and ctr's fifos under /run/containerd whatever its state
# dir: cluster-down.sh removes that directory (when empty) if it was not there before.
[[ -e /run/containerd ]] || touch "$NODE/made-run-containerd"
start_in_ns node-containerd containerd --config "$NODE/containerd.toml"
wait_for containerd "${CTR[@]}" version

# ---- images --------------------------------------------------------------------------------
# Everything a pod here runs comes from these archives: nothing is pulled.
t=$SECONDS
while IFS=$'\t' read -r component image archive _; do
  [[ -s $archive ]] || continue
  "${CTR[@]}" images import --snapshotter overlayfs "$archive" >/dev/null
  "${CTR[@]}" images tag --force "$image" "localhost/cascade/$component:local" >/dev/null
done <"$IMAGES_INDEX"
log "images imported in $((SECONDS - t))s: $("${CTR[@]}" images ls -q | grep -c ':local$') tagged :local"

# ---- kubelet -------------------------------------------------------------------------------
cat >"$NODE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$SOCK
# cgroup v1 without systemd here: cgroupfs, and no QoS / allocatable cgroups of kubelet's own.
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
resolvConf: $NODE/resolv.conf
podLogsDir: $NODE/pod-logs
# The images are imported, never pulled: keep them whatever the disk use, and evict nothing
# for disk on a shared development machine.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 200Mi, nodefs.available: "1%", imagefs.available: "1%"}
serializeImagePulls: false
registerNode: true
registerWithTaints:
- {key: cascade.dev/node, value: real, effect: NoSchedule}
nodeStatusUpdateFrequency: 4s
shutdownGracePeriod: 0s
EOF
# Pods' upstream resolver: none (CoreDNS answers cluster names and forwards nothing).
echo "nameserver $DNS_IP" >"$NODE/resolv.conf"
start_in_ns node-kubelet kubelet --config "$NODE/kubelet.yaml" \
  --kubeconfig "$STATE/kubelet.kubeconfig" --root-dir "$NODE/kubelet" --cert-dir "$NODE/run/kubelet" \
  --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
  --node-labels "cascade.dev/node=real,node.kubernetes.io/instance-type=real"
wait_for "node $NODE_NAME registered" "${KUBECTL[@]}" get node "$NODE_NAME"

# ---- kube-proxy ----------------------------------------------------------------------------
# iptables mode inside the namespace; masqueradeAll so a pod's reply to a Service client on
# the same bridge comes back through the node (un-DNATed) whatever br_netfilter does; no
# conntrack table sizing (a global sysctl, not ours to change).
cat >"$NODE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
mode: iptables
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
clusterCIDR: 10.244.0.0/16
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {maxPerCore: 0}
iptables: {masqueradeAll: true, syncPeriod: 30s, minSyncPeriod: 0s}
EOF
start_in_ns node-kube-proxy kube-proxy --config "$NODE/kube-proxy.yaml"

# ---- add-ons: Services in front of CoreDNS and metrics-server on the node ------------------
"${KUBECTL[@]}" apply -f - >&2 <<EOF
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
  spec:
    clusterIP: $DNS_IP
    ports:
    - {name: dns, port: 53, protocol: UDP, targetPort: 53}
    - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    name: kube-dns-node
    namespace: kube-system
    labels: {kubernetes.io/service-name: kube-dns, endpointslice.kubernetes.io/managed-by: cascade-node-up}
  addressType: IPv4
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
  endpoints:
  - addresses: [$NODE_IP]
    conditions: {ready: true}
    nodeName: $NODE_NAME
- apiVersion: v1
  kind: Service
  metadata: {name: metrics-server, namespace: kube-system, labels: {k8s-app: metrics-server}}
  spec:
    ports: [{name: https, port: 443, protocol: TCP, targetPort: 4443}]
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    name: metrics-server-node
    namespace: kube-system
    labels: {kubernetes.io/service-name: metrics-server, endpointslice.kubernetes.io/managed-by: cascade-node-up}
  addressType: IPv4
  ports: [{name: https, port: 4443, protocol: TCP}]
  endpoints:
  - addresses: [$NODE_IP]
    conditions: {ready: true}
    nodeName: $NODE_NAME
- apiVersion: apiregistration.k8s.io/v1
  kind: APIService
  metadata: {name: v1beta1.metrics.k8s.io, labels: {k8s-app: metrics-server}}
  spec:
    service: {name: metrics-server, namespace: kube-system, port: 443}
    group: metrics.k8s.io
    version: v1beta1
    caBundle: $(base64 -w0 "$PKI/ca.crt")
    groupPriorityMinimum: 100
    versionPriority: 100
EOF

# CoreDNS: cluster names only. No `forward`: a name outside cluster.local gets no answer from
# anywhere (nothing leaves the namespace).
cat >"$NODE/Corefile" <<EOF
.:53 {
    bind $NODE_IP
    errors
    ready 127.0.0.1:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $STATE/coredns.kubeconfig
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 5
}
EOF
start_in_ns node-coredns coredns -conf "$NODE/Corefile"

start_in_ns node-metrics-server metrics-server \
  --bind-address "$NODE_IP" --secure-port 4443 \
  --tls-cert-file "$PKI/metrics-server.crt" --tls-private-key-file "$PKI/metrics-server.key" \
  --kubeconfig "$STATE/metrics-server.kubeconfig" \
  --authentication-kubeconfig "$STATE/metrics-server.kubeconfig" \
  --authorization-kubeconfig "$STATE/metrics-server.kubeconfig" \
  --kubelet-preferred-address-types InternalIP --kubelet-certificate-authority "$PKI/ca.crt" \
  --kubelet-client-certificate "$PKI/metrics-server.crt" --kubelet-client-key "$PKI/metrics-server.key" \
  --node-selector cascade.dev/node=real \
  --metric-resolution 15s --kubelet-request-timeout 5s

wait_for "node $NODE_NAME Ready" "${KUBECTL[@]}" wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s
wait_for "CoreDNS ready" inns curl -sf http://127.0.0.1:8181/ready
wait_for "metrics API available" "${KUBECTL[@]}" wait --for=condition=Available \
  apiservice/v1beta1.metrics.k8s.io --timeout=5s
log "node $NODE_NAME Ready at $NODE_IP (pods from $POD_CIDR)"
