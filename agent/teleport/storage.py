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
import json
import os
from typing import Any, Protocol

import urllib3
from kubernetes.client import ApiClient

from agent.teleport.errors import TeleportError
from agent.teleport.model import BotIdentity, split_pem_certificates

__all__ = ["IdentityStore", "KubernetesSecretStore", "MemoryStore", "StorageError"]

FIELD_MANAGER = "teleport-argocd-agent/identity"
_CERT, _KEY, _HOST_CA = "tls.crt", "tls.key", "host-ca.crt"


class StorageError(TeleportError):
    """The identity Secret could not be read or written."""


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
        self._api = api
        self.name = name
        self.namespace = namespace or os.environ.get("POD_NAMESPACE") or "default"
        self._path = f"/api/v1/namespaces/{self.namespace}/secrets/{self.name}"

    def describe(self) -> str:
        return f"secret {self.namespace}/{self.name}"

    def __repr__(self) -> str:
        return f"KubernetesSecretStore({self.namespace}/{self.name})"

    def load(self) -> BotIdentity | None:
        status, body = self._call("GET", [], None, None)
        if status == 404:
            return None
        if status != 200:
            raise self._error("read", status, body)
        data = body.get("data") or {}
        try:
            cert, key = (base64.b64decode(data[k]) for k in (_CERT, _KEY))
            host_ca = split_pem_certificates(base64.b64decode(data.get(_HOST_CA, "")))
            return BotIdentity.from_pem(cert, key, host_ca)
        except (KeyError, ValueError) as exc:
            raise StorageError(
                "load identity",
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
        status, answer = self._call("PATCH", query, body, "application/apply-patch+yaml")
        if status not in (200, 201):
            raise self._error("save", status, answer)

    def _error(self, verb: str, status: int, body: dict[str, Any]) -> StorageError:
        message = body.get("message") or body.get("reason") or f"HTTP {status}"
        hint = ""
        if status == 403:
            hint = (
                "; the agent's ServiceAccount needs get and patch on this one Secret "
                "(and create): the chart's identity Role grants exactly that"
            )
        return StorageError(f"{verb} identity", f"{self.describe()}: {message}{hint}")

    def _call(
        self,
        method: str,
        query: list[tuple[str, str]],
        body: dict[str, Any] | None,
        content_type: str | None,
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        method, url, headers, payload, _ = self._api.param_serialize(
            method=method,
            resource_path=self._path,
            query_params=query,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self._api.call_api(
                method, url, header_params=headers, body=payload, _request_timeout=30
            )
            raw: bytes = response.read()  # type: ignore[no-untyped-call]
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageError(
                "identity storage",
                f"cannot reach the Kubernetes API for {self.describe()}: {type(exc).__name__}",
            ) from None
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        return int(response.status), data if isinstance(data, dict) else {}
