#!/usr/bin/env bash
# Publishes a release to an OCI registry: the packaged chart and the agent image, each at the
# version the chart names.
#
#   REGISTRY=host[:port][/path] IMAGE_REF=<local image> tools/release.sh   (normally `make release`)
#
#   oci://$REGISTRY/charts/teleport-argocd-agent:<chart version>   helm install oci://...
#   <host of $REGISTRY>/<image repository path>:<chart appVersion>  the chart's default image
#
# The image keeps the repository path of the chart's default image.repository, so installing
# from another registry changes only the host (REGISTRY=ghcr.io/teleport-argocd-agent publishes
# exactly the names the chart's defaults and README use). REGISTRY_CA=<PEM file> trusts a private CA (for helm
# and buildah alike); TLS is always verified.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
registry=${REGISTRY:?set REGISTRY=host[:port]}
image_ref=${IMAGE_REF:?set IMAGE_REF (the output of make image)}
log() { printf 'release: %s\n' "$*" >&2; }

chart_value() { sed -n "s/^$1:[[:space:]]*[\"']\{0,1\}\([^\"' ]*\).*/\1/p" "$root/chart/Chart.yaml"; }
version=$(chart_value version)
app_version=$(chart_value appVersion)
repository=$(sed -n '/^image:/,/^[^ ]/s/^  repository:[[:space:]]*//p' "$root/chart/values.yaml")
path=${repository#*/} # without the public registry host
label=$("$here/buildah.sh" inspect --type image \
  --format '{{index .OCIv1.Config.Labels "org.opencontainers.image.version"}}' "$image_ref")
[ "$label" = "$app_version" ] ||
  { log "image $image_ref is version '$label', not the chart's appVersion $app_version"; exit 1; }

helm=$("$here/install.sh" helm)
out="$root/build/release"
rm -rf "$out" && mkdir -p "$out"
cert_args=()
if [ -n "${REGISTRY_CA:-}" ]; then
  # helm (Go) reads extra roots from SSL_CERT_FILE; buildah takes a directory of *.crt files.
  export SSL_CERT_FILE=$REGISTRY_CA
  mkdir -p "$out/certs" && cp "$REGISTRY_CA" "$out/certs/ca.crt"
  cert_args=(--cert-dir "$out/certs")
fi

"$helm" package "$root/chart" --destination "$out" >/dev/null
"$helm" push "$out/teleport-argocd-agent-$version.tgz" "oci://$registry/charts" 2>&1 | sed 's/^/helm: /' >&2
log "chart oci://$registry/charts/teleport-argocd-agent:$version"
image="${registry%%/*}/$path:$app_version"
"$here/buildah.sh" push --quiet "${cert_args[@]}" "$image_ref" "docker://$image"
log "image $image"
