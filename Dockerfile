# teleport-argocd-agent container image.
#
# Built by `make image` (tools/build-image.sh), which first stages the build context: the
# run-time requirements exported from uv.lock with their hashes, those wheels, and the project's
# wheel built from the tree, all under build/image/. The build itself needs no network.
#
#   BASE_IMAGE  any Debian-style image with python3 3.11 and its venv module. The default is the
#               official slim image for releases; tests and `make image` pass a base made locally
#               from Debian packages (tools/base-image.sh) because there is no registry here.
#   VERSION     the agent's version; must equal the wheel's (pyproject.toml) or the build fails.
#
# Both stages start from the same base, so the venv's interpreter path (/usr/bin/python3 on
# Debian, /usr/local/bin/python3 on the official image) is valid in the final stage. Every RUN is
# in exec form: the base needs no shell.

ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
ARG VERSION
COPY build/image/ /build/
COPY tools/image/build_venv.py /build/build_venv.py
# Installs the hashed requirements and the agent wheel into /opt/venv offline (no pip left in
# it), checks the version, byte-compiles, and adds the non-root user to passwd/group.
RUN ["python3", "/build/build_venv.py"]

FROM ${BASE_IMAGE}
ARG BASE_IMAGE
ARG VERSION
LABEL org.opencontainers.image.title="teleport-argocd-agent" \
      org.opencontainers.image.base.name="${BASE_IMAGE}" \
      org.opencontainers.image.description="Keeps Argo CD cluster secrets for Teleport-protected Kubernetes clusters" \
      org.opencontainers.image.source="https://github.com/teleport-argocd-agent/teleport-argocd-agent" \
      org.opencontainers.image.url="https://github.com/teleport-argocd-agent/teleport-argocd-agent" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=builder /rootfs/etc/passwd /rootfs/etc/group /etc/
COPY --from=builder /opt/venv /opt/venv

# Read-only root filesystem: nothing writes byte code; scratch space is /tmp (an emptyDir).
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8

# Fixed numeric IDs, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 65532:65532
ENTRYPOINT ["/opt/venv/bin/teleport-argocd-agent"]
CMD ["start"]
