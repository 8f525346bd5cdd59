"""Fixtures of the daemon-loop tests (test_runtime*.py)."""

from __future__ import annotations

import pytest

from agent.kube import SecretWriter
from tests.integration.test_runtime import Clock
from tests.integration.test_writer import grant


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def writer(admin_api, namespace, service_account_client):
    """A writer for a ServiceAccount holding the verbs the chart grants with pruning on."""
    grant(admin_api, namespace, ["create", "patch", "deletecollection"], namespace)
    return SecretWriter(service_account_client(namespace, "agent"), retry_attempts=2)
