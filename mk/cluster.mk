# The test control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok
# fake nodes (2 GPU nodes with 8 nvidia.com/gpu each, 1 CPU node) on loopback, built from Go
# modules once into ~/.cache/cascade (see cluster/). Included by the Makefile.
#   make cluster-build   build the binaries (cold: ~8 minutes on 2 cores; then instant)
#   make cluster-up      start it (idempotent); the last line is KUBECONFIG=<path>
#   make cluster-down    stop what cluster-up started and remove its state (keeps binaries)
# CASCADE_CLUSTER_DIR picks the state dir (default .cache/cluster); CASCADE_CLUSTER_AFTER_UP is
# a command run against the ready control plane (KUBECONFIG set): the CRD and operator hook.

.PHONY: cluster-build cluster-up cluster-down

cluster-build:
	@scripts/cluster-build.sh

cluster-up:
	@scripts/cluster-up.sh

cluster-down:
	@scripts/cluster-down.sh
