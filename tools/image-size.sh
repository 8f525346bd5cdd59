#!/usr/bin/env bash
# Prints the uncompressed size in bytes of a built image (the sum of its layers).
#
#   tools/image-size.sh [IMAGE]     default: the image `make image` tags for this version
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ $# -ge 1 ]; then
  image=$1
else
  version=$(python3 -c 'import tomllib; print(tomllib.load(open("'"$here"'/../pyproject.toml", "rb"))["project"]["version"])')
  image=${IMAGE_REPOSITORY:-ghcr.io/teleport-argocd-agent/teleport-argocd-agent}:$version
fi
# Locally committed layers are stored uncompressed, so the manifest's layer sizes are the
# uncompressed tar sizes (what `docker images` reports).
"$here/buildah.sh" inspect --type image --format '{{.Manifest}}' "$image" |
  python3 -c 'import json, sys; print(sum(layer["size"] for layer in json.load(sys.stdin)["layers"]))'
