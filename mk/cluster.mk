# The test control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok
# fake nodes (2 GPU nodes with 8 nvidia.com/gpu each, 1 CPU node) on loopback, built from Go
# modules once into ~/.cache/cascade (see cluster/). Included by the Makefile.
#   make cluster-build   build the binaries (cold: ~8 minutes on 2 cores; then instant)
#   make cluster-up      start it (idempotent); the last line is KUBECONFIG=<path>
#   make cluster-down    stop what cluster-up started and remove its state (keeps binaries)
# CASCADE_CLUSTER_DIR picks the state dir (default .cache/cluster); CASCADE_CLUSTER_AFTER_UP is
# a command run against the ready control plane (KUBECONFIG set); by default
# scripts/cluster-operator.sh: apply the CRD, start a Redis and the operator (logs in
# <state>/logs/operator.log, ports in <state>/operator.env). CASCADE_CLUSTER_AFTER_UP= (empty)
# brings up the bare control plane.

.PHONY: cluster-build cluster-up cluster-down

cluster-build:
	@scripts/cluster-build.sh

CASCADE_CLUSTER_AFTER_UP ?= scripts/cluster-operator.sh
export CASCADE_CLUSTER_AFTER_UP

cluster-up: setup
	@scripts/cluster-up.sh

cluster-down:
	@scripts/cluster-down.sh
