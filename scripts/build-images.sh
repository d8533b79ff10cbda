#!/usr/bin/env bash
# Builds the pod's three images and the single-binary image from the workspace root, tagged as
# the manifests name them (REGISTRY and TAG override). Needs a reachable Docker engine; without
# one it says so and fails.
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKER=${DOCKER:-docker}
REGISTRY=${REGISTRY:-ghcr.io/kube-dns-rs}
TAG=${TAG:-$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)}

if ! command -v "$DOCKER" >/dev/null 2>&1 || ! "$DOCKER" info >/dev/null 2>&1; then
  echo "make images: no Docker engine available ('$DOCKER info' failed); no image built" >&2
  exit 1
fi

# images/<directory> → <registry>/<image>:<tag>
for entry in kubedns:kubedns dnsmasq:dnsmasq-rs healthz:healthz single:kube-dns-single; do
  dir=${entry%%:*}
  image=$REGISTRY/${entry#*:}:$TAG
  echo "building $image from images/$dir/Dockerfile"
  DOCKER_BUILDKIT=1 "$DOCKER" build -f "images/$dir/Dockerfile" -t "$image" .
done
