#!/usr/bin/env bash
# The real node's two other images, which a cluster elsewhere pulls from a registry (none is
# reachable here), built with buildah and exported beside Cascade's (scripts/images-build.sh):
#   pause   the pod sandbox: cluster/pause built by scripts/cluster-build.sh, alone in a
#           scratch image (containerd's sandbox_image)
#   redis   Debian's redis-server on the local base (scripts/base-image.sh); the chart's Redis
#           StatefulSet runs `sh -c "exec redis-server ..."`, which it offers as the Alpine
#           image of Docker Hub does, protected mode off as there (that image patches the
#           default; here /usr/local/bin/redis-server adds --protected-mode no): the pods
#           reach it over the pod network, access is the NetworkPolicy's business
# Each is cached by a hash of its inputs (the pause binary, the base image id, this script):
# archives $CASCADE_CACHE/images/<name>-<hash>.oci.tar, listed in index.tsv like the others, so
# scripts/node-up.sh imports them all and tags each localhost/cascade/<name>:local.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${CASCADE_CACHE:-$HOME/.cache/cascade}
OUT=$CACHE/images
buildah() { command buildah ${CASCADE_BUILDAH_STORAGE_DRIVER:+--storage-driver "$CASCADE_BUILDAH_STORAGE_DRIVER"} "$@"; }
say() { echo "node-images: $*" >&2; }

# The pause program only (cluster-build.sh builds it with the rest; `make images` must not
# wait for the whole control plane).
BIN=$("$ROOT/scripts/cluster-build.sh" --print)
if [[ ! -x $BIN/pause ]]; then
  command -v go >/dev/null || export PATH=$PATH:/usr/local/go/bin
  mkdir -p "$BIN"
  (cd "$ROOT/cluster/pause" && GOTOOLCHAIN=local CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN/.pause.tmp" .)
  mv -f "$BIN/.pause.tmp" "$BIN/pause"
fi
mkdir -p "$OUT"
exec 9>"$OUT/.build.lock"
flock 9
touch "$OUT/index.tsv"

# record NAME IMAGE ARCHIVE: index.tsv's line for NAME (component, image, archive, size)
record() {
  local size
  size=$(buildah images --noheading --format "{{.Size}}" "$2" 2>/dev/null || echo "?")
  { grep -vP "^$1\t" "$OUT/index.tsv" || true; printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$size"; } >"$OUT/index.tsv.tmp"
  mv -f "$OUT/index.tsv.tmp" "$OUT/index.tsv"
}
# export NAME IMAGE ARCHIVE: write the archive, drop older ones and older tags of NAME
export_image() {
  buildah push --quiet "$2" "oci-archive:$3.tmp:$2" >/dev/null
  mv -f "$3.tmp" "$3"
  for old in "$OUT/$1"-*.oci.tar; do [[ $old == "$3" ]] || rm -f "$old"; done
  { buildah images --noheading --format '{{.Name}}:{{.Tag}}' | grep "^localhost/cascade/$1:" || true; } |
    while read -r old; do [[ $old == "$2" ]] || buildah rmi "$old" >/dev/null 2>&1 || true; done
}

# ---- pause ---------------------------------------------------------------------------------
hash=$({ sha256sum "$BIN/pause" "${BASH_SOURCE[0]}" | cut -d' ' -f1; } | sha256sum | cut -c1-16)
image=localhost/cascade/pause:$hash archive=$OUT/pause-$hash.oci.tar
if [[ ! -s $archive ]]; then
  ctr=$(buildah from scratch)
  buildah copy --quiet --chmod 0755 "$ctr" "$BIN/pause" /pause >/dev/null
  buildah config --entrypoint '["/pause"]' --cmd '' --user 65535:65535 \
    --label io.cascade.node-image=pause "$ctr"
  buildah commit --quiet --rm "$ctr" "$image" >/dev/null
  export_image pause "$image" "$archive"
  say "pause: built $image"
fi
record pause "$image" "$archive"

# ---- redis ---------------------------------------------------------------------------------
BASE=$("$ROOT/scripts/base-image.sh" | tail -1)
BASE_ID=$(buildah inspect --type image --format '{{.FromImageID}}' "$BASE")
hash=$({ echo "$BASE_ID"; sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1; } | sha256sum | cut -c1-16)
image=localhost/cascade/redis:$hash archive=$OUT/redis-$hash.oci.tar
if [[ ! -s $archive ]]; then
  start=$SECONDS
  # What the RUN step needs to reach the Debian mirror here (as images-build.sh does).
  mounts=()
  for f in /etc/ssl/certs/ca-certificates.crt; do [[ -f $f ]] && mounts+=(--volume "$f:$f:ro"); done
  while read -r f; do mounts+=(--volume "$f:$f:ro"); done < <(grep -ls '^[[:space:]]*Acquire::' /etc/apt/apt.conf.d/* 2>/dev/null || true)
  ctr=$(buildah from --pull=never --quiet "$BASE")
  buildah run --isolation chroot --network host "${mounts[@]}" "$ctr" -- sh -c \
    'apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-server >/dev/null \
     && rm -rf /var/lib/apt/lists/* && mkdir -p /data && chown redis:redis /data'
  wrapper=$(mktemp)
  printf '#!/bin/sh\nexec /usr/bin/redis-server "$@" --protected-mode no\n' >"$wrapper"
  buildah copy --quiet --chmod 0755 "$ctr" "$wrapper" /usr/local/bin/redis-server >/dev/null
  rm -f "$wrapper"
  buildah config --cmd '["redis-server"]' --entrypoint '' --user redis \
    --workingdir /data --port 6379 --label io.cascade.node-image=redis "$ctr"
  buildah commit --quiet --rm "$ctr" "$image" >/dev/null
  export_image redis "$image" "$archive"
  say "redis: built $image in $((SECONDS - start))s"
fi
record redis "$image" "$archive"
say "pause and redis up to date"
