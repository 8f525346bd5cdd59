#!/usr/bin/env bash
# Makes the local base image (Debian's python3 and nothing else) and prints its reference.
#
#   tools/base-image.sh
#
# There is no registry to pull python:3.11-slim from, so `make image` and the image tests build
# on a base made here from Debian packages: mmdebstrap installs python3 into a staging chroot
# (maintainer scripts run, so the standard library is compiled and the CA bundle generated), then
# tools/image/base_rootfs.py copies out only the run-time files: no shell, no package manager.
# Same layout as Debian's python (/usr/bin/python3), so the Dockerfile works on both bases.
#
# Cached by a content key (this script, the assembler, the suite and the package list): the
# rootfs tarball under $CACHE_DIR/base/ and the image in the project's buildah storage. Bumping
# anything in the key builds a new base; an unchanged key costs one `buildah images` call.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache=${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/teleport-argocd-agent}
buildah=$here/buildah.sh
log() { printf 'base-image: %s\n' "$*" >&2; }

suite=$BASE_DEBIAN_SUITE
arch=$(dpkg --print-architecture)
# What the image holds: python3 with venv (the Dockerfile's builder stage makes a virtualenv),
# CA certificates, /etc/services and friends. Their dependencies come along; tooling does not.
packages=(python3 python3.11-venv ca-certificates netbase base-files libgcc-s1)
mirrors=(
  "deb http://deb.debian.org/debian $suite main"
  "deb http://deb.debian.org/debian $suite-updates main"
  "deb http://deb.debian.org/debian-security $suite-security main"
)

key=$(
  {
    cat "$here/base-image.sh" "$here/image/base_rootfs.py"
    echo "$suite $arch ${packages[*]}"
  } | sha256sum | cut -c1-16
)
ref=localhost/teleport-argocd-agent-base:$suite-$key

if "$buildah" inspect --type image "$ref" >/dev/null 2>&1; then
  echo "$ref"
  exit 0
fi

mkdir -p "$cache/base"
exec 9>"$cache/base/.lock"
flock 9
if "$buildah" inspect --type image "$ref" >/dev/null 2>&1; then # built while we waited
  echo "$ref"
  exit 0
fi

tarball=$cache/base/$suite-$key.tar
if [ ! -s "$tarball" ]; then
  mmdebstrap=$("$here/install.sh" mmdebstrap)
  work=$cache/base/work-$key
  rm -rf "$work"
  mkdir -p "$work"
  trap 'rm -rf "$work"' EXIT
  log "bootstrapping Debian $suite with ${packages[*]} (about a minute, once)"
  bootstrap_started=$SECONDS
  include=$(
    IFS=,
    echo "${packages[*]}"
  )
  "$mmdebstrap" --quiet --mode=root --variant=essential --include="$include" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    "$suite" "$work/staging" "${mirrors[@]}" >&2
  python3 "$here/image/base_rootfs.py" "$work/staging" "$work/rootfs" "${packages[@]}"
  tar --numeric-owner --sort=name -C "$work/rootfs" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  log "bootstrapped in $((SECONDS - bootstrap_started))s"
  rm -rf "$work"
  trap - EXIT
fi

log "importing $tarball as $ref"
started=$SECONDS
ctr=$("$buildah" from --name "base-$key-$$" scratch)
trap '"$buildah" rm "$ctr" >/dev/null 2>&1 || true' EXIT
"$buildah" add --quiet "$ctr" "$tarball" / >/dev/null
"$buildah" config \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 \
  --cmd '["/usr/bin/python3"]' \
  --label "org.opencontainers.image.title=teleport-argocd-agent-base" \
  --label "org.opencontainers.image.description=Debian $suite python3 runtime without shell or package manager (local test base)" \
  --label "org.opencontainers.image.base.name=debian:$suite" \
  "$ctr"
"$buildah" commit --quiet --rm --identity-label=false "$ctr" "$ref" >/dev/null
trap - EXIT
log "imported in $((SECONDS - started))s"

# Older bases (an earlier key) only take space; one still used by a built image stays.
for old in "$cache"/base/*.tar; do
  [ "$old" = "$tarball" ] || rm -f "$old"
done
{ "$buildah" images --filter reference=localhost/teleport-argocd-agent-base --format '{{.Name}}:{{.Tag}}' || true; } |
  { grep -v -x -F "$ref" || true; } |
  while read -r old; do "$buildah" rmi "$old" >/dev/null 2>&1 || true; done
echo "$ref"
