"""What the commands share: the real Kubernetes and Teleport clients, one cycle's desired
secrets (config -> identity -> inventory -> desired secrets), and a failure as an exit code.

Every Teleport failure is printed as one sentence that says what to do; key material is never
printed or logged.
"""

from __future__ import annotations

import datetime as dt
import sys

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from agent import __version__
from agent.commands.exitcodes import EXIT_KUBERNETES, EXIT_TELEPORT
from agent.config import AgentConfig, KubernetesSecretStorage
from agent.kubeapi import ApiError
from agent.plan import CyclePlan, plan_cycle
from agent.teleport.client import TeleportClient
from agent.teleport.errors import TeleportError
from agent.teleport.model import KubeCluster
from agent.teleport.storage import IdentityStore, KubernetesSecretStore, MemoryStore

__all__ = [
    "KubernetesUnavailable",
    "connect",
    "desired",
    "fail",
    "identity_store",
]


class KubernetesUnavailable(Exception):
    """No Kubernetes credentials: neither in a pod nor a usable $KUBECONFIG."""


def connect() -> k8s.ApiClient:
    """The Kubernetes API with the pod's ServiceAccount credentials, elsewhere $KUBECONFIG's;
    KubernetesUnavailable, saying how to give the agent access, when there are neither."""
    try:
        try:
            k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException:
            k8s_config.load_kube_config()  # type: ignore[no-untyped-call]
        return k8s.ApiClient()
    except (k8s_config.ConfigException, OSError) as exc:
        raise KubernetesUnavailable(
            f"no Kubernetes credentials ({exc}): run in a pod with a ServiceAccount, or set "
            "KUBECONFIG"
        ) from None


def identity_store(config: AgentConfig, api: k8s.ApiClient) -> IdentityStore:
    if isinstance(config.storage, KubernetesSecretStorage):
        return KubernetesSecretStore(api, name=config.storage.name)
    return MemoryStore()


def desired(
    config: AgentConfig, client: TeleportClient, now: dt.datetime
) -> tuple[list[KubeCluster], CyclePlan]:
    """The clusters Teleport lists and one cycle's desired secrets, as the daemon would render
    them now; raises TeleportError."""
    proxy = client.proxy_settings()
    credential = client.issue_credential(config.credential_ttl)
    clusters = client.list_clusters()
    cycle = plan_cycle(
        config,
        proxy=proxy,
        clusters=clusters,
        credential=credential,
        agent_version=__version__,
        now=now,
    )
    return clusters, cycle


def fail(exc: TeleportError | ApiError) -> int:
    print(f"error: {exc}", file=sys.stderr)
    # The bot identity's Secret is Kubernetes' part, not Teleport's.
    return EXIT_KUBERNETES if isinstance(exc, ApiError) else EXIT_TELEPORT
