#!/usr/bin/env bash
# Runs a built image the way a Kubernetes pod with a restricted security context would, without
# a container engine:
#
#   tools/image-run.sh [options] IMAGE [ARG...]      ARGs replace the image's CMD
#     --rw                      writable root filesystem (default: read-only, like
#                               readOnlyRootFilesystem: true; /tmp is a fresh tmpfs either way)
#     --user UID:GID            numeric IDs (default: the image's USER)
#     --entrypoint PATH         replaces the image's ENTRYPOINT
#     --env NAME=VALUE          added to the image's environment (repeatable)
#     --volume SRC:DST[:ro]     bind mount from this machine (repeatable)
#
# How: the image's root filesystem (unpacked once by buildah) under a throwaway overlay; `unshare`
# makes new mount, PID, UTS and IPC namespaces (the network stays the machine's, so loopback
# servers are reachable); inside, the overlay is remounted read-only, /proc, /dev
# (null, zero, random, urandom, tty only), /tmp and the volumes are mounted, and `chroot
# --userspec` drops to the user with no supplementary groups and no capabilities (no_new_privs
# set). The process is PID 1 of its namespace, as in a pod. Exit status is the process's.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/teleport-argocd-agent}
buildah=$here/buildah.sh
usage() {
  sed -n '2,/^set -e/p' "${BASH_SOURCE[0]}" | sed -n 's/^# \{0,1\}//p' >&2
  exit 2
}

read_only=1 user="" entrypoint="" envs=() volumes=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rw) read_only=0 ;;
    --user) user=$2 && shift ;;
    --entrypoint) entrypoint=$2 && shift ;;
    --env) envs+=("$2") && shift ;;
    --volume) volumes+=("$2") && shift ;;
    --) shift && break ;;
    -*) usage ;;
    *) break ;;
  esac
  shift
done
[ $# -ge 1 ] || usage
image=$1
shift

# The image's own configuration: environment, user, entrypoint, command.
config=$("$buildah" inspect --type image "$image")
field() { python3 -c 'import json, sys; c = json.load(sys.stdin)["OCIv1"]["config"]; v = c.get(sys.argv[1]) or ([] if sys.argv[1] != "User" else ""); print("\0".join(v) if isinstance(v, list) else v, end="")' "$1" <<<"$config"; }
mapfile -d '' -t image_env < <(field Env)
mapfile -d '' -t image_entrypoint < <(field Entrypoint)
mapfile -d '' -t image_cmd < <(field Cmd)
[ -n "$user" ] || user=$(field User)
[ -n "$user" ] || user=0:0
[[ "$user" =~ ^[0-9]+:[0-9]+$ ]] || {
  echo "image-run: user must be numeric UID:GID, got '$user'" >&2
  exit 2
}
if [ -n "$entrypoint" ]; then command=("$entrypoint"); else command=("${image_entrypoint[@]}"); fi
if [ $# -gt 0 ]; then command+=("$@"); elif [ -z "$entrypoint" ]; then command+=("${image_cmd[@]}"); fi
[ ${#command[@]} -gt 0 ] || {
  echo "image-run: nothing to run" >&2
  exit 2
}

# The image's root filesystem, unpacked once per image ID into a buildah container that is never
# run or written: each run gets a fresh overlay on top of it (a throwaway upper layer), so runs
# cost no copy and leave nothing behind.
id=$("$buildah" inspect --type image --format '{{.FromImageID}}' "$image")
lower_name=image-run-${id:0:12}
exec 8>"$cache/containers/.image-run.lock"
flock 8
"$buildah" inspect --type container "$lower_name" >/dev/null 2>&1 ||
  "$buildah" from --pull=never --name "$lower_name" "$image" >/dev/null
lower=$("$buildah" mount "$lower_name")
exec 8>&-
scratch=$(mktemp -d "${TMPDIR:-/tmp}/image-run.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/upper" "$scratch/work" "$scratch/root"

mounts=()
for v in "${volumes[@]}"; do
  IFS=: read -r src dst mode <<<"$v"
  mounts+=("$(realpath "$src")" "$dst" "${mode:-rw}")
done

# Runs inside the new namespaces: $1 lower, $2 scratch, $3 read-only?, $4 user, then SRC DST MODE
# triples, --, environment, --, command.
# shellcheck disable=SC2016 # expanded by the inner bash
inside='
set -euo pipefail
lower=$1 scratch=$2 ro=$3 user=$4
shift 4
root=$scratch/root
mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$scratch/upper,workdir=$scratch/work" "$root"
mkdir -p "$root/proc" "$root/dev" "$root/tmp" "$root/etc"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t tmpfs -o nosuid,noexec,mode=755,size=64k tmpfs "$root/dev"
for d in null zero full random urandom tty; do
  : >"$root/dev/$d" && mount --bind "/dev/$d" "$root/dev/$d"
done
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
mkdir "$root/dev/shm" && mount -t tmpfs -o nosuid,nodev,noexec,mode=1777 tmpfs "$root/dev/shm"
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs "$root/tmp"
for f in hosts resolv.conf; do
  [ -e "$root/etc/$f" ] || : >"$root/etc/$f"
  mount --bind "/etc/$f" "$root/etc/$f" && mount -o remount,bind,ro "$root/etc/$f"
done
while [ "$1" != -- ]; do
  if [ -d "$1" ]; then mkdir -p "$root$2"; else mkdir -p "$(dirname "$root$2")" && touch "$root$2"; fi
  mount --bind "$1" "$root$2"
  [ "$3" != ro ] || mount -o remount,bind,ro "$root$2"
  shift 3
done
shift
[ "$ro" = 0 ] || mount -o remount,bind,ro "$root"
env=()
while [ "$1" != -- ]; do env+=("$1") && shift; done
shift
exec setpriv --no-new-privs env -i "${env[@]}" "$(command -v chroot)" --userspec="$user" --groups= "$root" "$@"
'
unshare --mount --pid --uts --ipc --fork --kill-child=SIGTERM -- \
  bash -c "$inside" inside "$lower" "$scratch" "$read_only" "$user" "${mounts[@]}" -- \
  "${image_env[@]}" "${envs[@]}" -- "${command[@]}" <&0 &
child=$!
# SIGTERM/SIGINT go to the process itself (PID 1 inside), as the kubelet would send them.
# shellcheck disable=SC2317 # called from the traps
forward() {
  local pid
  for pid in $(cat "/proc/$child/task/$child/children" 2>/dev/null); do kill "-$1" "$pid" 2>/dev/null || true; done
}
trap 'forward TERM' TERM
trap 'forward INT' INT
status=0
wait "$child" || status=$?
while kill -0 "$child" 2>/dev/null; do wait "$child" || status=$?; done
exit "$status"
