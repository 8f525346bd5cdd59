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


@pytest.hookimpl(trylast=True)  # after `-k`/`-m` deselected what does not run
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The kubelet refreshes a projected token only after 80 % of its life, at least 600 s: the
    test of that refresh waits ~10 minutes. When it is selected, the test that starts its clock
    (installs the release whose token is refreshed, on the node the module shares) runs first in
    the session, and the node's tests run last, so the other tests run while the clock runs.

    Only one node runs on a machine: the modules holding a clock's test run first among the node
    tests (their node goes when their last test is done); the others start their own after it."""
    if not any(item.get_closest_marker("clock_read") for item in items):
        return
    starts = [item for item in items if item.get_closest_marker("clock_start")]
    if not starts:
        return  # the wait starts with the reading test's module: nothing to overlap
    clock_modules = {item.path for item in starts}
    moved = set(starts)
    on_node = [item for item in items if item.get_closest_marker("node") and item not in moved]
    first_node = [item for item in on_node if item.path in clock_modules]
    last_node = [item for item in on_node if item.path not in clock_modules]
    rest = [item for item in items if item not in moved and not item.get_closest_marker("node")]
    items[:] = [*starts, *rest, *first_node, *last_node]
