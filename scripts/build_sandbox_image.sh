#!/usr/bin/env bash
# Build the sandbox image with no container registry:
#   1. scripts/rootfs.sh makes (once, cached) a debootstrap root filesystem with the packages in
#      docker/sandbox/packages.txt;
#   2. `docker import` turns it into the base image wflo-sandbox-rootfs:<key>;
#   3. `docker build` applies docker/sandbox/Dockerfile on top (legacy builder, no BuildKit needed).
# Usage: scripts/build_sandbox_image.sh [TAG]   (default: $WFLO_SANDBOX_IMAGE or wflo-sandbox:latest)
# Talks to the engine named by DOCKER_HOST (e.g. unix:///run/wflo-test-docker/docker.sock).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
tag=${1:-${WFLO_SANDBOX_IMAGE:-wflo-sandbox:latest}}
pkgs=$(grep -v '^\s*#' "$here/docker/sandbox/packages.txt" | tr -s ' \n' ',' | sed 's/^,//; s/,$//')
key=$(printf '%s' "$pkgs" | sha256sum | cut -c1-12)
base="wflo-sandbox-rootfs:$key"
command -v docker >/dev/null || { echo "build_sandbox_image.sh: the docker CLI is not installed (apt-get install docker.io)" >&2; exit 1; }
if ! docker image inspect "$base" >/dev/null 2>&1; then
  tarball=$(mktemp /tmp/wflo-sandbox-rootfs.XXXXXX.tar)
  trap 'rm -f "$tarball"' EXIT
  "$here/scripts/rootfs.sh" "$tarball" "$pkgs"
  docker import "$tarball" "$base" >/dev/null
fi
log=$(DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE_IMAGE=$base" -t "$tag" "$here/docker/sandbox" 2>&1) \
  || { printf '%s\n' "$log" >&2; echo "build_sandbox_image.sh: docker build failed" >&2; exit 1; }
echo "$tag"
