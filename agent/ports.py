"""What the daemon needs from Teleport and from Kubernetes, as two small interfaces, and the
parts it is built from.

The loop depends on these, not on the clients: the Teleport client (``agent/teleport/client``)
and the secret writer (``agent/kube``) implement them, and tests put data or a recording in
their place.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from agent.argocd import DesiredSecret
from agent.config import AgentConfig
from agent.teleport.model import Credential, KubeCluster, ProxySettings
from agent.writes import Held, PruneResult, WriteResult

__all__ = ["Parts", "SecretSink", "TeleportSource"]


class TeleportSource(Protocol):
    """Teleport, as the daemon sees it. Every method raises TeleportError on failure."""

    def proxy_settings(self) -> ProxySettings:
        """How clients reach the cluster through the proxy (``/webapi/find``)."""
        ...

    def issue_credential(self, ttl: dt.timedelta) -> Credential:
        """Join or renew the bot as needed, then issue an output credential for ``ttl``."""
        ...

    def list_clusters(self) -> list[KubeCluster]:
        """Every Kubernetes cluster registered in Teleport, labels merged."""
        ...


class SecretSink(Protocol):
    """Where the secrets go. Failures are results, one per secret, never exceptions."""

    def write(
        self,
        secrets: Sequence[DesiredSecret],
        *,
        should_stop: Callable[[], bool] = ...,
        budget: float | None = None,
    ) -> list[WriteResult]:
        """Write every secret; results in input order. Secrets not started when
        ``should_stop`` turns true or within ``budget`` seconds are reported as skipped."""
        ...

    def prune(self, namespace: str, owner: str, keep_hashes: Collection[str]) -> PruneResult:
        """Delete ``owner``'s secrets in ``namespace`` whose cluster hash is not kept."""
        ...

    def read_held(self, secrets: Sequence[DesiredSecret]) -> dict[tuple[str, str], Held]:
        """What each of these secrets holds if it is already this agent's; the others (missing,
        someone else's, unreadable) are left out and never read."""
        ...


@dataclass(frozen=True)
class Parts:
    """What the daemon is built from: its configuration, where credentials come from, where
    secrets go, and the version it stamps on them. The loop hands it on to the keeper whole."""

    config: AgentConfig
    source: TeleportSource
    sink: SecretSink
    agent_version: str
