#!/usr/bin/env bash
# Generates the agent's Python and the Teleport stand-in's Go code from the one .proto set in
# agent/teleport/proto/, so client and stand-in cannot drift apart. Generated code is checked in.
#
#   tools/protogen.sh            regenerate in place
#   tools/protogen.sh --check    regenerate into a scratch tree and fail if anything differs
#
# protoc comes from grpcio-tools (the pinned dev dependency); the Go plugins are the stand-in
# module's `tool` dependencies, so their versions are pinned by tests/standin/go.mod.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
protos=(agent/teleport/proto/wrappers.proto agent/teleport/proto/types.proto agent/teleport/proto/authservice.proto)
go_module=teleport-argocd-agent/tests/standin
declare -A go_packages=(
  [agent/teleport/proto/wrappers.proto]=pb/wrapperspb
  [agent/teleport/proto/types.proto]=pb/typespb
  [agent/teleport/proto/authservice.proto]=pb/authpb
)

generate() { # out-root
  local out=$1 bin=$1/.bin go_opts=()
  mkdir -p "$bin" "$out/tests/standin"
  for proto in "${protos[@]}"; do
    go_opts+=("M$proto=$go_module/${go_packages[$proto]}")
  done
  (cd "$root/tests/standin" && go build -o "$bin/" google.golang.org/protobuf/cmd/protoc-gen-go \
    google.golang.org/grpc/cmd/protoc-gen-go-grpc)
  local go_opt grpc_opt
  go_opt="module=$go_module$(printf ',%s' "${go_opts[@]}")"
  grpc_opt="$go_opt"
  (cd "$root" && "$python" -m grpc_tools.protoc -I . \
    --plugin=protoc-gen-go="$bin/protoc-gen-go" \
    --plugin=protoc-gen-go-grpc="$bin/protoc-gen-go-grpc" \
    --plugin=protoc-gen-grpclib_python="$(dirname "$python")/protoc-gen-grpclib_python" \
    --python_out="$out" --pyi_out="$out" --grpclib_python_out="$out" \
    --go_out="$out/tests/standin" --go_opt="$go_opt" \
    --go-grpc_out="$out/tests/standin" --go-grpc_opt="$grpc_opt" \
    "${protos[@]}")
  rm -rf "$bin"
}

if [ "${1:-}" = "--check" ]; then
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  generate "$scratch"
  status=0
  for dir in agent/teleport/proto tests/standin/pb; do
    if ! diff -r -x '*.proto' -x '__init__.py' -x '__pycache__' "$scratch/$dir" "$root/$dir" >/dev/null; then
      echo "protogen: generated code in $dir is stale; run tools/protogen.sh and commit the result" >&2
      diff -r -x '*.proto' -x '__init__.py' -x '__pycache__' "$scratch/$dir" "$root/$dir" | head -20 >&2
      status=1
    fi
  done
  exit $status
fi
generate "$root"
