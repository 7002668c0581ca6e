#!/usr/bin/env bash
# Build the test control plane from Go modules, once, into a cache outside git:
#   etcd (cluster/etcd), kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, and
#   for the real node kubelet and kube-proxy (cluster/k8s, a wrapper module of
#   k8s.io/kubernetes), pause (cluster/pause, the pod sandbox's program), kwok, and with
#   go install helm, CoreDNS, metrics-server and crictl (each in a directory of its own
#   version under tools/, linked from the bin dir).
# Binaries that already exist are kept, so a second run returns at once. Prints the bin dir as
# its last line. Needs Go (PATH or /usr/local/go/bin) and the Go module proxy; nothing else.
#
#   scripts/cluster-build.sh            build what is missing, print the bin dir
#   scripts/cluster-build.sh --print    print the bin dir only (no build)
#   scripts/cluster-build.sh --bump-k8s v1.X.Y
#                                       rewrite cluster/k8s/go.mod for another Kubernetes
#                                       release (and versions.env), then build it
#
# Environment: CASCADE_CACHE (default ~/.cache/cascade), GOMODCACHE/GOCACHE (Go's defaults),
# CLUSTER_BUILD_JOBS (go build -p, default 2: linking kube-apiserver takes ~2 GB per job).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=cluster/versions.env
source "$ROOT/cluster/versions.env"
CACHE=${CASCADE_CACHE:-$HOME/.cache/cascade}
BIN=$CACHE/cluster/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION/bin

if [[ ${1:-} == --print ]]; then echo "$BIN"; exit 0; fi

BINARIES=(etcd kwok kubectl kube-scheduler kube-controller-manager kube-apiserver kubelet kube-proxy pause)
# name version package (go install NAME@VERSION into tools/NAME-VERSION, linked from BIN)
TOOLS=(
  "helm $HELM_VERSION helm.sh/helm/v3/cmd/helm -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  "coredns $COREDNS_VERSION github.com/coredns/coredns"
  "metrics-server $METRICS_SERVER_VERSION sigs.k8s.io/metrics-server/cmd/metrics-server -X sigs.k8s.io/metrics-server/pkg/version.gitVersion=$METRICS_SERVER_VERSION"
  "crictl $CRICTL_VERSION sigs.k8s.io/cri-tools/cmd/crictl -X sigs.k8s.io/cri-tools/pkg/version.Version=${CRICTL_VERSION#v}"
)
missing=()
for b in "${BINARIES[@]}"; do [[ -x $BIN/$b ]] || missing+=("$b"); done
for t in "${TOOLS[@]}"; do
  read -r name version _ <<<"$t"
  [[ -x $CACHE/tools/$name-$version/$name && $(readlink "$BIN/$name" 2>/dev/null) == "$CACHE/tools/$name-$version/$name" ]] ||
    missing+=("$name")
done
if [[ ${#missing[@]} -eq 0 && ${1:-} != --bump-k8s ]]; then echo "$BIN"; exit 0; fi

command -v go >/dev/null || export PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || { echo "cluster-build: Go not found (PATH, /usr/local/go/bin)" >&2; exit 1; }

if [[ ${1:-} == --bump-k8s ]]; then
  v=${2:?usage: cluster-build.sh --bump-k8s v1.X.Y}
  [[ $v =~ ^v1\.[0-9]+\.[0-9]+$ ]] || { echo "cluster-build: not a release: $v" >&2; exit 1; }
  mod=$(curl -fsS "https://proxy.golang.org/k8s.io/kubernetes/@v/$v.mod")
  gomod=$ROOT/cluster/k8s/go.mod
  {
    sed -n '1,/^module /p' "$gomod"
    echo
    echo "$mod" | grep -m1 '^go '
    echo
    echo "$mod" | grep -m1 '^godebug ' || true
    echo
    echo "require k8s.io/kubernetes $v"
    echo
    echo "replace ("
    # every ./staging module of k8s.io/kubernetes -> the published k8s.io/<name> v0.X.Y
    echo "$mod" | awk -v sv="v0.${v#v1.}" '$2 == "=>" && $3 ~ /^\.\/staging\// {print "\t" $1 " => " $1 " " sv}'
    echo ")"
  } >"$gomod.new"
  mv "$gomod.new" "$gomod"
  (cd "$ROOT/cluster/k8s" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod tidy)
  sed -i "s/^K8S_VERSION=.*/K8S_VERSION=$v/" "$ROOT/cluster/versions.env"
  echo "cluster-build: cluster/k8s now builds Kubernetes $v; building" >&2
  exec "$0"
fi

# The pinned versions and the wrapper modules must agree.
grep -q "k8s.io/kubernetes $K8S_VERSION\$" "$ROOT/cluster/k8s/go.mod" ||
  { echo "cluster-build: cluster/k8s/go.mod does not require k8s.io/kubernetes $K8S_VERSION" >&2; exit 1; }
grep -q "go.etcd.io/etcd/server/v3 $ETCD_VERSION\$" "$ROOT/cluster/etcd/go.mod" ||
  { echo "cluster-build: cluster/etcd/go.mod does not require etcd server $ETCD_VERSION" >&2; exit 1; }

mkdir -p "$BIN"
# One build at a time per cache (make and pytest may both ask).
exec 9>"$BIN/.build.lock"
flock 9

export GOTOOLCHAIN=local GOFLAGS="-trimpath -mod=readonly" CGO_ENABLED=0
JOBS=${CLUSTER_BUILD_JOBS:-2}
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
K8S_LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  K8S_LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  K8S_LDFLAGS+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

build() {  # name, then the command that writes $out
  local name=$1; shift
  [[ -x $BIN/$name ]] && return 0
  local start=$SECONDS
  out=$BIN/.$name.tmp
  echo "cluster-build: building $name ..." >&2
  "$@"
  mv -f "$out" "$BIN/$name"
  echo "cluster-build: $name built in $((SECONDS - start))s" >&2
}

build_etcd() { (cd "$ROOT/cluster/etcd" && go build -p "$JOBS" -ldflags "-s -w" -o "$out" .); }
build_kwok() {
  local gobin; gobin=$(mktemp -d)
  GOBIN=$gobin GOFLAGS=-trimpath go install -p "$JOBS" \
    -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  mv "$gobin/kwok" "$out"; rmdir "$gobin"
}
build_pause() { (cd "$ROOT/cluster/pause" && go build -ldflags "-s -w" -o "$out" .); }
build_tool() { # name version package [ldflags -X ...]
  local name=$1 version=$2 pkg=$3 dir=$CACHE/tools/$1-$2
  shift 3
  if [[ ! -x $dir/$name ]]; then
    local start=$SECONDS
    echo "cluster-build: building $name $version ..." >&2
    mkdir -p "$dir"
    GOBIN=$dir GOFLAGS=-trimpath go install -p "$JOBS" -ldflags "-s -w $*" "$pkg@$version"
    echo "cluster-build: $name built in $((SECONDS - start))s" >&2
  fi
  ln -sfn "$dir/$name" "$BIN/$name"
}
build_k8s() { (cd "$ROOT/cluster/k8s" && go build -p "$JOBS" -ldflags "$K8S_LDFLAGS" -o "$out" "k8s.io/kubernetes/cmd/$1"); }

total=$SECONDS
build etcd build_etcd
build kwok build_kwok
build pause build_pause
for c in kubectl kube-scheduler kube-controller-manager kube-apiserver kubelet kube-proxy; do
  build "$c" build_k8s "$c"
done
for t in "${TOOLS[@]}"; do
  # shellcheck disable=SC2086 # the ldflags words are meant to split
  build_tool $t
done
echo "cluster-build: done in $((SECONDS - total))s" >&2
echo "$BIN"
