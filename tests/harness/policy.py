"""The chart's ValidatingAdmissionPolicy for an agent the tests run by hand.

Tests that run the agent as its own process (the e2e tier, the benchmarks) set up its
ServiceAccount and Roles themselves; this puts the chart's own policy in front of that
ServiceAccount, rendered by helm from the chart and created as it is, so the agent's whole life
runs under the rules a real install enforces (its names, its owner label, and the content of
every secret it writes).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from tests.chart.helm import Helm
from tests.harness.kube import ControlPlane, wait_for_admission_policy

__all__ = ["install_chart_policy", "policy_config"]


def install_chart_policy(
    plane: ControlPlane,
    admin: k8s.ApiClient,
    workdir: Path,
    *,
    namespace: str,
    secret_namespace: str,
    proxy: str,
    service_account: str = "agent",
) -> None:
    """The policy and binding for ``service_account`` of ``namespace``: token join with the
    identity Secret ``<service_account>-identity``, instance ``<namespace>/<service_account>``,
    secrets in ``secret_namespace`` whose server is under ``https://<proxy>/v1/teleport/``."""
    helm = Helm(workdir / "helm-policy")
    rendered = helm.template(
        [
            {
                "clusterName": "root",
                "teleportProxyAddress": proxy,
                "joinMethod": "token",
                "tokenSecret": {"name": f"{service_account}-join"},
                "fullnameOverride": service_account,
                "serviceAccount": {"name": service_account},
                "instance": f"{namespace}/{service_account}",
                "argocd": {
                    "clusterSelectors": [{"labels": {"env": "prod"}}],
                    "secretNamespace": secret_namespace,
                },
            }
        ],
        release=service_account,
        namespace=namespace,
    )
    api = k8s.AdmissionregistrationV1Api(admin)
    # The generated client's methods are typed for its models; they take plain manifests too.
    create_policy: Callable[..., Any] = api.create_validating_admission_policy
    create_binding: Callable[..., Any] = api.create_validating_admission_policy_binding
    create_policy(rendered.one("ValidatingAdmissionPolicy"))
    create_binding(rendered.one("ValidatingAdmissionPolicyBinding"))
    wait_for_admission_policy(plane, namespace, service_account)


def policy_config(proxy: str) -> dict[str, Any]:
    """What the chart tells the agent about its policy (top-level config keys)."""
    return {"admission_policy": True, "allowed_server_prefix": f"https://{proxy}/v1/teleport/"}
