#!/usr/bin/env bash
# Builds the agent image from Dockerfile with buildah and prints its reference.
#
#   tools/build-image.sh            (normally through `make image`)
#
# Environment: UV (the pinned uv), PIP_PYTHON (a python with pip, for downloading wheels),
# CACHE_DIR, IMAGE_REPOSITORY (default ghcr.io/teleport-argocd-agent/teleport-argocd-agent),
# BASE_IMAGE (default: the local base from tools/base-image.sh).
#
# Cached: the image is also tagged localhost/teleport-argocd-agent:build-<key>, where <key>
# hashes everything that goes into it (Dockerfile, lock, agent sources, base image, version);
# when that tag exists nothing is built. Otherwise the build context is staged under
# build/image/ (requirements with hashes from uv.lock, the wheels downloaded by those hashes,
# the project wheel built from the tree) and `buildah bud` builds offline from it.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cache=${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/teleport-argocd-agent}
export CACHE_DIR=$cache
buildah=$here/buildah.sh
uv=${UV:-uv}
pip_python=${PIP_PYTHON:-python3}
repository=${IMAGE_REPOSITORY:-ghcr.io/teleport-argocd-agent/teleport-argocd-agent}
started=$SECONDS
log() { printf 'image: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

cd "$root"
version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
if [ -f chart/Chart.yaml ]; then
  app_version=$(sed -n 's/^appVersion:[[:space:]]*["'\'']\{0,1\}\([^"'\'' ]*\).*/\1/p' chart/Chart.yaml)
  [ "$app_version" = "$version" ] ||
    die "chart/Chart.yaml appVersion ($app_version) differs from pyproject.toml version ($version)"
fi
release=$repository:$version

base=${BASE_IMAGE:-$("$here/base-image.sh")}
base_id=$("$buildah" images --no-trunc --format '{{.ID}}' "$base" 2>/dev/null || true)
[ -n "$base_id" ] || [ -n "${BASE_IMAGE:-}" ] || die "base image $base is missing"

key=$(
  {
    echo "version=$version base=$base@$base_id arch=$(uname -m)"
    for f in Dockerfile .dockerignore uv.lock pyproject.toml README.md \
      tools/build-image.sh tools/image/build_venv.py; do
      echo "== $f" && cat "$f"
    done
    find agent -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | sort -z |
      xargs -0 sha256sum
  } | sha256sum | cut -c1-16
)
tag=localhost/teleport-argocd-agent:build-$key

if "$buildah" inspect --type image "$tag" >/dev/null 2>&1; then
  "$buildah" tag "$tag" "$release"
  log "up to date: $release ($tag)"
  echo "$release"
  exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.image.lock"
flock 9
if "$buildah" inspect --type image "$tag" >/dev/null 2>&1; then # built while we waited
  "$buildah" tag "$tag" "$release"
  echo "$release"
  exit 0
fi

# The build context: requirements with hashes, their wheels, the project wheel.
context=$root/build/image
rm -rf "$context"
mkdir -p "$context/wheels" "$context/dist"
log "staging the build context in build/image/"
"$uv" export --quiet --frozen --no-dev --no-emit-project --format requirements-txt \
  --no-header --no-annotate --output-file "$context/requirements.txt"
# Wheels for the image's interpreter (CPython 3.11, glibc 2.36 of bookworm) whatever this
# machine runs; each download is checked against the lock's hashes (again at install time).
arch=$(uname -m)
platforms=()
for minor in $(seq 36 -1 5); do platforms+=(--platform "manylinux_2_${minor}_$arch"); done
platforms+=(--platform "manylinux2014_$arch" --platform "manylinux2010_$arch" --platform "manylinux1_$arch")
"$pip_python" -m pip download --quiet --disable-pip-version-check --require-hashes --no-deps \
  --only-binary=:all: --implementation cp --python-version 3.11 \
  --abi cp311 --abi abi3 --abi none "${platforms[@]}" \
  --dest "$context/wheels" --requirement "$context/requirements.txt"
"$uv" build --quiet --wheel --out-dir "$context/dist" "$root"
wheel=$context/dist/teleport_argocd_agent-$version-py3-none-any.whl
[ -f "$wheel" ] || die "uv build did not produce $(basename "$wheel"): $(ls "$context/dist")"

log "building $release on $base (buildah, chroot isolation, vfs storage)"
"$buildah" bud --quiet --isolation chroot --pull=false --identity-label=false \
  --build-arg "BASE_IMAGE=$base" --build-arg "VERSION=$version" \
  --tag "$tag" --tag "$release" --file Dockerfile "$root" >/dev/null

# Keep the three newest builds; older ones only take space.
"$buildah" images --filter reference=localhost/teleport-argocd-agent --format '{{.CreatedAtRaw}} {{.Name}}:{{.Tag}}' |
  { grep ':build-' || true; } | sort -r | tail -n +4 | while read -r _ old; do
  "$buildah" rmi "$old" >/dev/null 2>&1 || true
done
# tools/image-run.sh's unpacked copies of images that are no longer kept.
kept=$("$buildah" images --no-trunc --filter dangling=false --format '{{.ID}}' | sed 's/^sha256://' | cut -c1-12)
"$buildah" containers --format '{{.ContainerName}}' | { grep '^image-run-' || true; } | while read -r name; do
  grep -q -x -F "${name#image-run-}" <<<"$kept" || "$buildah" rm "$name" >/dev/null 2>&1 || true
done
"$buildah" rmi --prune >/dev/null 2>&1 || true

log "built $release ($tag) in $((SECONDS - started))s, $("$here/image-size.sh" "$release") bytes"
echo "$release"
