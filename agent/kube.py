"""Writes desired cluster secrets with server-side apply, safely and concurrently.

Least privilege: the agent never reads secrets. Creating through apply is authorized as
``create`` and updating as ``patch``; pruning is one label-selected ``deletecollection``
call. So the Role needs only those verbs, and the agent cannot read Argo CD's other secrets.

Ownership: every apply is made by the owning service's own field manager
(``teleport-argocd-agent/<owner>``), first without force. A conflict means another field manager
owns a field the agent wants to set. If every conflicting manager is adoptable (tbot, which
wrote the same names before, or Argo CD's own API server, which rewrites a cluster secret
when an operator invalidates its cache) the apply is repeated with force; otherwise the
secret belongs to someone else - another tool, another agent service or another
installation - and is left untouched and reported. Fields other managers
added that the agent does not set (labels, annotations) survive, because apply only touches
the fields in its body.

Each secret gets its own result; one failure never stops the others. Transient failures
(429, 5xx, timeouts, dropped connections) are retried with capped exponential backoff and
jitter; everything else is final for this cycle.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import urllib3
from kubernetes.client import ApiClient
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from agent import labels as L
from agent.argocd import DesiredSecret

__all__ = [
    "ADOPTABLE_MANAGERS",
    "ApiError",
    "Outcome",
    "PruneResult",
    "SecretWriter",
    "WriteResult",
]

# Field managers whose fields the agent takes over (see the module docstring).
ADOPTABLE_MANAGERS = frozenset({"tbot", "argocd-server"})
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
_CONFLICT_MANAGER = re.compile(r'conflicts? with "([^"]+)"')
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    CONFLICT = "conflict"
    ERROR = "error"


@dataclass(frozen=True)
class WriteResult:
    namespace: str
    name: str
    cluster: str
    outcome: Outcome
    detail: str = ""
    # Foreign field managers behind a conflict, or the adopted ones after a forced apply.
    managers: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.CREATED, Outcome.UPDATED, Outcome.UNCHANGED)


@dataclass(frozen=True)
class PruneResult:
    namespace: str
    deleted: tuple[str, ...]
    skipped_reason: str = ""
    error: str = ""


class ApiError(Exception):
    """A Kubernetes API request failed; ``status`` is 0 for transport failures."""

    def __init__(self, status: int, reason: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {reason}".strip())
        self.status = status
        self.reason = reason
        self.body = body or {}

    @property
    def transient(self) -> bool:
        return self.status == 0 or self.status in _RETRY_STATUSES


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and exc.transient


class SecretWriter:
    """Applies desired secrets through one Kubernetes API client."""

    def __init__(
        self,
        api: ApiClient,
        *,
        concurrency: int = 16,
        adoptable_managers: Collection[str] = ADOPTABLE_MANAGERS,
        request_timeout: float = 30.0,
        retry_attempts: int = 5,
        retry_max_wait: float = 10.0,
        retry_deadline: float = 60.0,
    ) -> None:
        self._api = api
        self._concurrency = max(1, concurrency)
        self._adoptable = frozenset(adoptable_managers)
        self._timeout = request_timeout
        self._retry = Retrying(
            retry=retry_if_exception(_retryable),
            wait=wait_exponential_jitter(multiplier=0.2, max=retry_max_wait),
            stop=stop_after_attempt(retry_attempts) | stop_after_delay(retry_deadline),
            reraise=True,
        )
        # Last resourceVersion seen per secret: an apply that leaves it unchanged did nothing.
        self._versions: dict[tuple[str, str], str] = {}
        self._versions_lock = threading.Lock()
        # The API client's connection pool must allow as many connections as workers.
        api.rest_client.pool_manager.connection_pool_kw["maxsize"] = max(
            self._concurrency, api.rest_client.pool_manager.connection_pool_kw.get("maxsize") or 1
        )

    # -- writes ---------------------------------------------------------------------------

    def write(
        self,
        secrets: Sequence[DesiredSecret],
        *,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> list[WriteResult]:
        """Apply every secret (bounded concurrency); results are in input order.

        ``should_stop`` is checked before each secret starts and before each retry: a stopping
        agent finishes the writes in flight, skips the rest and gives up on a server that is
        down instead of outliving its termination grace period. No secret is ever half-written.
        """

        def one(secret: DesiredSecret) -> WriteResult:
            if should_stop():
                return WriteResult(
                    secret.namespace,
                    secret.name,
                    secret.cluster,
                    Outcome.ERROR,
                    "skipped: stopping",
                )
            return self.write_one(secret, should_stop=should_stop)

        if len(secrets) <= 1 or self._concurrency == 1:
            return [one(s) for s in secrets]
        with ThreadPoolExecutor(self._concurrency, thread_name_prefix="secret-writer") as pool:
            return list(pool.map(one, secrets))

    def write_one(
        self, secret: DesiredSecret, *, should_stop: Callable[[], bool] = lambda: False
    ) -> WriteResult:
        def result(outcome: Outcome, detail: str = "", managers: Sequence[str] = ()) -> WriteResult:
            return WriteResult(
                secret.namespace, secret.name, secret.cluster, outcome, detail, tuple(managers)
            )

        try:
            try:
                status, body = self._apply(secret, force=False, should_stop=should_stop)
                adopted: list[str] = []
            except ApiError as exc:
                if exc.status != 409:
                    raise
                managers = _conflict_managers(exc.body)
                foreign = sorted(set(managers) - self._adoptable - {secret.field_manager})
                if foreign or not managers:
                    return result(
                        Outcome.CONFLICT,
                        "owned by another field manager; left untouched "
                        f"({exc.body.get('message', exc.reason)})",
                        foreign or managers,
                    )
                adopted = sorted(set(managers))
                status, body = self._apply(secret, force=True, should_stop=should_stop)
        except ApiError as exc:
            return result(Outcome.ERROR, _describe(exc))
        version = str(body.get("metadata", {}).get("resourceVersion", ""))
        key = (secret.namespace, secret.name)
        with self._versions_lock:
            previous = self._versions.get(key)
            self._versions[key] = version
        if status == 201:
            return result(Outcome.CREATED)
        if adopted:
            return result(Outcome.UPDATED, "took over fields from " + ", ".join(adopted), adopted)
        if previous is not None and previous == version:
            return result(Outcome.UNCHANGED)
        return result(Outcome.UPDATED)

    def _apply(
        self, secret: DesiredSecret, *, force: bool, should_stop: Callable[[], bool]
    ) -> tuple[int, dict[str, Any]]:
        query: list[tuple[str, str]] = [("fieldManager", secret.field_manager)]
        if force:
            query.append(("force", "true"))
        path = f"/api/v1/namespaces/{secret.namespace}/secrets/{secret.name}"
        body = secret.apply_body()
        return self._call("PATCH", path, query, body, APPLY_CONTENT_TYPE, should_stop=should_stop)

    def current(self, namespace: str, name: str, field_manager: str) -> dict[str, Any] | None:
        """The live secret or None, read with a dry-run no-op merge patch.

        The agent has no ``get`` on secrets; a PATCH answer carries the whole object, and the
        admission policy limits such reads to the agent's own secrets. Used by plan and check.
        """
        try:
            _, body = self._call(
                "PATCH",
                f"/api/v1/namespaces/{namespace}/secrets/{name}",
                [("dryRun", "All"), ("fieldManager", field_manager)],
                {},
                "application/merge-patch+json",
            )
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return body

    # -- prune ----------------------------------------------------------------------------

    def prune(
        self,
        namespace: str,
        owner: str,
        keep_hashes: Collection[str],
        *,
        listing_complete: bool,
        dry_run: bool = False,
    ) -> PruneResult:
        """Delete this owner's secrets whose cluster hash is not in ``keep_hashes``.

        Never runs after a failed or empty cluster listing: an outage of Teleport must not
        look like "every cluster was removed".
        """
        if not listing_complete:
            return PruneResult(namespace, (), "the cluster listing failed this cycle")
        if not keep_hashes:
            return PruneResult(namespace, (), "the cluster listing came back empty")
        selector = (
            f"{L.LABEL_MANAGED_BY}={L.MANAGED_BY},{L.LABEL_OWNER}={owner},"
            f"{L.LABEL_CLUSTER} notin ({','.join(sorted(keep_hashes))})"
        )
        query = [("labelSelector", selector)]
        if dry_run:
            query.append(("dryRun", "All"))
        try:
            _, body = self._call(
                "DELETE", f"/api/v1/namespaces/{namespace}/secrets", query, None, None
            )
        except ApiError as exc:
            return PruneResult(namespace, (), error=_describe(exc))
        deleted = tuple(
            sorted(str(item.get("metadata", {}).get("name")) for item in body.get("items") or [])
        )
        with self._versions_lock:
            for name in deleted:
                self._versions.pop((namespace, name), None)
        return PruneResult(namespace, deleted)

    # -- transport ------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        body: dict[str, Any] | None,
        content_type: str | None,
        *,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> tuple[int, dict[str, Any]]:
        limit = self._retry.stop
        retrying = self._retry.copy(stop=lambda state: bool(limit(state)) or should_stop())
        for attempt in retrying:
            with attempt:
                return self._call_once(method, path, query, body, content_type)
        raise AssertionError("unreachable")  # pragma: no cover - Retrying reraises

    def _call_once(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        body: dict[str, Any] | None,
        content_type: str | None,
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        method, url, headers, payload, _ = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self._api.call_api(
                method, url, header_params=headers, body=payload, _request_timeout=self._timeout
            )
            raw: bytes = response.read()  # type: ignore[no-untyped-call]
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiError(0, f"cannot reach the Kubernetes API: {type(exc).__name__}") from exc
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        if response.status >= 400:
            raise ApiError(response.status, str(data.get("reason") or response.reason or ""), data)
        return response.status, data


def _conflict_managers(body: dict[str, Any]) -> list[str]:
    causes = (body.get("details") or {}).get("causes") or []
    text = [str(c.get("message", "")) for c in causes] or [str(body.get("message", ""))]
    managers: list[str] = []
    for line in text:
        managers += _CONFLICT_MANAGER.findall(line)
    return managers


def _describe(exc: ApiError) -> str:
    message = exc.body.get("message") if exc.body else ""
    if exc.status == 403:
        return (
            f"forbidden: {message or exc.reason}. The agent's Role needs create and patch on "
            "secrets in this namespace (and deletecollection when pruning)"
        )
    return f"{exc.status} {message or exc.reason}".strip()
