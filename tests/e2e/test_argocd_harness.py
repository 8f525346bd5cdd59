"""Argo CD runs here for real: it deploys through a cluster secret, and it is strict about them.

These tests write cluster secrets by hand, pointing straight at a target API server, so they pin
what Argo CD itself does with a secret before the agent is involved.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.harness.argocd import ArgoCD, argocd, config_map_manifest, tls_client_config
from tests.harness.kube import ControlPlane


def _config_map(plane: ControlPlane, namespace: str, name: str) -> k8s.V1ConfigMap | None:
    api = plane.admin_client()
    try:
        return k8s.CoreV1Api(api).read_namespaced_config_map(name, namespace)
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    finally:
        api.close()


def test_application_syncs_a_manifest_into_the_cluster_of_a_hand_written_secret(
    argo: ArgoCD, target: ControlPlane
):
    suffix = uuid.uuid4().hex[:6]
    assert argo.repo is not None
    argo.repo.commit(
        {f"hello-{suffix}/cm.yaml": config_map_manifest("hello", {"greeting": suffix})}
    )
    argo.write_cluster_secret(
        f"target-{suffix}", server=target.url, config=tls_client_config(target)
    )
    started = time.monotonic()
    argo.create_application(
        f"hello-{suffix}", path=f"hello-{suffix}", namespace=f"hello-{suffix}", server=target.url
    )

    argo.wait_synced(f"hello-{suffix}")
    synced_after = time.monotonic() - started

    deployed = _config_map(target, f"hello-{suffix}", "hello")
    assert deployed is not None
    assert deployed.data == {"greeting": suffix}
    # Startup and memory, printed for the README's numbers (pytest -s shows them).
    rss = argo.rss_bytes("argocd-application-controller") >> 20
    print(
        f"argocd: started in {argo.startup_seconds:.1f}s, application synced "
        f"{synced_after:.1f}s after creation, application controller RSS {rss} MiB"
    )


def test_unparsable_cluster_config_stops_the_application_set_controller_listing_clusters(
    argo: ArgoCD, target: ControlPlane
):
    # Why the agent must never write a config Argo CD cannot parse: one such secret, even one no
    # ApplicationSet selects, makes every ApplicationSet fail until it is gone.
    suffix = uuid.uuid4().hex[:6]
    assert argo.repo is not None
    argo.repo.commit({f"set-{suffix}/cm.yaml": config_map_manifest("from-set", {"a": "b"})})
    argo.write_cluster_secret(
        f"good-{suffix}",
        # The same API server under a URL of its own: server URLs must be unique across secrets.
        server=target.url.replace("127.0.0.1", "localhost"),
        cluster_name=f"good-{suffix}",
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
