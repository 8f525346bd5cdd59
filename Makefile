# teleport-argocd-agent — every target installs what it needs on first use.
#
#   make test    lint, type-check and every test tier (unit, chart, integration, e2e)
#   make demo    helm install from a local registry onto a real node; Argo CD syncs through it
#   make unit    the fast inner loop: unit tests only
#   make bench   benchmarks against the real API server, printed as ratios
#   make image   the container image (buildah, no daemon), cached by a hash of its inputs
#   make release REGISTRY=host[/path]   the chart and the image, pushed to an OCI registry
#
# Caches survive between clones on the same machine:
#   $(CACHE)/tools/<tool>-<version>/   binaries built from their Go modules
#   $(CACHE)/uv-<version>/             the pinned uv that builds .venv from uv.lock
#   ~/.cache/uv, ~/go/pkg/mod           package downloads

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test
MAKEFLAGS += --no-print-directory

include tools/versions.env

CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/teleport-argocd-agent
export TOOLS_CACHE := $(CACHE)/tools
UV_VERSION := 0.13.9
UV := $(CACHE)/uv-$(UV_VERSION)/bin/uv
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
export UV_PROJECT_ENVIRONMENT := $(VENV)
export PATH := $(VENV)/bin:$(PATH)

PYTEST_ARGS ?=
BENCH_ARGS ?=

FORCE:

.PHONY: FORCE proto test unit lint typecheck pytest tools tool-env venv demo bench clean help image image-size release \
	standin standin-test helm-docs

help:
	@sed -n '2,9p' Makefile | sed 's/^# \{0,1\}//'

$(UV):
	python3 -m venv $(CACHE)/uv-$(UV_VERSION)
	$(CACHE)/uv-$(UV_VERSION)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# The virtual environment is rebuilt from the lock file whenever the lock changes.
# Byte-compiled at install, as in the image: the environment may forbid Python to write byte
# code (PYTHONDONTWRITEBYTECODE), and then every agent process the tests start would compile
# ~500 modules again (over a second of CPU each time).
$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --all-extras --quiet --compile-bytecode
	touch $@

venv: $(VENV)/.synced

TOOL_ENV := $(CACHE)/tool-env-$(KUBERNETES_VERSION)-$(HELM_VERSION)-$(CT_VERSION)-$(ARGOCD_VERSION)-node.sh

# Paths of the real tools, resolved (and built on first use) by tools/install.sh. Resolved on every
# run: a cached path goes stale when a system package (etcd) is removed, and install.sh answers in
# milliseconds once everything is cached.
$(TOOL_ENV): FORCE
	@mkdir -p $(CACHE)
	@for tool in KUBE_APISERVER:kube-apiserver KUBECTL:kubectl ETCD:etcd HELM:helm CT:ct \
	    ARGOCD:argocd REDIS:redis-server PROMTOOL:promtool KUBELET:kubelet \
	    KUBE_CONTROLLER_MANAGER:kube-controller-manager KUBE_SCHEDULER:kube-scheduler \
	    CONTAINERD:containerd RUNC:runc CNI_PLUGINS:cni-plugins REGISTRY:docker-registry \
	    PAUSE_IMAGE:pause-image; do \
	  path=$$(tools/install.sh $${tool#*:}); \
	  [ -e "$$path" ] || { echo "tools: $${tool#*:} could not be installed" >&2; exit 1; }; \
	  echo "export $${tool%%:*}_BIN=$$path"; \
	done > $@.tmp && mv $@.tmp $@

tools: $(TOOL_ENV) venv

# Prints `export NAME=path` for every tool, e.g. `eval "$(make -s tool-env)"` in a shell.
tool-env: tools
	@cat $(TOOL_ENV)

lint: venv
	ruff check agent tests tools/image
	ruff format --check agent tests tools/image
	lint-imports --no-cache
	hadolint Dockerfile
	tools/protogen.sh --check
	@$(HELM_DOCS) --dry-run 2>/dev/null | diff -u chart/README.md - \
	  || { echo "chart/README.md is out of date: run make helm-docs" >&2; exit 1; }

# chart/README.md from chart/README.md.gotmpl and the `# --` comments in chart/values.yaml.
HELM_DOCS = $$(tools/install.sh helm-docs) --chart-search-root chart --sort-values-order file \
	--skip-version-footer
helm-docs:
	@$(HELM_DOCS) 2>/dev/null

typecheck: venv
	mypy

pytest: tools
	source $(TOOL_ENV) && export STANDIN_BIN=$$(tools/install.sh teleport-standin) \
	  && export MONITORING_CRDS=$$(tools/install.sh monitoring-crds) \
	  && python -m compileall -q -j 0 agent tests >/dev/null \
	  && python -m pytest $(PYTEST_ARGS)

test: lint typecheck standin-test pytest

# The Teleport stand-in (tests/standin): built into $(TOOLS_CACHE)/standin-<hash of its sources>/
# by tools/install.sh, so an unchanged tree costs nothing; prints the binary's path.
standin:
	@tools/install.sh teleport-standin

# The stand-in's own checks: gofmt, go vet and its Go tests (the protocol rules it enforces).
standin-test:
	@unformatted=$$(cd tests/standin && gofmt -l $$(find . -name '*.go' -not -path './pb/*')); \
	  [ -z "$$unformatted" ] || { echo "gofmt: unformatted files in tests/standin: $$unformatted" >&2; exit 1; }
	cd tests/standin && go vet ./... && go test ./...

unit: venv
	python -m pytest -m unit $(PYTEST_ARGS)

demo: tools
	source $(TOOL_ENV) && export STANDIN_BIN=$$(tools/install.sh teleport-standin) \
	  && python -m tests.harness.demo

bench: tools
	source $(TOOL_ENV) && export STANDIN_BIN=$$(tools/install.sh teleport-standin) \
	  && python -m compileall -q -j 0 agent tests >/dev/null \
	  && python -m tests.bench $(BENCH_ARGS)
	@bytes=$$($(MAKE) --no-print-directory image-size | tail -n 1); \
	  echo "image size: $$((bytes / 1000000)) MB uncompressed ($$bytes bytes; target < 150 MB)"

# The agent image, built with buildah on a locally made Debian base (tools/base-image.sh) and
# tagged $(IMAGE_REPOSITORY):<version>; prints that reference. BASE_IMAGE=... overrides the base.
IMAGE_REPOSITORY ?= ghcr.io/teleport-argocd-agent/teleport-argocd-agent
image: $(UV)
	@CACHE_DIR=$(CACHE) UV=$(UV) PIP_PYTHON=$(CACHE)/uv-$(UV_VERSION)/bin/python \
	  IMAGE_REPOSITORY=$(IMAGE_REPOSITORY) tools/build-image.sh

# Publishes the chart (oci://$(REGISTRY)/charts/teleport-argocd-agent:<chart version>) and the
# image (<host of $(REGISTRY)>/<image repository path>:<appVersion>) to an OCI registry, as a release does.
# REGISTRY_CA=<PEM file> trusts a private registry CA (the tests' local registry); IMAGE_REF=<a
# local image or its ID> publishes that image instead of building one (it must carry the chart's
# appVersion in its version label).
REGISTRY ?=
REGISTRY_CA ?=
IMAGE_REF ?=
release: $(UV)
	@[ -n "$(REGISTRY)" ] || { echo "release: set REGISTRY=host[:port][/path]" >&2; exit 1; }
	@ref="$(IMAGE_REF)"; [ -n "$$ref" ] || ref=$$($(MAKE) --no-print-directory image | tail -n 1); \
	  CACHE_DIR=$(CACHE) REGISTRY=$(REGISTRY) REGISTRY_CA=$(REGISTRY_CA) IMAGE_REF=$$ref \
	  tools/release.sh

# Uncompressed size of the image in bytes.
image-size: image
	@CACHE_DIR=$(CACHE) IMAGE_REPOSITORY=$(IMAGE_REPOSITORY) tools/image-size.sh

# Regenerates the Python (agent) and Go (Teleport stand-in) code from agent/teleport/proto/*.proto.
proto: venv
	tools/protogen.sh

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache build
