// The sandbox ("pause") container's program: no registry is reachable, so the pod sandbox image
// is built here (scripts/cluster-build.sh) rather than pulled from registry.k8s.io.
module cascade.dev/cluster/pause

go 1.24.0
