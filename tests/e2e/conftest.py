"""End-to-end fixtures: real Argo CD on the management API server, and a target API server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.argocd import ArgoCD, argocd
from tests.harness.kube import ControlPlane, control_plane

# Package scope: torn down when the e2e tier is done, so Argo CD neither outlives it nor watches
# the shared API server through the other tiers (some of which stop and restart it).


@pytest.fixture(scope="package")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A second real API server: the cluster Argo CD deploys to."""
    with control_plane(tmp_path_factory.mktemp("target")) as plane:
        yield plane


@pytest.fixture(scope="package")
def argo(kube: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArgoCD]:
    """One Argo CD for the tier (it takes seconds to start and ~0.5 GB to run)."""
    with argocd(kube, tmp_path_factory.mktemp("argocd")) as instance:
        yield instance


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed:
        # A module may say what a failure should show, e.g. the node's pods, events and logs.
        explain = getattr(getattr(item, "module", None), "diagnostics", None)
        if explain is not None:
            report.sections.append(("diagnostics", explain(item)))
