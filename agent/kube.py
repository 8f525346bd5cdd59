"""Writes desired cluster secrets with server-side apply, safely and concurrently.

Least privilege: the agent has no ``get`` or ``list`` on secrets. Creating through apply is
authorized as ``create`` and updating as ``patch``; pruning is one label-selected
``deletecollection`` call. So the Role needs only those verbs. What its own secrets hold is read
from the answers to dry-run patches (``read_held`` at start, ``current`` for plan and check);
``read_held``'s patch tests the owner label, so the API server answers with the object only
when it is the agent's. RBAC cannot limit them to the agent's own secrets,
though: a (dry-run) PATCH answers with the whole object, so ``patch`` reads any secret whose name
is known, and ``create`` can make a token Secret for another ServiceAccount. The chart's
ValidatingAdmissionPolicy closes both (chart/templates/admissionpolicy.yaml); without it the
agent's ServiceAccount is only as trustworthy as the process using it.

Ownership: every apply is made by the owning service's own field manager
(``teleport-argocd-agent/<owner>``), first without force. Ownership is decided from who manages
the object, not only from apply conflicts: a secret this process has not written yet is first
applied as a dry run, and if another field manager (not an adoptable one) manages any of its
``data`` or its ``type``, it is someone else's secret even when no field the agent sets
conflicts. Where the chart's admission policy guards the ServiceAccount (config
``admission_policy``), the API server makes that decision itself from the owner label and
refuses the write, so the dry run is skipped. A conflict means another field manager owns a
field the agent wants to set. If every conflicting manager is adoptable (tbot, which wrote the
same names before, or Argo CD's own API server, which rewrites a cluster secret when an operator
invalidates its cache) the apply is repeated with force; otherwise the secret belongs to someone
else - another tool, another agent service or another installation - and is left untouched and
reported. Fields other managers added that the agent does not set (labels, annotations) survive,
because apply only touches the fields in its body - except the ``data`` keys an adopted manager
left behind (tbot's ``project``, ``namespaces``, ``clusterResources``), which are removed, so
that an adopted secret says exactly what this agent's config says.

Each secret gets its own result; one failure never stops the others. Transient failures
(429, 5xx, timeouts, dropped connections) are retried with capped exponential backoff and
jitter; everything else is final for this cycle. That is the only retry layer: the transport
(``kubeapi.py``) makes one attempt per call. An API server that cannot be reached
must not hold the daemon for longer than a credential lives, so a cycle also stops trying after
a run of consecutive transport failures (a circuit breaker) or when its time budget is spent:
the remaining secrets are reported as skipped and written at the next discovery.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from kubernetes.client import ApiClient
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from agent import labels as L
from agent.argocd import DesiredSecret, held_by
from agent.kubeapi import ApiError, KubeTransport, encode
from agent.writes import Held, Outcome, PruneResult, WriteResult

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
JSON_PATCH_CONTENT_TYPE = "application/json-patch+json"
# Parts of a Secret that say what it is; a manager of any of them owns the secret.
_CONTENT_FIELDS = frozenset({"f:data", "f:stringData", "f:type", "f:immutable"})
_CONFLICT_MANAGER = re.compile(r'conflicts? with "([^"]+)"')
SKIPPED_STOPPING = "skipped: stopping"
SKIPPED_UNREACHABLE = "skipped: the Kubernetes API server is unreachable"
SKIPPED_BUDGET = "skipped: the cycle's time budget is spent"


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and exc.transient


class _NotOurs(Exception):
    """The secret belongs to another field manager: left untouched and reported."""

    def __init__(self, detail: str, managers: Sequence[str] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.managers = tuple(managers)


class _Breaker:
    """Opens after ``threshold`` consecutive attempts that reached no API server; any answer
    from the server closes it again. Shared by the workers of one ``write`` call."""

    def __init__(self, threshold: int) -> None:
        self._threshold = threshold
        self._failures = 0
        self._lock = threading.Lock()

    @property
    def open(self) -> bool:
        return self._failures >= self._threshold

    def record(self, *, reached: bool) -> None:
        with self._lock:
            self._failures = 0 if reached else self._failures + 1


class SecretWriter:
    """Applies desired secrets through one Kubernetes API client."""

    def __init__(
        self,
        api: ApiClient,
        *,
        concurrency: int = 16,
        adoptable_managers: Collection[str] = ADOPTABLE_MANAGERS,
        connect_timeout: float = 5.0,
        request_timeout: float = 20.0,
        retry_attempts: int = 5,
        retry_max_wait: float = 10.0,
        retry_deadline: float = 60.0,
        breaker_threshold: int = 8,
        ownership_enforced: bool = False,
    ) -> None:
        # True when an admission policy makes the API server refuse writes to secrets that are
        # not ours: then the policy's verdict replaces the dry run of the first write.
        self._ownership_enforced = ownership_enforced
        self._concurrency = max(1, concurrency)
        self._adoptable = frozenset(adoptable_managers)
        self._transport = KubeTransport(
            api,
            connections=self._concurrency,
            connect_timeout=connect_timeout,
            request_timeout=request_timeout,
        )
        self._breaker_threshold = max(1, breaker_threshold)
        self._retry = Retrying(
            retry=retry_if_exception(_retryable),
            wait=wait_exponential_jitter(multiplier=0.2, max=retry_max_wait),
            stop=stop_after_attempt(retry_attempts) | stop_after_delay(retry_deadline),
            reraise=True,
        )
        # Last resourceVersion seen per secret: an apply that leaves it unchanged did nothing.
        self._versions: dict[tuple[str, str], str] = {}
        self._versions_lock = threading.Lock()

    # -- writes ---------------------------------------------------------------------------

    def write(
        self,
        secrets: Sequence[DesiredSecret],
        *,
        should_stop: Callable[[], bool] = lambda: False,
        budget: float | None = None,
    ) -> list[WriteResult]:
        """Apply every secret (bounded concurrency); results are in input order.

        ``should_stop`` is checked before each secret starts and before each retry: a stopping
        agent finishes the writes in flight, skips the rest and gives up on a server that is
        down instead of outliving its termination grace period. The circuit breaker and the
        time ``budget`` (seconds) end the call the same way. No secret is ever half-written.
        """
        breaker = _Breaker(self._breaker_threshold)
        deadline = None if budget is None else time.monotonic() + budget

        def skip_reason() -> str:
            if should_stop():
                return SKIPPED_STOPPING
            if breaker.open:
                return SKIPPED_UNREACHABLE
            if deadline is not None and time.monotonic() > deadline:
                return SKIPPED_BUDGET
            return ""

        def one(secret: DesiredSecret) -> WriteResult:
            reason = skip_reason()
            if reason:
                return WriteResult(
                    secret.namespace,
                    secret.name,
                    secret.cluster,
                    Outcome.ERROR,
                    reason,
                    unreachable=reason == SKIPPED_UNREACHABLE,
                )
            return self.write_one(
                secret, should_stop=lambda: bool(skip_reason()), on_attempt=breaker.record
            )

        if len(secrets) <= 1 or self._concurrency == 1:
            return [one(s) for s in secrets]
        with ThreadPoolExecutor(self._concurrency, thread_name_prefix="secret-writer") as pool:
            return list(pool.map(one, secrets))

    def write_one(
        self,
        secret: DesiredSecret,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        on_attempt: Callable[..., None] = lambda **_: None,
    ) -> WriteResult:
        """Apply one secret. ``on_attempt(reached=...)`` hears whether each attempt got an
        answer from the API server (the circuit breaker of ``write``)."""

        def result(outcome: Outcome, detail: str = "", managers: Sequence[str] = ()) -> WriteResult:
            return WriteResult(
                secret.namespace, secret.name, secret.cluster, outcome, detail, tuple(managers)
            )

        # Encoded once: the dry run, the apply and a forced apply send the same body.
        payload = encode(secret.apply_body())

        def apply(force: bool, dry_run: bool = False) -> tuple[int, dict[str, Any]]:
            return self._apply(
                secret,
                payload,
                force=force,
                dry_run=dry_run,
                should_stop=should_stop,
                on_attempt=on_attempt,
            )

        key = (secret.namespace, secret.name)
        try:
            status, body, adopted = self._write_owned(secret, apply, should_stop, on_attempt)
        except _NotOurs as refused:
            return result(Outcome.CONFLICT, refused.detail, refused.managers)
        except ApiError as exc:
            if _denied_by_policy(exc):
                # The chart's admission policy decides ownership from the live object: a secret
                # that is not this service's (nor tbot's) cannot be written, dry runs included.
                return result(
                    Outcome.CONFLICT,
                    "not this agent's secret (refused by the admission policy); left untouched",
                )
            if exc.status == 0:
                return replace(result(Outcome.ERROR, _describe(exc)), unreachable=True)
            return result(Outcome.ERROR, _describe(exc))
        version = str(body.get("metadata", {}).get("resourceVersion", ""))
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

    def _write_owned(
        self,
        secret: DesiredSecret,
        apply: Callable[..., tuple[int, dict[str, Any]]],
        should_stop: Callable[[], bool],
        on_attempt: Callable[..., None],
    ) -> tuple[int, dict[str, Any], list[str]]:
        """Apply, unless another field manager owns the secret (``_NotOurs``); an adoptable
        manager's fields are taken over and its leftover data keys removed. Returns the status,
        the object answered and the managers adopted."""
        with self._versions_lock:
            known = (secret.namespace, secret.name) in self._versions
        if not known and not self._ownership_enforced:
            foreign = self._foreign_managers(secret, apply)
            if foreign:
                raise _NotOurs("written by another field manager; left untouched", foreign)
        adopted: list[str] = []
        try:
            status, body = apply(False)
        except ApiError as exc:
            if exc.status != 409:
                raise
            managers = _conflict_managers(exc.body)
            foreign = sorted(set(managers) - self._adoptable - {secret.field_manager})
            if foreign or not managers:
                raise _NotOurs(
                    "owned by another field manager; left untouched "
                    f"({exc.body.get('message', exc.reason)})",
                    foreign or managers,
                ) from None
            adopted = sorted(set(managers))
            status, body = apply(True)
        leftovers = _leftover_data(body, self._adoptable, secret)
        if leftovers:
            status, body = self._remove_data(secret, body, leftovers, should_stop, on_attempt)
            adopted = adopted or sorted(set(leftovers.values()))
        return status, body, adopted

    def _foreign_managers(
        self, secret: DesiredSecret, apply: Callable[..., tuple[int, dict[str, Any]]]
    ) -> list[str]:
        """Field managers other than this service and the adoptable ones that manage the
        existing secret's data or type, seen through a dry-run apply (nothing is written)."""
        try:
            status, body = apply(False, dry_run=True)
        except ApiError as exc:
            if exc.status == 409:
                return []  # a conflict: the apply itself decides, from the conflicting managers
            raise
        if status == 201:
            return []  # no such secret yet
        managers = {
            str(entry.get("manager", ""))
            for entry in body.get("metadata", {}).get("managedFields") or []
            if set(entry.get("fieldsV1") or {}) & _CONTENT_FIELDS
        }
        return sorted(managers - self._adoptable - {secret.field_manager})

    def _remove_data(
        self,
        secret: DesiredSecret,
        live: dict[str, Any],
        keys: dict[str, str],
        should_stop: Callable[[], bool],
        on_attempt: Callable[..., None],
    ) -> tuple[int, dict[str, Any]]:
        """Remove ``keys`` from the secret's data: a JSON patch (authorized as ``patch``) that
        applies only to the version just written."""
        version = str(live.get("metadata", {}).get("resourceVersion", ""))
        ops: list[dict[str, str]] = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": version}
        ]
        ops += [{"op": "remove", "path": f"/data/{_json_pointer(k)}"} for k in sorted(keys)]
        path = f"/api/v1/namespaces/{secret.namespace}/secrets/{secret.name}"
        query = [("fieldManager", secret.field_manager)]
        return self._call(
            "PATCH",
            path,
            query,
            ops,
            JSON_PATCH_CONTENT_TYPE,
            should_stop=should_stop,
            on_attempt=on_attempt,
        )

    def _apply(
        self,
        secret: DesiredSecret,
        payload: bytes,
        *,
        force: bool,
        should_stop: Callable[[], bool],
        on_attempt: Callable[..., None],
        dry_run: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        query: list[tuple[str, str]] = [("fieldManager", secret.field_manager)]
        if force:
            query.append(("force", "true"))
        if dry_run:
            query.append(("dryRun", "All"))
        path = f"/api/v1/namespaces/{secret.namespace}/secrets/{secret.name}"
        return self._call(
            "PATCH",
            path,
            query,
            payload,
            APPLY_CONTENT_TYPE,
            should_stop=should_stop,
            on_attempt=on_attempt,
        )

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

    def read_held(self, secrets: Sequence[DesiredSecret]) -> dict[tuple[str, str], Held]:
        """What each secret that is already this service's holds (a hint for the rotation
        window); a secret missing, someone else's or unreadable is left out.

        Each is read with a dry-run JSON patch whose one operation tests the owner label: the
        API server answers with the object only when the test passes, so a secret of the same
        name that is not this service's is never read, with or without the admission policy
        (which also refuses it). Nothing is written and no verb beyond ``patch`` is needed.
        """

        def one(secret: DesiredSecret) -> tuple[tuple[str, str], Held | None]:
            label = "/metadata/labels/" + _json_pointer(L.LABEL_OWNER)
            try:
                _, live = self._call(
                    "PATCH",
                    f"/api/v1/namespaces/{secret.namespace}/secrets/{secret.name}",
                    [("dryRun", "All"), ("fieldManager", secret.field_manager)],
                    [{"op": "test", "path": label, "value": secret.owner}],
                    JSON_PATCH_CONTENT_TYPE,
                )
            except ApiError:
                return (secret.namespace, secret.name), None
            return (secret.namespace, secret.name), held_by(secret, live)

        if not secrets:
            return {}
        with ThreadPoolExecutor(self._concurrency, thread_name_prefix="secret-reader") as pool:
            return {key: held for key, held in pool.map(one, secrets) if held is not None}

    # -- prune ----------------------------------------------------------------------------

    def prune(
        self,
        namespace: str,
        owner: str,
        keep_hashes: Collection[str],
        *,
        dry_run: bool = False,
    ) -> PruneResult:
        """Delete this owner's secrets whose cluster hash is not in ``keep_hashes``.

        The plan asks for a prune only after a listing that worked (``plan.plan_cycle``); an
        empty ``keep_hashes`` is refused here as well, so a listing that came back empty can
        never look like "every cluster was removed".
        """
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
        body: bytes | dict[str, Any] | list[dict[str, str]] | None,
        content_type: str | None,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        on_attempt: Callable[..., None] = lambda **_: None,
    ) -> tuple[int, dict[str, Any]]:
        limit = self._retry.stop
        retrying = self._retry.copy(stop=lambda state: bool(limit(state)) or should_stop())
        for attempt in retrying:
            with attempt:
                try:
                    answer = self._transport.call(
                        method,
                        path,
                        query=query,
                        body=body,
                        content_type=content_type,
                        operation="write",
                    )
                except ApiError as exc:
                    on_attempt(reached=exc.status != 0)
                    raise
                on_attempt(reached=True)
                return answer
        raise AssertionError("unreachable")  # pragma: no cover - Retrying reraises


def _leftover_data(
    body: dict[str, Any], adoptable: frozenset[str], secret: DesiredSecret
) -> dict[str, str]:
    """Data keys an adoptable manager (tbot, argocd-server) manages that this secret does not
    set: key -> manager. Another manager's fields survive an apply, even a forced one."""
    leftovers: dict[str, str] = {}
    for entry in body.get("metadata", {}).get("managedFields") or []:
        manager = str(entry.get("manager", ""))
        if manager not in adoptable:
            continue
        for field in (entry.get("fieldsV1") or {}).get("f:data") or {}:
            key = str(field).removeprefix("f:")
            if key not in secret.data and key in (body.get("data") or {}):
                leftovers[key] = manager
    return leftovers


def _json_pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _conflict_managers(body: dict[str, Any]) -> list[str]:
    causes = (body.get("details") or {}).get("causes") or []
    text = [str(c.get("message", "")) for c in causes] or [str(body.get("message", ""))]
    managers: list[str] = []
    for line in text:
        managers += _CONFLICT_MANAGER.findall(line)
    return managers


def _denied_by_policy(exc: ApiError) -> bool:
    # 403 for a denial, 422 when a policy expression failed on this object (also a denial).
    return exc.status in (403, 422) and "ValidatingAdmissionPolicy" in str(
        exc.body.get("message", "")
    )


def _describe(exc: ApiError) -> str:
    message = exc.body.get("message") if exc.body else ""
    if _denied_by_policy(exc):
        return f"refused by the admission policy: {message}"
    if exc.status == 403:
        return (
            f"forbidden: {message or exc.reason}. The agent's Role needs create and patch on "
            "secrets in this namespace (and deletecollection when pruning)"
        )
    return f"{exc.status} {message or exc.reason}".strip()
