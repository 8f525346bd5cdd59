"""What the chart installs for an agent the tests run by hand.

Tests that run the agent as its own process (the e2e tier, the benchmarks) set up its
ServiceAccount and Roles as the chart does (``agent_account``). With a proxy address, the
chart's own admission policy goes in front of that ServiceAccount, rendered by helm from the
chart and created as it is, so the agent's whole life runs under the rules a real install
enforces (its names, its owner label, and the content of every secret it writes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s

from tests.chart.helm import Helm
from tests.harness.kube import (
    ControlPlane,
    grant_secret_verbs,
    service_account_token,
    wait_for_admission_policy,
)
from tests.harness.standin import StandIn

__all__ = [
    "IDENTITY_SECRET",
    "agent_account",
    "grant_identity_secret",
    "install_chart_policy",
    "policy_config",
    "write_agent_config",
]

IDENTITY_SECRET = "agent-identity"


def agent_account(
    plane: ControlPlane,
    admin: k8s.ApiClient,
    workdir: Path,
    *,
    namespace: str,
    secret_namespace: str,
    secret_verbs: Sequence[str] = ("create", "patch"),
    policy_proxy: str | None = None,
) -> str:
    """The agent's ServiceAccount ``agent`` in ``namespace`` as the chart sets it up for the
    token join method: ``secret_verbs`` on secrets in ``secret_namespace`` (the writer Role),
    the identity Secret's Role, and with ``policy_proxy`` (the Teleport proxy's address) the
    chart's admission policy. Returns a token of the ServiceAccount."""
    grant_secret_verbs(
        admin,
        secret_namespace,
        list(secret_verbs),
        service_account="agent",
        service_account_namespace=namespace,
        # The secret namespace may be shared (Argo CD's): the name says whose Role it is.
        name=f"writer-{namespace}",
    )
    grant_identity_secret(admin, namespace)
    token = service_account_token(admin, namespace, "agent")  # creates the account
    if policy_proxy is not None:
        install_chart_policy(
            plane,
            admin,
            workdir,
            namespace=namespace,
            secret_namespace=secret_namespace,
            proxy=policy_proxy,
        )
    return token


def grant_identity_secret(
    admin: k8s.ApiClient, namespace: str, *, service_account: str = "agent"
) -> None:
    """The chart's identity Role for the token method, bound to ``service_account``: the one
    identity Secret by name (get, update, patch), plus create."""
    rbac = k8s.RbacAuthorizationV1Api(admin)
    rbac.create_namespaced_role(
        namespace,
        k8s.V1Role(
            metadata=k8s.V1ObjectMeta(name="identity"),
            rules=[
                k8s.V1PolicyRule(
                    api_groups=[""],
                    resources=["secrets"],
                    resource_names=[IDENTITY_SECRET],
                    verbs=["get", "update", "patch"],
                ),
                k8s.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=["create"]),
            ],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        k8s.V1RoleBinding(
            metadata=k8s.V1ObjectMeta(name="identity"),
            role_ref=k8s.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="identity"
            ),
            subjects=[
                k8s.RbacV1Subject(kind="ServiceAccount", name=service_account, namespace=namespace)
            ],
        ),
    )


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


def write_agent_config(
    workdir: Path,
    teleport: StandIn,
    *,
    namespace: str,
    services: Sequence[Mapping[str, Any]],
    **top: Any,
) -> Path:
    """``workdir/config.yaml`` as the chart writes it for the token join method (the token file
    ``workdir/token``, the identity Secret ``agent-identity``, instance ``<namespace>/agent``),
    with ``top`` keys added or replaced; a key set to None is left out."""
    config: dict[str, Any] = {
        "version": "v2",
        "proxy_server": teleport.proxy_addr,
        "proxy_ca_path": str(teleport.web_ca_path),
        "onboarding": {"join_method": "token", "token": str(workdir / "token")},
        "storage": {"type": "kubernetes_secret", "name": IDENTITY_SECRET},
        "instance": f"{namespace}/agent",
        "services": [dict(service) for service in services],
        **top,
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in config.items() if v is not None}))
    return path
