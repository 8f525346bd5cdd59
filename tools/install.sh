#!/usr/bin/env bash
# Installs one external tool into the versioned cache and prints its path.
#
#   tools/install.sh NAME        NAME: kube-apiserver kubectl helm ct etcd argocd redis-server
#                                      buildah mmdebstrap teleport-standin helm-docs promtool
#                                      monitoring-crds (prints a directory of CRD files)
#                                      kubelet kube-controller-manager kube-scheduler
#                                      containerd runc cni-plugins docker-registry pause-image
#
# A tool already on PATH at the pinned version is used as it is; otherwise it is
# built from its Go module with the machine's Go toolchain (there is no way to
# download prebuilt binaries here) or installed from Debian. Every build lands in
# $TOOLS_CACHE/<name>-<version>/, so a second run costs nothing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache=${TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/teleport-argocd-agent/tools}
name=${1:?usage: install.sh NAME}

log() { printf 'tools: %s\n' "$*" >&2; }

# Build with a private lock so two parallel `make` runs never build the same tool twice.
with_lock() {
  mkdir -p "$cache"
  exec 9>"$cache/.lock-$name"
  flock 9
}

go_build() { # dir version out-dir packages...
  local dir=$1 out=$2; shift 2
  log "building $* (cold builds take minutes; cached afterwards)"
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$out/" "$@")
}

apt_install() { # package
  if ! dpkg -s "$1" >/dev/null 2>&1; then
    log "installing Debian package $1"
    export DEBIAN_FRONTEND=noninteractive
    # Another install on the machine may hold dpkg's lock for a while: wait for it.
    apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$1" >/dev/null
  fi
}

# A Debian package whose daemon the node fixture starts itself: the package's own service, if
# the machine runs systemd, is disabled so it never shares the node's ports or state.
apt_daemon() { # package service
  dpkg -s "$1" >/dev/null 2>&1 && return 0
  with_lock
  apt_install "$1"
  if [ -d /run/systemd/system ]; then systemctl disable --now "$2" >/dev/null 2>&1 || true; fi
}

case "$name" in
  kube-apiserver|kubectl|kubelet|kube-controller-manager|kube-scheduler)
    # The "-stamped" directory holds builds that report their real version (as a release build
    # does): clients such as helm check a chart's kubeVersion against it.
    dir="$cache/kubernetes-$KUBERNETES_VERSION-stamped"
    if [ ! -x "$dir/$name" ]; then
      with_lock
      if [ ! -x "$dir/$name" ]; then
        minor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)
        stamp=""
        for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
          stamp="$stamp -X $pkg.gitVersion=v$KUBERNETES_VERSION -X $pkg.gitMajor=1"
          stamp="$stamp -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
        done
        log "building k8s.io/kubernetes/cmd/$name $KUBERNETES_VERSION (cold builds take minutes; cached afterwards)"
        (cd "$here/kubernetes" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w$stamp" \
          -o "$dir.tmp/" "k8s.io/kubernetes/cmd/$name")
        mkdir -p "$dir" && mv "$dir.tmp/$name" "$dir/$name" && rmdir "$dir.tmp" 2>/dev/null || true
      fi
    fi
    echo "$dir/$name"
    ;;
  helm)
    # Helm's default "cluster" version for `helm template` comes from link-time flags; pin it to
    # the Kubernetes version the tests run, as Helm's own release build does for its client-go.
    kube_minor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)
    dir="$cache/helm-$HELM_VERSION-k8s1.$kube_minor"
    if [ ! -x "$dir/helm" ]; then
      with_lock
      [ -x "$dir/helm" ] || GOBIN="$dir" CGO_ENABLED=0 go install -trimpath \
        -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION \
          -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
          -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$kube_minor" \
        "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
    fi
    echo "$dir/helm"
    ;;
  ct)
    dir="$cache/ct-$CT_VERSION"
    if [ ! -x "$dir/ct" ]; then
      with_lock
      [ -x "$dir/ct" ] || go_build "$here/ct" "$dir" github.com/helm/chart-testing/v3/ct
    fi
    echo "$dir/ct"
    ;;
  etcd)
    if command -v etcd >/dev/null 2>&1; then command -v etcd; exit 0; fi
    with_lock
    apt_install "$ETCD_DEBIAN_PACKAGE"
    # Debian's package also starts a system etcd on the default ports; tests use their own.
    (systemctl disable --now etcd >/dev/null 2>&1 || service etcd stop >/dev/null 2>&1 || pkill -x etcd) || true
    command -v etcd
    ;;
  argocd)
    # One multi-call binary: it runs as the application controller, repo-server or
    # ApplicationSet controller depending on the name it is started under (argv[0]).
    dir="$cache/argocd-$ARGOCD_VERSION"
    if [ ! -x "$dir/argocd" ]; then
      with_lock
      if [ ! -x "$dir/argocd" ]; then
        grep -q "^require github.com/argoproj/argo-cd/v3 v$ARGOCD_VERSION\$" "$here/argocd/go.mod" || {
          log "ARGOCD_VERSION=$ARGOCD_VERSION in tools/versions.env differs from tools/argocd/go.mod"; exit 1; }
        log "building github.com/argoproj/argo-cd/v3/cmd $ARGOCD_VERSION with $ARGOCD_GO_TOOLCHAIN" \
          "(cold builds take 5+ minutes and about 3 GB of memory; cached afterwards)"
        # Argo CD needs a newer Go than the machine's: the toolchain comes from the module proxy,
        # for this build only. The version stamp is the one Argo CD's own release build sets.
        mkdir -p "$dir.tmp"
        (cd "$here/argocd" && GOTOOLCHAIN=$ARGOCD_GO_TOOLCHAIN CGO_ENABLED=0 go build -trimpath \
          -ldflags "-s -w -X github.com/argoproj/argo-cd/v3/common.version=$ARGOCD_VERSION" \
          -o "$dir.tmp/argocd" github.com/argoproj/argo-cd/v3/cmd)
        mkdir -p "$dir" && mv "$dir.tmp/argocd" "$dir/argocd" && rmdir "$dir.tmp" 2>/dev/null || true
      fi
    fi
    echo "$dir/argocd"
    ;;
  redis-server)
    if ! command -v redis-server >/dev/null 2>&1; then
      with_lock
      apt_install "$REDIS_DEBIAN_PACKAGE"
      # Debian's package also starts a system redis on the default port; tests start their own.
      # Stopped by its pid file, so no redis a test started is touched.
      (systemctl disable --now redis-server >/dev/null 2>&1 || service redis-server stop >/dev/null 2>&1 \
        || kill "$(cat /run/redis/redis-server.pid)") 2>/dev/null || true
    fi
    command -v redis-server
    ;;
  teleport-standin)
    # The test stand-in for Teleport (tests/standin), cached by a hash of its sources: an edit
    # rebuilds it into a new directory, an unchanged tree costs one hash.
    src="$here/../tests/standin"
    hash=$(cd "$src" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 \
      | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
    dir="$cache/standin-$hash"
    if [ ! -x "$dir/teleport-standin" ]; then
      with_lock
      [ -x "$dir/teleport-standin" ] || go_build "$src" "$dir" ./cmd/teleport-standin
      # Builds of other source trees stay a day (other worktrees may use them), then go.
      find "$cache" -maxdepth 1 -name 'standin-*' ! -name "standin-$hash" -mmin +1440 \
        -exec rm -rf {} + 2>/dev/null || true
    fi
    echo "$dir/teleport-standin"
    ;;
  buildah)
    command -v buildah >/dev/null 2>&1 || { with_lock; apt_install "$BUILDAH_DEBIAN_PACKAGE"; }
    command -v buildah
    ;;
  mmdebstrap)
    command -v mmdebstrap >/dev/null 2>&1 || { with_lock; apt_install "$MMDEBSTRAP_DEBIAN_PACKAGE"; }
    command -v mmdebstrap
    ;;
  containerd)
    apt_daemon "$CONTAINERD_DEBIAN_PACKAGE" containerd
    command -v containerd
    ;;
  runc)
    command -v runc >/dev/null 2>&1 || { with_lock; apt_install "$RUNC_DEBIAN_PACKAGE"; }
    command -v runc
    ;;
  cni-plugins)
    # Prints the directory of the plugins (bridge, host-local, loopback, ...).
    [ -x /usr/lib/cni/bridge ] || { with_lock; apt_install "$CNI_PLUGINS_DEBIAN_PACKAGE"; }
    echo /usr/lib/cni
    ;;
  docker-registry)
    apt_daemon "$REGISTRY_DEBIAN_PACKAGE" docker-registry
    command -v docker-registry
    ;;
  pause-image)
    # The pod sandbox image, an OCI archive holding only the static program of tools/pause;
    # cached by a hash of its sources. Prints the archive's path; its image name is in the
    # file next to it (name).
    src="$here/pause"
    hash=$(cd "$src" && find . -type f \( -name '*.go' -o -name go.mod \) -print0 \
      | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
    dir="$cache/pause-$hash"
    if [ ! -f "$dir/pause.tar" ]; then
      with_lock
      if [ ! -f "$dir/pause.tar" ]; then
        rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
        go_build "$src" "$dir.tmp" .
        image=localhost/teleport-argocd-agent-pause:$hash
        buildah=$("$here/install.sh" buildah)
        # A throw-away buildah storage: this image never needs to live anywhere but the archive.
        store="$dir.tmp/storage"
        b() { "$buildah" --root "$store/root" --runroot "$store/run" --storage-driver vfs "$@"; }
        ctr=$(b from --quiet scratch)
        b copy --quiet "$ctr" "$dir.tmp/pause" /pause >/dev/null
        b config --entrypoint '["/pause"]' --user 65535:65535 "$ctr"
        b commit --quiet --rm --identity-label=false "$ctr" "$image" >/dev/null
        b push --quiet "$image" "oci-archive:$dir.tmp/pause.tar:$image"
        b rmi --all >/dev/null 2>&1 || true
        rm -rf "$store" "$dir.tmp/pause"
        echo "$image" >"$dir.tmp/name"
        rm -rf "$dir" && mv "$dir.tmp" "$dir"
        # Builds of other source trees stay a day (other worktrees may use them), then go.
        find "$cache" -maxdepth 1 -name 'pause-*' ! -name "pause-$hash" -mmin +1440 \
          -exec rm -rf {} + 2>/dev/null || true
      fi
    fi
    echo "$dir/pause.tar"
    ;;
  helm-docs)
    dir="$cache/helm-docs-$HELM_DOCS_VERSION"
    if [ ! -x "$dir/helm-docs" ]; then
      with_lock
      [ -x "$dir/helm-docs" ] || GOBIN="$dir" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" \
        "github.com/norwoodj/helm-docs/cmd/helm-docs@v$HELM_DOCS_VERSION"
    fi
    echo "$dir/helm-docs"
    ;;
  promtool)
    if ! command -v promtool >/dev/null 2>&1; then
      with_lock
      apt_install "$PROMETHEUS_DEBIAN_PACKAGE"
      # Debian's package also starts a system Prometheus; only its promtool is wanted.
      (systemctl disable --now prometheus >/dev/null 2>&1 || service prometheus stop >/dev/null 2>&1 \
        || kill "$(cat /run/prometheus/prometheus.pid)") 2>/dev/null || true
    fi
    command -v promtool
    ;;
  monitoring-crds)
    # The ServiceMonitor, PodMonitor and PrometheusRule CRDs, as prometheus-operator publishes them
    # in its Go module (example/prometheus-operator-crd), from the module cache.
    dir=$(cd "$here" && GOFLAGS=-mod=mod go mod download -json \
      "github.com/prometheus-operator/prometheus-operator@v$PROMETHEUS_OPERATOR_VERSION" \
      | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [ -d "$dir/example/prometheus-operator-crd" ] || { log "no CRDs in prometheus-operator module ($dir)"; exit 1; }
    echo "$dir/example/prometheus-operator-crd"
    ;;
  *)
    log "unknown tool '$name'"; exit 2 ;;
esac
