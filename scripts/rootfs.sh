#!/usr/bin/env bash
# Build (once, cached) a Debian bookworm root filesystem tarball with the given packages, using
# debootstrap from Debian's mirror: no container registry needed.
#   scripts/rootfs.sh OUT.tar PKG[,PKG...]
# The tarball is cached under /var/cache/wflo keyed by the package list; OUT.tar is a hard link/copy.
set -euo pipefail
out=$1; pkgs=$2
cache=/var/cache/wflo; mkdir -p "$cache"
key=$(printf '%s' "bookworm:$pkgs" | sha256sum | cut -c1-16)
cached="$cache/rootfs-$key.tar"
if [ ! -s "$cached" ]; then
  command -v debootstrap >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; }
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list)
  dir=$(mktemp -d /tmp/wflo-rootfs.XXXXXX)
  debootstrap --variant=minbase --include="$pkgs" bookworm "$dir" "$mirror" >"$dir.log" 2>&1 \
    || { tail -5 "$dir.log" >&2; echo "rootfs.sh: debootstrap failed (log $dir.log)" >&2; exit 1; }
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  tar -C "$dir" -cf "$cached.tmp" . && mv "$cached.tmp" "$cached"
  rm -rf "$dir" "$dir.log"
fi
ln -f "$cached" "$out" 2>/dev/null || cp "$cached" "$out"
