"""teleport-argocd-agent: Argo CD cluster secrets for Teleport-protected Kubernetes clusters."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("teleport-argocd-agent")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
