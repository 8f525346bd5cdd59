"""Shared fixtures: the real control plane and clients for it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.harness.kube import ControlPlane, control_plane, service_account_token, unique_namespace


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A real etcd + kube-apiserver for the whole session."""
    with control_plane(tmp_path_factory.mktemp("kube")) as plane:
        yield plane


@pytest.fixture
def admin_api(kube: ControlPlane) -> Iterator[k8s.ApiClient]:
    api = kube.admin_client()
    yield api
    api.close()


@pytest.fixture
def namespace(admin_api: k8s.ApiClient) -> str:
    """A fresh namespace per test (there is no namespace controller to clean up after us)."""
    return unique_namespace(admin_api)


ServiceAccountClient = Callable[..., k8s.ApiClient]


@pytest.fixture
def service_account_client(
    kube: ControlPlane, admin_api: k8s.ApiClient
) -> Iterator[ServiceAccountClient]:
    """Factory: create a ServiceAccount and return an API client authenticated as it."""
    clients: list[k8s.ApiClient] = []

    def make(namespace: str, name: str, *, create: bool = True) -> k8s.ApiClient:
        token = service_account_token(admin_api, namespace, name, create=create)
        api = k8s.ApiClient(kube.configuration(token=token))
        clients.append(api)
        return api

    yield make
    for api in clients:
        api.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every test sits in a tier directory; its marker follows from there.
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in ("unit", "chart", "integration", "e2e"):
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))
