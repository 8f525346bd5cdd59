"""Migrating from Teleport's tbot chart: a values file written for the tbot chart installs into
the real API server as it is, and the agent, as the chart's ServiceAccount under the chart's
admission policy, adopts the cluster secrets tbot wrote (same names) instead of failing on them.
"""

from __future__ import annotations

import pytest
import yaml
from kubernetes import client as k8s

from agent.argocd import owner_id
from agent.kube import Outcome, SecretWriter
from tests.chart.helm import CHART, Helm
from tests.harness.kube import ControlPlane, unique_namespace, wait_for_admission_policy
from tests.integration.test_writer import desired

RELEASE = "teleport-argocd-agent"
TBOT_VALUES = CHART / "ci" / "tbot-values.yaml"


@pytest.fixture(scope="module")
def tbot_helm(kube: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    home = tmp_path_factory.mktemp("helm-tbot")
    return Helm(home, kube.kubeconfig(home / "kubeconfig"))


def test_tbot_values_file_is_the_tbot_charts_shape():
    values = yaml.safe_load(TBOT_VALUES.read_text())
    # The shapes that differ from this chart's own: per-object label and annotation maps, the
    # top-level imagePullPolicy, and the keys tbot's chart has and this one does not.
    assert set(values["extraLabels"]) == {
        "role",
        "roleBinding",
        "config",
        "deployment",
        "pod",
        "serviceAccount",
    }
    assert set(values["annotations"]) == set(values["extraLabels"])
    for key in ("imagePullPolicy", "customConfig", "outputs", "services", "anonymousTelemetry"):
        assert key in values


def test_tbot_values_install_and_tbot_secrets_are_adopted(
    kube: ControlPlane, tbot_helm: Helm, service_account_client
):
    admin_api = kube.admin_client()
    admin = k8s.CoreV1Api(admin_api)
    ns = unique_namespace(admin_api, prefix="tbot")
    instance = f"{ns}/{RELEASE}"

    # tbot ran here first: its cluster secret is in place, written by its field manager.
    secret = desired(ns, "prod-eu", instance=instance)
    body = secret.apply_body()
    body["metadata"]["labels"] = {"argocd.argoproj.io/secret-type": "cluster"}
    body["metadata"]["annotations"] = {
        "teleport.dev/bot-name": "argocd",
        "teleport.dev/kubernetes-cluster-name": "prod-eu",
        "teleport.dev/teleport-cluster-name": "root",
        "teleport.dev/updated": "2026-11-22T12:00:00Z",
        "teleport.dev/tbot-version": "18.0.0",
    }
    admin.create_namespaced_secret(ns, body, field_manager="tbot")

    out = tbot_helm.run(
        "install", RELEASE, str(CHART), "--namespace", ns, "--values", str(TBOT_VALUES)
    ).stdout
    assert "STATUS: deployed" in out
    deployment = k8s.AppsV1Api(admin_api).read_namespaced_deployment(RELEASE, ns)
    assert deployment.spec.template.spec.service_account_name == "argocd-tbot"
    container = deployment.spec.template.spec.containers[0]
    assert container.image_pull_policy == "Always"
    assert container.volume_mounts[-1].mount_path == "/etc/ssl/corporate"
    # tbot's empty per-object maps carry nothing and add nothing.
    for key in ("role", "pod", "deployment"):
        assert key not in deployment.metadata.labels
        assert key not in (deployment.metadata.annotations or {})
    wait_for_admission_policy(kube, ns, "argocd-tbot")

    writer = SecretWriter(service_account_client(ns, "argocd-tbot", create=False))
    adopted = writer.write_one(secret)
    assert (adopted.outcome, adopted.managers) == (Outcome.UPDATED, ("tbot",))
    live = admin.read_namespaced_secret(secret.name, ns)
    assert live.metadata.labels["teleport-argocd-agent/owner"] == owner_id(instance, "argo-cd")
    # Same name, now the agent's: the next renewal is a plain update.
    renewed = desired(ns, "prod-eu", serial=2, instance=instance)
    assert writer.write_one(renewed).outcome is Outcome.UPDATED
    admin_api.close()
