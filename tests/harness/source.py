"""A TeleportSource for exercising the daemon's loop: the inventory is data the test controls.

The runtime reaches Teleport only through the ``TeleportSource`` interface. These tests are
about the loop itself (schedules, discovery, signals, faults, readiness) with the real API
server as the target, so Teleport's part is played by data: a cluster list the test edits (in
memory, or in a JSON file for a daemon running as its own process) and credentials issued by a
throw-away CA. Operations listed in ``failing`` raise TeleportError, the faults the loop must
survive.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable
from pathlib import Path

from agent.teleport.errors import Operation, TeleportError
from agent.teleport.model import Credential, KubeCluster, ProxySettings
from tests.harness.pki import CertificateAuthority

PROXY = ProxySettings("root", "teleport.example.com:443", tls_routing=True)


class InventorySource:
    """Clusters from ``clusters`` (or ``inventory_file``), credentials numbered from 1."""

    def __init__(
        self,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        clusters: list[KubeCluster] | None = None,
        inventory_file: Path | None = None,
        ca: CertificateAuthority | None = None,
        lifetime_cap: dt.timedelta | None = None,
    ) -> None:
        self.clusters = list(clusters or [])
        self.proxy = PROXY
        self.failing: set[str] = set()
        self.issued: list[dt.timedelta] = []
        self.lifetime_cap = lifetime_cap
        self._clock = clock
        self._file = inventory_file
        self._ca = ca
        self._lock = threading.Lock()

    def _check(self, method: str, operation: Operation) -> None:
        """Fail ``method`` (named in ``failing``) as the client fails ``operation``."""
        failing = self.failing
        if self._file is not None:
            failing = set(json.loads(self._file.read_text()).get("failing", []))
        if method in failing:
            raise TeleportError(operation, "connection refused")

    def proxy_settings(self) -> ProxySettings:
        self._check("proxy_settings", Operation.PING)
        return self.proxy

    def list_clusters(self) -> list[KubeCluster]:
        self._check("list_clusters", Operation.LIST_CLUSTERS)
        if self._file is not None:
            data = json.loads(self._file.read_text())
            return [KubeCluster(c["name"], c.get("labels", {})) for c in data["clusters"]]
        return list(self.clusters)

    def issue_credential(self, ttl: dt.timedelta) -> Credential:
        self._check("issue_credential", Operation.ISSUE)
        with self._lock:
            self.issued.append(ttl)
            serial = len(self.issued)
        lifetime = min(ttl, self.lifetime_cap) if self.lifetime_cap else ttl
        if self._ca is not None:
            pair = self._ca.issue(f"bot-argocd-{serial}", client=True, validity=lifetime)
            return Credential.from_pem(pair.cert_pem, pair.key_pem, (self._ca.cert_pem,), "argocd")
        cert = f"-----BEGIN CERTIFICATE-----\nCERT-{serial}\n-----END CERTIFICATE-----\n"
        key = f"-----BEGIN PRIVATE KEY-----\nKEY-{serial}\n-----END PRIVATE KEY-----\n"
        ca = b"-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"
        return Credential(cert.encode(), key.encode(), (ca,), "argocd", self._clock() + lifetime)


def write_inventory(path: Path, clusters: list[KubeCluster], failing: tuple[str, ...] = ()) -> None:
    """Replace the inventory a daemon process reads (atomically, so it never sees half)."""
    data = {
        "clusters": [{"name": c.name, "labels": dict(c.labels)} for c in clusters],
        "failing": list(failing),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
