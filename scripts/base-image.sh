#!/usr/bin/env bash
# The base image the Dockerfiles get as PYTHON_IMAGE when no registry is reachable: Debian
# bookworm made with mmdebstrap from the Debian mirror this machine's apt uses, with the
# interface of python:3.11-slim-bookworm that the Dockerfiles rely on:
#   python3 3.11 and `python` (python-is-python3), `python -m venv` with pip (python3-venv),
#   pip, apt (the transcoder installs ffmpeg), groupadd/useradd (passwd), CA certificates,
#   LANG=C.UTF-8, CMD ["python3"], and the apt settings of Debian's Docker images (docker-clean:
#   apt keeps no .deb or cache after an install, so `apt-get install ... && rm -rf
#   /var/lib/apt/lists/*` leaves nothing behind; no translations; Suggests not kept).
# dpkg leaves out documentation, man pages and translations (kept in the image's dpkg config,
# so what a Dockerfile installs with apt is slim too; copyright files stay).
#
# Imported into buildah's storage as localhost/cascade/base:<key> and saved as an OCI archive
# $CASCADE_CACHE/images/base-<key>.oci.tar (restored from there if the storage was wiped), where
# <key> hashes this script and the apt sources: a second run returns at once. Prints the image
# name as its last line.
#
# Environment: CASCADE_CACHE (default ~/.cache/cascade), CASCADE_BUILDAH_STORAGE_DRIVER (buildah's
# --storage-driver, default: its configured one).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${CASCADE_CACHE:-$HOME/.cache/cascade}
OUT=$CACHE/images
SUITE=bookworm
# /usr is merged by mmdebstrap's hook; usr-is-merged says so (apt still picks usrmerge, and
# perl with it, for init-system-helpers: purged below, 46 MB).
PACKAGES=passwd,ca-certificates,python3,python3-venv,python3-pip,python-is-python3,usr-is-merged

buildah() { command buildah ${CASCADE_BUILDAH_STORAGE_DRIVER:+--storage-driver "$CASCADE_BUILDAH_STORAGE_DRIVER"} "$@"; }

# The Debian repositories this machine's apt uses, for the suite and its -updates/-security.
mapfile -t SOURCES < <(apt-get indextargets --format '$(TARGET_OF) $(SITE) $(RELEASE) $(COMPONENT)' \
  'Identifier: Packages' | awk -v s="$SUITE" '$1 == "deb" && $3 ~ "^" s "(-updates|-security)?$"' | sort -u)
[[ ${#SOURCES[@]} -gt 0 ]] || SOURCES=("deb http://deb.debian.org/debian $SUITE main")
# apt's Acquire settings of this machine (a proxy, a frozen snapshot's Check-Valid-Until): used
# while bootstrapping, not kept in the image.
mapfile -t APT_CONF < <(grep -ls '^[[:space:]]*Acquire::' /etc/apt/apt.conf /etc/apt/apt.conf.d/* 2>/dev/null || true)

key=$( { cat "${BASH_SOURCE[0]}"; printf '%s\n' "${SOURCES[@]}"; dpkg --print-architecture; } |
  sha256sum | cut -c1-16)
NAME=localhost/cascade/base:$key
ARCHIVE=$OUT/base-$key.oci.tar

have() { buildah inspect --type image "$NAME" >/dev/null 2>&1; }
if have; then echo "$NAME"; exit 0; fi

mkdir -p "$OUT"
exec 8>"$OUT/.base.lock"
flock 8
if have; then echo "$NAME"; exit 0; fi

if [[ -s $ARCHIVE ]]; then
  echo "base-image: restoring $NAME from $ARCHIVE" >&2
  buildah pull -q "oci-archive:$ARCHIVE" >/dev/null
  buildah tag "$(buildah images -q --no-trunc --filter "reference=$NAME" | head -1)" "$NAME" 2>/dev/null || true
  have && { echo "$NAME"; exit 0; }
fi

command -v mmdebstrap >/dev/null || { echo "base-image: mmdebstrap not installed (make setup installs it)" >&2; exit 1; }
start=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/cascade-base.XXXXXX")
ctr=
cleanup() {
  [[ -n $ctr ]] && buildah rm "$ctr" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

aptopts=()
for f in "${APT_CONF[@]}"; do aptopts+=("--aptopt=$f"); done
echo "base-image: mmdebstrap $SUITE ($PACKAGES) from ${SOURCES[*]} ..." >&2
mmdebstrap --mode=root --variant=apt --format=tar --include="$PACKAGES" \
  "${aptopts[@]}" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --customize-hook='chroot "$1" apt-get -y -qq purge usrmerge perl perl-modules-5.36 libperl5.36 libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl >/dev/null' \
  --customize-hook='rm -f "$1/etc/apt/apt.conf.d/99mmdebstrap" "$1/etc/hostname" "$1/etc/resolv.conf"' \
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*.log "$1"/var/log/apt/*' \
  --quiet \
  "$SUITE" "$work/rootfs.tar" "${SOURCES[@]}"

ctr=$(buildah from scratch)
buildah add --quiet "$ctr" "$work/rootfs.tar" / >/dev/null
mkdir -p "$work/apt"
# The same files (and names) as in debian:bookworm-slim, which python:*-slim-bookworm builds on.
cat >"$work/apt/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
echo 'Acquire::Languages "none";' >"$work/apt/docker-no-languages"
echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$work/apt/docker-autoremove-suggests"
chmod 644 "$work"/apt/*
buildah copy --quiet "$ctr" "$work/apt/" /etc/apt/apt.conf.d/ >/dev/null
buildah config --env LANG=C.UTF-8 --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --cmd '["python3"]' --os linux --arch "$(dpkg --print-architecture)" \
  --label "org.opencontainers.image.description=Debian $SUITE + python3 from Debian packages (mmdebstrap), Cascade's local PYTHON_IMAGE" \
  "$ctr"
buildah commit --quiet --rm "$ctr" "$NAME" >/dev/null
ctr=
buildah push --quiet "$NAME" "oci-archive:$ARCHIVE.tmp:$NAME" >/dev/null
mv -f "$ARCHIVE.tmp" "$ARCHIVE"
# Older bases of this cache (another key) are no longer needed.
for old in "$OUT"/base-*.oci.tar; do [[ $old == "$ARCHIVE" ]] || rm -f "$old"; done
{ buildah images --noheading --format '{{.Name}}:{{.Tag}}' | grep '^localhost/cascade/base:' || true; } |
  while read -r old; do [[ $old == "$NAME" ]] || buildah rmi "$old" >/dev/null 2>&1 || true; done
echo "base-image: $NAME made in $((SECONDS - start))s" >&2
echo "$NAME"
