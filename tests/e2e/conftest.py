"""End-to-end fixtures: real Argo CD on the management API server, and a target API server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.argocd import ArgoCD, argocd
from tests.harness.kube import ControlPlane, control_plane


@pytest.fixture(scope="session")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A second real API server: the cluster Argo CD deploys to."""
    with control_plane(tmp_path_factory.mktemp("target")) as plane:
        yield plane


@pytest.fixture(scope="session")
def argo(kube: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArgoCD]:
    """One Argo CD for the whole session (it takes seconds to start and ~0.5 GB to run)."""
    with argocd(kube, tmp_path_factory.mktemp("argocd")) as instance:
        yield instance
