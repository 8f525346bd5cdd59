"""``start``, ``start --oneshot``, ``plan`` and ``check``: the flow config -> identity ->
inventory -> desired secrets -> writes, wired to the real Teleport and Kubernetes clients.

Exit codes are defined in ``agent.exitcodes``. Every Teleport failure is printed as one sentence
that says what to do; key material is never printed or logged.
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from agent import __version__
from agent.argocd import DesiredSecret
from agent.check import CheckRow, probe_secret, render_table
from agent.config import AgentConfig, KubernetesSecretStorage
from agent.exitcodes import EXIT_INCOMPLETE, EXIT_KUBERNETES, EXIT_OK, EXIT_TELEPORT
from agent.kube import SecretWriter
from agent.kubeapi import ApiError
from agent.logs import logger
from agent.plan import plan_cycle
from agent.planview import diff_secret
from agent.ports import Parts
from agent.runtime import Runtime, serve
from agent.schedule import utcnow
from agent.teleport.client import TeleportClient
from agent.teleport.errors import TeleportError
from agent.teleport.model import Credential, KubeCluster, ProxySettings
from agent.teleport.storage import IdentityStore, KubernetesSecretStore, MemoryStore

__all__ = ["ApiError", "KubernetesUnavailable", "check", "kubernetes_api", "plan", "start"]


def kubernetes_api() -> k8s.ApiClient:
    """In a pod the ServiceAccount's own credentials; elsewhere $KUBECONFIG."""
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()  # type: ignore[no-untyped-call]
    return k8s.ApiClient()


def _store(config: AgentConfig, api: k8s.ApiClient) -> IdentityStore:
    if isinstance(config.storage, KubernetesSecretStorage):
        return KubernetesSecretStore(api, name=config.storage.name)
    return MemoryStore()


class _Recorder:
    """A TeleportSource that remembers the last failure, for --oneshot's exit message."""

    def __init__(self, source: TeleportClient) -> None:
        self._source = source
        self.error: TeleportError | ApiError | None = None

    def _wrap(self, call: Any, *args: Any) -> Any:
        try:
            result = call(*args)
        except (TeleportError, ApiError) as exc:
            self.error = exc
            raise
        return result

    def proxy_settings(self) -> ProxySettings:
        result: ProxySettings = self._wrap(self._source.proxy_settings)
        return result

    def issue_credential(self, ttl: dt.timedelta) -> Credential:
        result: Credential = self._wrap(self._source.issue_credential, ttl)
        return result

    def list_clusters(self) -> list[KubeCluster]:
        result: list[KubeCluster] = self._wrap(self._source.list_clusters)
        return result


def _fail(exc: TeleportError | ApiError) -> int:
    print(f"error: {exc}", file=sys.stderr)
    # The bot identity's Secret is Kubernetes' part, not Teleport's.
    return EXIT_KUBERNETES if isinstance(exc, ApiError) else EXIT_TELEPORT


class KubernetesUnavailable(Exception):
    """No Kubernetes credentials: neither in a pod nor a usable $KUBECONFIG."""


def _api() -> k8s.ApiClient:
    try:
        return kubernetes_api()
    except (k8s_config.ConfigException, OSError) as exc:
        raise KubernetesUnavailable(
            f"no Kubernetes credentials ({exc}): run in a pod with a ServiceAccount, or set "
            "KUBECONFIG"
        ) from None


def start(config: AgentConfig, *, oneshot: bool) -> int:
    api = _api()
    source = _Recorder(TeleportClient(config, store=_store(config, api)))
    writer = SecretWriter(api, ownership_enforced=config.admission_policy)
    runtime = Runtime(Parts(config, source, writer, __version__))
    if not oneshot:
        return serve(runtime, diag_addr=config.diag_addr)
    complete = runtime.run_once()
    if source.error is not None:
        return _fail(source.error)
    if not complete:
        print("error: not every selected cluster was written (see the log)", file=sys.stderr)
        return EXIT_INCOMPLETE
    return EXIT_OK


def _desired(
    config: AgentConfig, client: TeleportClient, now: dt.datetime
) -> tuple[ProxySettings, list[KubeCluster], Credential, Any]:
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
    return proxy, clusters, credential, cycle


def plan(config: AgentConfig, *, now: dt.datetime) -> int:
    """Print what a cycle would create, update and prune; write nothing."""
    api = _api()
    client = TeleportClient(config, store=_store(config, api), read_only=True)
    try:
        _, clusters, _, cycle = _desired(config, client, now)
    except TeleportError as exc:
        return _fail(exc)
    writer = SecretWriter(api, ownership_enforced=config.admission_policy)
    incomplete = False
    print(f"{len(clusters)} Kubernetes clusters visible in Teleport")
    for service in cycle.services:
        print(f"\nservice {service.name}: {len(service.selected)} selected")
        for selector, problem in service.selector_problems.items():
            print(f"  ! selector {selector}: {problem}")
        for cluster, error in service.render_errors.items():
            incomplete = True
            print(f"  ! {cluster}: cannot render: {error}")
        for dup in service.duplicates:
            print(f"  ! {dup.secret.cluster}: not written: {dup.reason}")
        for secret in service.secrets:
            try:
                live = writer.current(secret.namespace, secret.name, secret.field_manager)
            except ApiError as exc:
                incomplete = True
                print(f"  ! {secret.namespace}/{secret.name}: cannot read: {exc}")
                continue
            change = diff_secret(secret, live)
            print(f"  {change.action} {change.namespace}/{change.name} (cluster {change.cluster})")
            for line in change.lines:
                print(f"      {line}")
        if service.prune is not None:
            request = service.prune
            result = writer.prune(
                request.namespace,
                request.owner,
                request.keep_hashes,
                dry_run=True,
            )
            for name in result.deleted:
                print(f"  prune {request.namespace}/{name}")
            if result.error:
                incomplete = True
                print(f"  ! prune: {result.error}")
    return EXIT_INCOMPLETE if incomplete else EXIT_OK


def _secret_rows(writer: SecretWriter, secrets: list[DesiredSecret]) -> list[CheckRow]:
    rows = []
    for secret in secrets:
        what = f"secret {secret.namespace}/{secret.name} ({secret.cluster})"
        try:
            live = writer.current(secret.namespace, secret.name, secret.field_manager)
        except ApiError as exc:
            rows.append(CheckRow(what, False, f"cannot read it: {exc}"))
            continue
        if live is None:
            rows.append(CheckRow(what, False, "missing: start the agent to write it"))
            continue
        ok, detail = probe_secret(live)
        rows.append(CheckRow(what, ok, detail))
    return rows


def check(config: AgentConfig) -> int:
    """Config, proxy, join, listing, then a real request with every secret's credential."""
    rows = [CheckRow("config", True, f"{len(config.services)} service(s)")]
    api = _api()
    client = TeleportClient(config, store=_store(config, api), read_only=True)
    steps: list[tuple[str, Any]] = [
        ("proxy", client.proxy_settings),
        ("join", client.bot_identity),
    ]
    proxy: ProxySettings | None = None
    for what, step in steps:
        try:
            result = step()
        except TeleportError as exc:
            rows.append(CheckRow(what, False, str(exc)))
            print(render_table(rows))
            return EXIT_TELEPORT
        if what == "proxy":
            proxy = result
            rows.append(
                CheckRow(
                    what,
                    True,
                    f"cluster {result.cluster_name}, Teleport {result.server_version}, "
                    f"TLS routing {'on' if result.tls_routing else 'off'}",
                )
            )
        else:
            rows.append(
                CheckRow(
                    what,
                    True,
                    f"bot {result.bot_name} instance {result.instance_id} generation "
                    f"{result.generation}, valid until {result.expires.isoformat()}",
                )
            )
    assert proxy is not None
    try:
        _, clusters, _, cycle = _desired(config, client, utcnow())
    except TeleportError as exc:
        rows.append(CheckRow("listing", False, str(exc)))
        print(render_table(rows))
        return EXIT_TELEPORT
    rows.append(CheckRow("listing", True, f"{len(clusters)} cluster(s) visible"))
    for service in cycle.services:
        problems = dict(service.selector_problems)
        rows.append(
            CheckRow(
                f"service {service.name}",
                not problems,
                f"{len(service.selected)} selected"
                + "".join(f"; selector {s}: {p}" for s, p in problems.items()),
            )
        )
    writer = SecretWriter(api, ownership_enforced=config.admission_policy)
    rows += _secret_rows(writer, cycle.secrets)
    print(render_table(rows))
    if not all(r.ok for r in rows):
        logger.bind(failed=sum(not r.ok for r in rows)).warning("check found problems")
        return EXIT_INCOMPLETE
    return EXIT_OK
