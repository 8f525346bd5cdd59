"""Argo CD runs here for real: it deploys through a cluster secret, and it is strict about them.

These tests write cluster secrets by hand, pointing straight at a target API server, so they pin
what Argo CD itself does with a secret before the agent is involved. Each test removes its
secrets and Applications: server URLs must be unique across cluster secrets, and these tests
point several at the one target.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.harness.argocd import ArgoCD, argocd, config_map_manifest, tls_client_config
from tests.harness.kube import ControlPlane, config_map_data


@pytest.fixture
def suffix(argo: ArgoCD) -> Iterator[str]:
    """A name suffix for this test's objects; its secrets and Applications go afterwards."""
    value = uuid.uuid4().hex[:6]
    yield value
    for name in argo.application_names():
        if name.endswith(value):
            argo.delete("applications", name)
    api = argo.plane.admin_client()
    for secret in k8s.CoreV1Api(api).list_namespaced_secret(argo.namespace).items:
        if secret.metadata.name.endswith(value):
            argo.delete_cluster_secret(secret.metadata.name)
    api.close()


def test_applications_sync_into_the_cluster_of_a_hand_written_secret_by_server_and_by_name(
    argo: ArgoCD, target: ControlPlane, suffix: str
):
    assert argo.repo is not None
    argo.repo.commit({f"hello-{suffix}/cm.yaml": config_map_manifest("hello", {"greet": suffix})})
    argo.write_cluster_secret(
        f"target-{suffix}", server=target.url, config=tls_client_config(target)
    )
    started = time.monotonic()
    argo.create_application(
        f"by-server-{suffix}", path=f"hello-{suffix}", namespace=f"s-{suffix}", server=target.url
    )
    argo.create_application(
        f"by-name-{suffix}",
        path=f"hello-{suffix}",
        namespace=f"n-{suffix}",
        cluster=f"target-{suffix}",
    )

    argo.wait_synced(f"by-server-{suffix}")
    synced_after = time.monotonic() - started
    argo.wait_synced(f"by-name-{suffix}")

    for namespace in (f"s-{suffix}", f"n-{suffix}"):
        assert config_map_data(target, namespace, "hello") == {"greet": suffix}
    # Startup and memory, printed for the README's numbers (pytest -s shows them).
    rss = argo.rss_bytes("argocd-application-controller") >> 20
    print(
        f"argocd: started in {argo.startup_seconds:.1f}s, application synced "
        f"{synced_after:.1f}s after creation, application controller RSS {rss} MiB"
    )


def test_secret_namespaces_and_cluster_resources_limit_what_argocd_deploys(
    argo: ArgoCD, target: ControlPlane, suffix: str
):
    # The secret's `namespaces` and `clusterResources` are what the agent writes for a service's
    # `namespaces` / `cluster_resources`; Argo CD treats only the exact string "true" as true.
    allowed = f"allowed-{suffix}"
    api = target.admin_client()
    k8s.CoreV1Api(api).create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=allowed)))
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": f"role-{suffix}"},
        "rules": [],
    }
    assert argo.repo is not None
    argo.repo.commit(
        {
            f"scoped-{suffix}/cm/cm.yaml": config_map_manifest("scoped", {"a": "b"}),
            f"scoped-{suffix}/role/role.yaml": yaml.safe_dump(role),
        }
    )
    cluster = f"scoped-{suffix}"

    def secret(cluster_resources: str) -> None:
        argo.write_cluster_secret(
            cluster,
            server=target.url,
            config=tls_client_config(target),
            extra={"namespaces": allowed, "clusterResources": cluster_resources},
        )

    secret("True")
    path = f"scoped-{suffix}"
    argo.create_application(f"in-{suffix}", path=f"{path}/cm", namespace=allowed, cluster=cluster)
    argo.create_application(
        f"out-{suffix}", path=f"{path}/cm", namespace=f"other-{suffix}", cluster=cluster
    )
    argo.create_application(
        f"role-{suffix}", path=f"{path}/role", namespace=allowed, cluster=cluster
    )

    argo.wait_synced(f"in-{suffix}")
    assert config_map_data(target, allowed, "scoped") is not None
    argo.wait_application_condition(
        f"out-{suffix}", f'namespace "other-{suffix}" for ConfigMap "scoped" is not managed'
    )
    argo.wait_application_condition(
        f"role-{suffix}", f'cluster level ClusterRole "role-{suffix}" can not be managed'
    )
    with pytest.raises(ApiException, match="Not Found"):
        k8s.RbacAuthorizationV1Api(api).read_cluster_role(f"role-{suffix}")

    secret("true")
    argo.refresh_application(f"role-{suffix}")
    argo.wait_synced(f"role-{suffix}")
    assert k8s.RbacAuthorizationV1Api(api).read_cluster_role(f"role-{suffix}")
    api.close()


def test_unparsable_cluster_config_stops_the_application_set_controller_listing_clusters(
    argo: ArgoCD, target: ControlPlane, suffix: str
):
    # Why the agent must never write a config Argo CD cannot parse: one such secret, even one no
    # ApplicationSet selects, makes every ApplicationSet fail until it is gone.
    assert argo.repo is not None
    argo.repo.commit({f"set-{suffix}/cm.yaml": config_map_manifest("from-set", {"a": "b"})})
    argo.write_cluster_secret(
        f"good-{suffix}",
        server=target.url,
        config=tls_client_config(target),
        labels={"set": suffix},
    )
    argo.cluster_generator_set(
        f"set-{suffix}", selector={"set": suffix}, path=f"set-{suffix}", namespace=f"set-{suffix}"
    )
    argo.wait_for(
        lambda: f"set-{suffix}-good-{suffix}" in argo.application_names() or None,
        "the ApplicationSet to generate its Application",
        60,
        ("applicationsets", f"set-{suffix}"),
    )
    argo.wait_application_set_condition(f"set-{suffix}", "ErrorOccurred", "False")

    bad = f"bad-{suffix}"
    try:
        argo.write_cluster_secret(
            bad, server=f"https://bad-{suffix}.invalid", config="{not json", labels={"other": "x"}
        )
        argo.refresh_application_set(f"set-{suffix}")
        condition = argo.wait_application_set_condition(
            f"set-{suffix}", "ErrorOccurred", "True", message="error listing clusters"
        )
        print(f"argocd with an unparsable cluster secret: {json.dumps(condition)}")
    finally:
        argo.delete_cluster_secret(bad)

    argo.refresh_application_set(f"set-{suffix}")
    argo.wait_application_set_condition(f"set-{suffix}", "ErrorOccurred", "False")
    argo.delete("applicationsets", f"set-{suffix}")


def test_argocd_stops_without_leaving_processes(kube: ControlPlane, tmp_path: Path):
    # A second instance in a namespace of its own: the CRDs are already there, so it starts fast.
    with argocd(kube, tmp_path, namespace=f"argocd-{uuid.uuid4().hex[:6]}") as instance:
        pids = [proc.popen.pid for proc in instance.processes.values() if proc.popen]
        assert len(pids) == 4
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert (tmp_path / "argocd-application-controller.log").read_text()
