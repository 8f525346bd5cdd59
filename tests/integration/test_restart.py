"""A restarted agent (upgrade, config change, node drain, crash) against the real API server:
what the secrets hold is read at start, and only what needs it is written at once.

The writer here is RBAC-only (no admission policy): the read path must still never read a
secret that is not the agent's.
"""

from __future__ import annotations

import base64
import json

import pytest
from kubernetes import client as k8s

from agent.argocd import owner_id
from agent.kube import SecretWriter
from agent.kubeapi import ApiError, KubeTransport
from agent.labels import LABEL_OWNER
from tests.harness.kube import cluster_secret_data
from tests.harness.pki import CertificateAuthority
from tests.harness.source import InventorySource
from tests.integration.test_runtime import make_config, prod, runtime, secrets

WINDOW_SECONDS = 300
OWNER_LABEL_POINTER = "/metadata/labels/" + LABEL_OWNER.replace("/", "~1")


def restarted(config, source, service_account_client, namespace, clock):
    """A new agent process: a new writer (nothing remembered) and a new runtime."""
    writer = SecretWriter(
        service_account_client(namespace, "agent", create=False), retry_attempts=2
    )
    return runtime(config, source, writer, clock)


def run_window(rt, clock):
    """Step through the rotation window the way the loop would."""
    for _ in range(WINDOW_SECONDS // 10 + 2):
        clock.advance(seconds=10)
        rt.step()


@pytest.fixture
def started(admin_api, namespace, writer, clock):
    """Four clusters written by a first agent process (credential 1)."""
    source = InventorySource(clock=lambda: clock.now, clusters=prod("a", "b", "c", "d"))
    config = make_config(namespace, rotation_window=f"{WINDOW_SECONDS}s")
    runtime(config, source, writer, clock).step()
    assert secrets(admin_api, namespace) == {"a": 1, "b": 1, "c": 1, "d": 1}
    clock.advance(minutes=2)
    return config, source


def test_a_restart_with_valid_secrets_spreads_its_rewrites_over_the_window(
    admin_api, namespace, service_account_client, clock, started
):
    config, source = started
    rt = restarted(config, source, service_account_client, namespace, clock)
    rt.step()
    held = secrets(admin_api, namespace)
    # Like a renewal: one secret has slot 0, every other waits with its valid credential.
    assert sorted(held.values()) == [1, 1, 1, 2]
    state = rt.readiness()
    assert state.ready, state.reasons
    assert (
        rt.metrics.registry.get_sample_value("teleport_argocd_agent_rotation_pending_secrets") == 3
    )

    run_window(rt, clock)
    assert secrets(admin_api, namespace) == {"a": 2, "b": 2, "c": 2, "d": 2}


def test_a_restart_writes_a_missing_secret_at_once(
    admin_api, namespace, service_account_client, clock, started
):
    config, source = started
    names = {d["name"].removeprefix("root-"): name for name, d in _secrets(admin_api, namespace)}
    k8s.CoreV1Api(admin_api).delete_namespaced_secret(names["a"], namespace)

    rt = restarted(config, source, service_account_client, namespace, clock)
    rt.step()

    held = secrets(admin_api, namespace)
    assert held["a"] == 2
    assert sorted(held[c] for c in "bcd") in ([1, 1, 2], [1, 1, 1]), "the others wait"
    assert rt.readiness().ready


def test_a_restart_after_the_credentials_expired_writes_every_secret_at_once(
    admin_api, namespace, service_account_client, clock, started
):
    config, source = started
    clock.advance(hours=1)  # the first process's credential (1 h) has expired
    rt = restarted(config, source, service_account_client, namespace, clock)
    rt.step()
    assert secrets(admin_api, namespace) == {"a": 2, "b": 2, "c": 2, "d": 2}


def test_a_changed_config_is_written_at_once(
    admin_api, namespace, service_account_client, clock, started
):
    _, source = started
    changed = make_config(
        namespace, rotation_window=f"{WINDOW_SECONDS}s", secret_labels={"team": "platform"}
    )
    rt = restarted(changed, source, service_account_client, namespace, clock)
    rt.step()
    assert secrets(admin_api, namespace) == {"a": 2, "b": 2, "c": 2, "d": 2}
    for name, _ in _secrets(admin_api, namespace):
        live = k8s.CoreV1Api(admin_api).read_namespaced_secret(name, namespace)
        assert live.metadata.labels["team"] == "platform"


def test_the_read_at_start_never_reads_a_secret_that_is_not_the_agents(
    admin_api, namespace, service_account_client, clock, started
):
    config, source = started
    core = k8s.CoreV1Api(admin_api)
    (name, _), *_ = _secrets(admin_api, namespace)
    # Someone else's secret under the agent's name: another owner, a value the agent must not see.
    core.patch_namespaced_secret(
        name,
        namespace,
        {
            "metadata": {"labels": {LABEL_OWNER: "someone-else"}},
            "data": {"token": base64.b64encode(b"NOT-FOR-THE-AGENT").decode()},
        },
    )
    transport = KubeTransport(service_account_client(namespace, "agent", create=False))
    owner = owner_id(config.resolved_instance(), "argo-cd")
    with pytest.raises(ApiError) as refused:
        transport.call(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/secrets/{name}",
            query=[("dryRun", "All"), ("fieldManager", "teleport-argocd-agent/x")],
            body=[{"op": "test", "path": OWNER_LABEL_POINTER, "value": owner}],
            content_type="application/json-patch+json",
        )
    answer = json.dumps(refused.value.body)
    assert refused.value.status == 422
    assert "NOT-FOR-THE-AGENT" not in answer
    assert base64.b64encode(b"NOT-FOR-THE-AGENT").decode() not in answer

    # The restarted agent treats it as not its own: no hint, a write at once, which the writer
    # refuses to make over another owner's secret.
    rt = restarted(config, source, service_account_client, namespace, clock)
    rt.step()
    live = core.read_namespaced_secret(name, namespace)
    assert live.metadata.labels[LABEL_OWNER] == "someone-else"
    assert base64.b64decode(live.data["token"]) == b"NOT-FOR-THE-AGENT"


def _secrets(admin_api, namespace):
    """(name, decoded data) of every cluster secret, by name."""
    return sorted(cluster_secret_data(admin_api, namespace), key=lambda item: item[0])


def test_a_content_change_keeps_the_credential_each_secret_holds(
    admin_api, namespace, writer, service_account_client, clock
):
    # Real certificates, so what a secret holds reads as a credential.
    source = InventorySource(
        clock=lambda: clock.now, clusters=prod("a", "b", "c"), ca=CertificateAuthority()
    )
    config = make_config(namespace, rotation_window=f"{WINDOW_SECONDS}s")
    runtime(config, source, writer, clock).step()
    first = _cert_data(admin_api, namespace)
    clock.advance(minutes=2)

    changed = make_config(
        namespace, rotation_window=f"{WINDOW_SECONDS}s", secret_labels={"team": "platform"}
    )
    rt = restarted(changed, source, service_account_client, namespace, clock)
    rt.step()

    core = k8s.CoreV1Api(admin_api)
    for name, _ in _secrets(admin_api, namespace):
        assert core.read_namespaced_secret(name, namespace).metadata.labels["team"] == "platform"
    kept = _cert_data(admin_api, namespace)
    # At once: the new label everywhere; the new credential in one secret only (slot 0).
    assert sum(kept[c] == first[c] for c in first) == 2
    assert rt.readiness().ready

    run_window(rt, clock)
    assert all(cert != first[c] for c, cert in _cert_data(admin_api, namespace).items())


def _cert_data(admin_api, namespace):
    return {
        data["name"].removeprefix("root-"): data["config"]["tlsClientConfig"]["certData"]
        for _, data in _secrets(admin_api, namespace)
    }
