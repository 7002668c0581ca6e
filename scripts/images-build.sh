#!/usr/bin/env bash
# Build Cascade's three images (edge, operator, transcoder) from the project's Dockerfiles with
# buildah (daemonless; no Docker engine, no registry), on the local Debian base that
# scripts/base-image.sh makes (given as the Dockerfiles' PYTHON_IMAGE), and export each as an
# OCI archive for `ctr import`:
#   $CASCADE_CACHE/images/<component>-<hash>.oci.tar   image localhost/cascade/<component>:<hash>
# <hash> covers the Dockerfile, every file its COPY instructions take from the context (less
# what .dockerignore leaves out), the base image's id and this script: when the archive for the
# hash exists the image is not rebuilt, so a warm run returns in seconds. Each new image is
# checked (scripts/images-build.sh --check) before its archive is written.
# $CASCADE_CACHE/images/index.tsv lists, per component: image name, archive, size (as buildah shows it).
#
#   scripts/images-build.sh [component...]          build what is missing (default: all three)
#   scripts/images-build.sh --check [component...]  check the built images hold what they must
#
# Builds run RUN steps with --isolation chroot (see CASCADE_BUILDAH_ISOLATION) on the host's
# network: pip reaches PyPI and the transcoder's apt reaches the Debian mirror, with this
# machine's CA bundle, pip.conf and apt Acquire settings mounted into the RUN steps only (never
# into a layer).
# Environment: CASCADE_CACHE (default ~/.cache/cascade), CASCADE_BUILDAH_ISOLATION (chroot | oci,
# default chroot), CASCADE_BUILDAH_STORAGE_DRIVER (buildah's --storage-driver, default its own).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${CASCADE_CACHE:-$HOME/.cache/cascade}
OUT=$CACHE/images
ISOLATION=${CASCADE_BUILDAH_ISOLATION:-chroot}
ALL=(edge operator transcoder)

buildah() { command buildah ${CASCADE_BUILDAH_STORAGE_DRIVER:+--storage-driver "$CASCADE_BUILDAH_STORAGE_DRIVER"} "$@"; }
say() { echo "images: $*" >&2; }

check=0
if [[ ${1:-} == --check ]]; then check=1; shift; fi
components=("$@")
[[ ${#components[@]} -gt 0 ]] || components=("${ALL[@]}")
for c in "${components[@]}"; do
  [[ -f $ROOT/Dockerfile.$c ]] || { say "no Dockerfile.$c"; exit 2; }
done
command -v buildah >/dev/null || { say "buildah not installed (make setup installs it)"; exit 1; }

# What a Dockerfile's COPY instructions (those without --from) take from the build context.
copy_sources() {
  sed -e ':a' -e '/\\$/N; s/\\\n/ /; ta' "$ROOT/Dockerfile.$1" |
    awk '$1 == "COPY" && !/ --from=/ { for (i = 2; i < NF; i++) if ($i !~ /^--/) print $i }' | sort -u
}

# The inputs' hash: the Dockerfile, each copied file (path and content; __pycache__ and *.log
# are left out as .dockerignore does), the base image id and this script.
input_hash() {
  local c=$1 base_id=$2 src
  {
    echo "base $base_id"
    sha256sum "${BASH_SOURCE[0]}" | sed "s#  .*#  script#"
    (cd "$ROOT" && sha256sum "Dockerfile.$c" .dockerignore)
    while read -r src; do
      (cd "$ROOT" && find "$src" \( -name __pycache__ -prune \) -o \( -type f ! -name '*.log' -print0 \) |
        sort -z | xargs -0r sha256sum)
    done < <(copy_sources "$c")
  } | sha256sum | cut -c1-16
}

run_in() {  # image, command...: run a command in a throwaway container of the image
  local image=$1 ctr rc=0; shift
  ctr=$(buildah from --pull=never --quiet "$image")
  buildah run --isolation "$ISOLATION" "$ctr" -- "$@" || rc=$?
  buildah rm "$ctr" >/dev/null
  return $rc
}

# What each image must hold, checked inside it.
check_image() {
  local c=$1 image=$2 pkgs user fail=0
  user=$(buildah inspect --type image --format '{{.OCIv1.Config.User}}' "$image")
  [[ $user == 10001:10001 ]] || { say "$c: runs as '$user', not 10001:10001"; fail=1; }
  run_in "$image" test -x "/opt/cascade/bin/cascade-$c" || { say "$c: no /opt/cascade/bin/cascade-$c"; fail=1; }
  pkgs=$(run_in "$image" /opt/cascade/bin/python -m pip list --format=freeze 2>/dev/null | tr 'A-Z_' 'a-z-')
  grep -q "^cascade-live-$c==" <<<"$pkgs" || { say "$c: cascade-live-$c not installed"; fail=1; }
  case $c in
    edge)
      if grep -Eq '^(kopf|kubernetes)==' <<<"$pkgs"; then say "edge: has $(grep -E '^(kopf|kubernetes)==' <<<"$pkgs" | xargs)"; fail=1; fi
      local want got
      want=$(sha256sum "$ROOT/node_modules/hls.js/dist/hls.min.js" | cut -d' ' -f1)
      got=$(run_in "$image" /opt/cascade/bin/python -c '
import hashlib, importlib.resources as r, cascade.edge as e
p = r.files(e) / "static" / "hls.min.js"
assert str(p).startswith("/opt/cascade/lib/"), p
print(hashlib.sha256(p.read_bytes()).hexdigest())') || true
      [[ $got == "$want" ]] || { say "edge: the installed package has no hls.min.js from node_modules (got '$got')"; fail=1; }
      ;;
    transcoder)
      local enc
      enc=$(run_in "$image" ffmpeg -hide_banner -encoders 2>/dev/null) || true
      for e in h264_nvenc hevc_nvenc libx264; do
        grep -Eq "^ V[^ ]* $e " <<<"$enc" || { say "transcoder: ffmpeg has no $e encoder"; fail=1; }
      done
      if grep -Eq '^(kopf|kubernetes|fastapi)==' <<<"$pkgs"; then say "transcoder: has $(grep -E '^(kopf|kubernetes|fastapi)==' <<<"$pkgs" | xargs)"; fail=1; fi
      ;;
    operator)
      grep -q '^kopf==' <<<"$pkgs" || { say "operator: no kopf"; fail=1; }
      grep -q '^kubernetes==' <<<"$pkgs" || { say "operator: no kubernetes client"; fail=1; }
      if grep -Eq '^(fastapi|uvloop)==' <<<"$pkgs"; then say "operator: has $(grep -E '^(fastapi|uvloop)==' <<<"$pkgs" | xargs)"; fail=1; fi
      ;;
  esac
  [[ $fail -eq 0 ]] && say "$c: checks passed ($image)"
  return $fail
}

image_size() { buildah inspect --type image --format '{{.Size}}' "$1" 2>/dev/null ||
  buildah images --noheading --format '{{.Size}}' "$1"; }

if [[ $check -eq 1 ]]; then
  rc=0
  for c in "${components[@]}"; do
    line=$(grep -P "^$c\t" "$OUT/index.tsv" 2>/dev/null | tail -1) || true
    [[ -n $line ]] || { say "$c: not built (no entry in $OUT/index.tsv)"; rc=1; continue; }
    image=$(cut -f2 <<<"$line")
    check_image "$c" "$image" || rc=1
  done
  exit $rc
fi

# Build-time only: this machine's CA bundle, pip.conf and apt Acquire settings (a proxy, a
# frozen snapshot), mounted into RUN steps (what a build needs to reach PyPI and the mirror
# here); nothing of them lands in a layer.
mounts=()
for f in /etc/ssl/certs/ca-certificates.crt /etc/pip.conf; do [[ -f $f ]] && mounts+=(--volume "$f:$f:ro"); done
while read -r f; do mounts+=(--volume "$f:$f:ro"); done < <(grep -ls '^[[:space:]]*Acquire::' /etc/apt/apt.conf.d/* 2>/dev/null || true)

mkdir -p "$OUT"
exec 9>"$OUT/.build.lock"
flock 9
total=$SECONDS
BASE=$("$ROOT/scripts/base-image.sh" | tail -1)
BASE_ID=$(buildah inspect --type image --format '{{.FromImageID}}' "$BASE")
touch "$OUT/index.tsv"
for c in "${components[@]}"; do
  hash=$(input_hash "$c" "$BASE_ID")
  image=localhost/cascade/$c:$hash
  archive=$OUT/$c-$hash.oci.tar
  if [[ -s $archive ]]; then
    say "$c: up to date ($archive)"
  else
    start=$SECONDS
    say "$c: building $image from Dockerfile.$c on $BASE ..."
    buildah bud --quiet --isolation "$ISOLATION" --network host --pull=never --layers=false \
      --build-arg "PYTHON_IMAGE=$BASE" "${mounts[@]}" \
      -f "$ROOT/Dockerfile.$c" -t "$image" "$ROOT" >/dev/null
    check_image "$c" "$image"
    buildah push --quiet "$image" "oci-archive:$archive.tmp:$image" >/dev/null
    mv -f "$archive.tmp" "$archive"
    for old in "$OUT/$c"-*.oci.tar; do [[ $old == "$archive" ]] || rm -f "$old"; done
    { buildah images --noheading --format '{{.Name}}:{{.Tag}}' | grep "^localhost/cascade/$c:" || true; } |
      while read -r old; do [[ $old == "$image" ]] || buildah rmi "$old" >/dev/null 2>&1 || true; done
    say "$c: built in $((SECONDS - start))s"
  fi
  size=$(image_size "$image" 2>/dev/null || echo "?")
  { grep -vP "^$c\t" "$OUT/index.tsv" || true; printf '%s\t%s\t%s\t%s\n' "$c" "$image" "$archive" "$size"; } \
    >"$OUT/index.tsv.tmp"
  mv -f "$OUT/index.tsv.tmp" "$OUT/index.tsv"
  say "$c: $image, $(numfmt --to=iec "$size" 2>/dev/null || echo "$size") unpacked, archive $(du -h "$archive" | cut -f1)"
done
say "done in $((SECONDS - total))s"
