#!/usr/bin/env bash
# Build local stand-ins for the compose stack's infrastructure images, with no container registry:
# one debootstrap bookworm root filesystem (scripts/rootfs.sh, cached) with Debian's postgresql,
# redis-server and socat, `docker import`ed as the base, then one small image per service. For
# tests and air-gapped hosts; production pulls the upstream images named in docker-compose.yml.
#
#   docker/standins/build.sh     # prints POSTGRES_IMAGE=... REDIS_IMAGE=... KAFKA_IMAGE=... lines
# Environment: DOCKER_HOST (which engine), WFLO_PYTHON (a python with noida-db installed; default
# .venv/bin/python: the dev extra installs it).
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${WFLO_PYTHON:-$PWD/.venv/bin/python}
pkgs=postgresql,redis-server,socat,python3-minimal
log() { echo "standins/build.sh: $*" >&2; }

base="wflo-standin-base:$(printf '%s' "bookworm:$pkgs" | sha256sum | cut -c1-12)"
if ! docker image inspect "$base" >/dev/null 2>&1; then
  log "importing $base"
  tar=$(mktemp /tmp/wflo-standin-rootfs.XXXXXX.tar)
  trap 'rm -f "$tar"' EXIT
  scripts/rootfs.sh "$tar" "$pkgs"
  docker import "$tar" "$base" >/dev/null
  rm -f "$tar"
fi

noida=$("$py" -c 'import noida_db, os; print(os.path.join(os.path.dirname(noida_db.__file__), "noida-db"))') \
  || { log "noida-db is not installed for $py (pip install noida-db==0.2.3, or EXTRAS=dev scripts/bootstrap.sh)"; exit 1; }
export DOCKER_BUILDKIT=0   # the legacy builder: no buildx needed
for service in postgres redis kafka; do
  ctx=$(mktemp -d /tmp/wflo-standin-ctx.XXXXXX)
  cp docker/standins/$service/* "$ctx/"
  [ "$service" = kafka ] && cp "$noida" "$ctx/noida-db"
  tag="wflo-standin-$service:$( (echo "$base"; cd "$ctx" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-12)"
  if ! docker image inspect "$tag" >/dev/null 2>&1; then
    log "building $tag"
    docker build -q --build-arg BASE_IMAGE="$base" -t "$tag" "$ctx" >/dev/null
  fi
  rm -rf "$ctx"
  echo "$(echo "$service" | tr a-z A-Z)_IMAGE=$tag"
done
