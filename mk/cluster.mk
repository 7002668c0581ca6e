# The test cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok fake
# nodes (2 GPU nodes with 16 nvidia.com/gpu each, 1 CPU node) and one real node (containerd +
# runc, kubelet, CNI bridge, kube-proxy, CoreDNS, metrics-server) that runs Cascade's images,
# all inside a network namespace of its own (nothing reaches or leaves the machine's network),
# built from Go modules once into ~/.cache/cascade (see cluster/). Included by the Makefile.
#   make cluster-build   build the binaries (cold: ~12 minutes on 2 cores; then instant)
#   make cluster-up      start it (idempotent; builds what is missing, images too); the last
#                        line is KUBECONFIG=<path>
#   make cluster-exec CMD="kubectl get pods -A"
#                        run a client inside the cluster's namespace (no CMD: a shell); or
#                        scripts/cluster-exec.sh CMD..., or <state>/bin/kubectl and helm
#   make cluster-down    stop what cluster-up started and remove its state and namespace
#                        (keeps binaries and images)
# CASCADE_CLUSTER_DIR picks the state dir (default .cache/cluster); CASCADE_CLUSTER_NODE=0
# leaves the real node out; CASCADE_CLUSTER_AFTER_UP is a command run against the ready
# cluster (KUBECONFIG set, inside its namespace); by default scripts/cluster-operator.sh:
# apply the CRD, start a Redis and the operator as processes (logs in
# <state>/logs/operator.log, ports in <state>/operator.env). CASCADE_CLUSTER_AFTER_UP= (empty)
# brings up the bare cluster, for `helm install` (docs/kubernetes.md).

.PHONY: cluster-build cluster-up cluster-down cluster-exec

# The real node's runtime, network plugins and packet filter (kube-proxy's iptables mode).
NODE_APT_PACKAGES := containerd runc containernetworking-plugins iptables
APT_PACKAGES += $(NODE_APT_PACKAGES)
.cache/apt.stamp: mk/cluster.mk

cluster-build:
	@scripts/cluster-build.sh

CASCADE_CLUSTER_AFTER_UP ?= scripts/cluster-operator.sh
export CASCADE_CLUSTER_AFTER_UP

cluster-up: setup
	@scripts/cluster-up.sh

cluster-exec:
	@scripts/cluster-exec.sh $(CMD)

cluster-down:
	@scripts/cluster-down.sh

# The real node's images are built before pytest too (cold: ~2 minutes), for the same reason
# as the binaries: their progress shows.
test: images
