"""Where the bot identity lives between restarts (config ``storage``).

The token join method's token works once, and every renewal makes the older identity
unusable (presenting it again locks the bot, TELEPORT.md §5). So a renewable identity is
saved *before* it is used, to one named Secret, and a restarted agent continues from it.

The Secret is read with ``get`` and written with server-side apply on its one name: the
chart's Role grants ``get``/``patch``/``update`` on that resourceName only (plus ``create``,
which Kubernetes cannot limit by name).
"""

from __future__ import annotations

import base64
from typing import Any, Protocol

from kubernetes.client import ApiClient

from agent.config import pod_namespace
from agent.kubeapi import ApiError, KubeTransport
from agent.teleport.errors import Operation
from agent.teleport.model import BotIdentity, split_pem_certificates

__all__ = ["IdentityStore", "KubernetesSecretStore", "MemoryStore", "StorageError"]

FIELD_MANAGER = "teleport-argocd-agent/identity"
_CERT, _KEY, _HOST_CA = "tls.crt", "tls.key", "host-ca.crt"


class StorageError(ApiError):
    """The identity Secret could not be read or written: a Kubernetes failure, reported as one
    (exit code, metric and readiness reason), not as Teleport's."""

    def __init__(self, operation: Operation, message: str, status: int = 0) -> None:
        super().__init__(status, message, operation=operation)

    def __str__(self) -> str:
        return f"{self.operation}: {self.reason}"


class IdentityStore(Protocol):
    def load(self) -> BotIdentity | None: ...

    def save(self, identity: BotIdentity) -> None: ...

    def describe(self) -> str: ...


class MemoryStore:
    """Kept only in memory (the kubernetes join method re-joins after a restart)."""

    def __init__(self) -> None:
        self._identity: BotIdentity | None = None

    def load(self) -> BotIdentity | None:
        return self._identity

    def save(self, identity: BotIdentity) -> None:
        self._identity = identity

    def describe(self) -> str:
        return "memory"


class KubernetesSecretStore:
    """One Secret, ``namespace/name``: the certificate, its key and the Host CA."""

    def __init__(self, api: ApiClient, *, name: str, namespace: str | None = None) -> None:
        self._transport = KubeTransport(api)
        self.name = name
        self.namespace = namespace or pod_namespace()
        self._path = f"/api/v1/namespaces/{self.namespace}/secrets/{self.name}"

    def describe(self) -> str:
        return f"secret {self.namespace}/{self.name}"

    def __repr__(self) -> str:
        return f"KubernetesSecretStore({self.namespace}/{self.name})"

    def load(self) -> BotIdentity | None:
        try:
            _, body = self._call("GET", Operation.LOAD_IDENTITY)
        except StorageError as exc:
            if exc.status == 404:
                return None
            raise
        data = body.get("data") or {}
        try:
            cert, key = (base64.b64decode(data[k]) for k in (_CERT, _KEY))
            host_ca = split_pem_certificates(base64.b64decode(data.get(_HOST_CA, "")))
            return BotIdentity.from_pem(cert, key, host_ca)
        except (KeyError, ValueError) as exc:
            raise StorageError(
                Operation.LOAD_IDENTITY,
                f"{self.describe()} does not hold a bot identity ({type(exc).__name__}); "
                "delete it and join again with a new token",
            ) from None

    def save(self, identity: BotIdentity) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/managed-by": "teleport-argocd-agent"},
            },
            "type": "Opaque",
            "data": {
                _CERT: base64.b64encode(identity.cert_pem).decode(),
                _KEY: base64.b64encode(identity.key_pem).decode(),
                _HOST_CA: base64.b64encode(b"".join(identity.host_ca_pem)).decode(),
            },
        }
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        self._call("PATCH", Operation.SAVE_IDENTITY, query, body, "application/apply-patch+yaml")

    def _call(
        self,
        method: str,
        operation: Operation,
        query: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
        content_type: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        try:
            return self._transport.call(
                method,
                self._path,
                query=query,
                body=body,
                content_type=content_type,
                operation=operation,
            )
        except ApiError as exc:
            if exc.status == 0:
                message = f"cannot reach the Kubernetes API for {self.describe()}: {exc.reason}"
            else:
                message = f"{self.describe()}: {exc.message}"
            if exc.status == 403:
                message += (
                    "; the agent's ServiceAccount needs get and patch on this one Secret "
                    "(and create): the chart's identity Role grants exactly that"
                )
            raise StorageError(operation, message, exc.status) from None
