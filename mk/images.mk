# Cascade's three images without Docker: buildah builds Dockerfile.edge, .operator and
# .transcoder on a base made locally with mmdebstrap from Debian packages (no registry is
# reachable: scripts/base-image.sh), each exported as an OCI archive for `ctr import` into
# ~/.cache/cascade/images/ and skipped when the archive for its inputs' hash exists.
# Included by the Makefile.
#   make images          build what is missing; prints each image, its size and archive; also
#                        the test node's pause and Redis images (scripts/node-images.sh);
#                        `make cluster-up` imports them all into the node's containerd
#   make images-check    check the built images hold what they must (scripts/images-build.sh --check)
# A user with Docker builds the same Dockerfiles from the public base:
#   docker build -f Dockerfile.edge -t cascade/edge .

.PHONY: images images-check

# buildah and its OCI runtime (runc; RUN steps use --isolation chroot, `buildah run` checks
# too), mmdebstrap for the base. `make setup` installs them with the others.
IMAGES_APT_PACKAGES := buildah runc mmdebstrap
APT_PACKAGES += $(IMAGES_APT_PACKAGES)
.cache/apt.stamp: mk/images.mk

images: .cache/apt.stamp $(HLSJS)
	@scripts/images-build.sh
	@scripts/node-images.sh

images-check: .cache/apt.stamp
	@scripts/images-build.sh --check
