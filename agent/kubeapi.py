"""The one way the agent talks to the Kubernetes API: a request in, status and JSON body out.

Used by the secret writer (``kube.py``) and the identity store (``teleport/storage.py``).
Requests go straight through the API client's own connection pool (its TLS settings, client
certificate and proxy), with the client's credentials (re-read on every request, so a rotated
ServiceAccount token is picked up): the generated client walks every body through its model
serializer and wraps every answer, which costs more CPU per write than the rest of the agent.

Every failure is an ``ApiError`` (``status`` 0 when no answer came), mapped here at the
boundary, so callers never see urllib3's exception types. urllib3's own retries are off: one
call is one attempt, and callers decide what to retry.

Each request goes out as one write on the socket (headers and body together): sent as two,
every write of a cycle of 1,000 updates cost two TLS records and two system calls.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import urllib3
from kubernetes.client import ApiClient
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool

__all__ = ["TRANSIENT_STATUSES", "ApiError", "KubeTransport", "Query"]

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
Query = list[tuple[str, str]]
Body = bytes | dict[str, Any] | list[dict[str, str]] | None


class ApiError(Exception):
    """A Kubernetes API request failed; ``status`` is 0 for transport failures.

    ``operation`` names the request for logs and metrics; ``summary`` leads readiness reasons.
    """

    summary = "Kubernetes API request failed"

    def __init__(
        self,
        status: int,
        reason: str,
        body: dict[str, Any] | None = None,
        *,
        operation: str = "kubernetes",
    ) -> None:
        super().__init__(f"{status} {reason}".strip())
        self.status = status
        self.reason = reason
        self.body = body or {}
        self.operation = operation

    @property
    def transient(self) -> bool:
        return self.status == 0 or self.status in TRANSIENT_STATUSES

    @property
    def message(self) -> str:
        """The API server's own sentence, else the reason."""
        return str(self.body.get("message") or self.reason or f"HTTP {self.status}")


class _OneWriteConnection(HTTPSConnection):
    """Collects what a request sends (request line, headers, body) and writes it at once."""

    _collected: bytearray | None = None

    def request(
        self, method: str, url: str, body: Any = None, headers: Any = None, **kwargs: Any
    ) -> None:
        self._collected = bytearray()
        try:
            super().request(method, url, body=body, headers=headers, **kwargs)
            data = bytes(self._collected)
        finally:
            self._collected = None
        super().send(data)

    def send(self, data: Any) -> None:
        if self._collected is not None and isinstance(data, bytes | bytearray):
            self._collected += data
            return
        super().send(data)


class _OneWritePool(HTTPSConnectionPool):
    ConnectionCls = _OneWriteConnection


class KubeTransport:
    """Requests through one Kubernetes API client; safe to share between threads."""

    def __init__(
        self,
        api: ApiClient,
        *,
        connections: int = 1,
        connect_timeout: float = 5.0,
        request_timeout: float = 20.0,
    ) -> None:
        self._api = api
        self._host = api.configuration.host.rstrip("/")
        # (connect, read): a dropped packet costs seconds, not a 30 s read per attempt.
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=request_timeout)
        # As many pooled connections as callers at once, no retries of urllib3's own (it retries
        # a failed connection 3 times by default, under every attempt of the caller), and the
        # one-write connections; pools made before this point keep their own settings.
        pool = api.rest_client.pool_manager
        pool.connection_pool_kw["maxsize"] = max(
            connections, pool.connection_pool_kw.get("maxsize") or 1
        )
        pool.connection_pool_kw["retries"] = False
        pool.pool_classes_by_scheme = {**pool.pool_classes_by_scheme, "https": _OneWritePool}
        pool.clear()

    def call(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Body = None,
        content_type: str | None = None,
        operation: str = "kubernetes",
    ) -> tuple[int, dict[str, Any]]:
        """One request; the status and the JSON object answered (empty if none). A status of
        400 or more, or no answer at all, raises ApiError."""
        headers = {**self._api.default_headers, "Accept": "application/json"}
        auth = self._api.configuration.auth_settings().get("BearerToken")
        if auth and auth.get("value"):
            headers["Authorization"] = str(auth["value"])
        if content_type:
            headers["Content-Type"] = content_type
        payload = body if body is None or isinstance(body, bytes) else encode(body)
        url = f"{self._host}{path}"
        if query:
            url += "?" + urlencode(query)
        try:
            response = self._api.rest_client.pool_manager.request(
                method,
                url,
                body=payload,
                headers=headers,
                timeout=self._timeout,
                retries=False,
                redirect=False,
            )
            raw = response.data
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiError(
                0, f"cannot reach the Kubernetes API: {type(exc).__name__}", operation=operation
            ) from exc
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        if response.status >= 400:
            reason = str(data.get("reason") or response.reason or "")
            raise ApiError(response.status, reason, data, operation=operation)
        return response.status, data


def encode(body: dict[str, Any] | list[dict[str, str]]) -> bytes:
    """Compact JSON, as sent."""
    return json.dumps(body, separators=(",", ":")).encode()
