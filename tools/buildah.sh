#!/usr/bin/env bash
# buildah with the project's own image storage, so nothing here touches the machine's containers.
#
#   tools/buildah.sh ARGS...      e.g. tools/buildah.sh images
#
# No daemon and no registry: vfs storage under $CACHE_DIR/containers/ (survives between runs and
# clones), run state under /run (cleared at boot, as buildah expects). Installs buildah on first use.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/teleport-argocd-agent}
bin=$("$here/install.sh" buildah)

exec "$bin" \
  --root "$cache/containers/storage" \
  --runroot "${BUILDAH_RUNROOT:-/run/teleport-argocd-agent/containers}" \
  --storage-driver vfs \
  "$@"
