"""``check``: is everything in place? Config, proxy, join, listing, and every secret's
credential put to use (``probe``), as a table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.argocd import DesiredSecret
from agent.commands.clients import connect, desired, identity_store
from agent.commands.exitcodes import EXIT_INCOMPLETE, EXIT_OK, EXIT_TELEPORT
from agent.commands.probe import probe_secret
from agent.config import AgentConfig
from agent.kube import SecretWriter
from agent.kubeapi import ApiError
from agent.logs import logger
from agent.schedule import utcnow
from agent.teleport.client import TeleportClient
from agent.teleport.errors import TeleportError
from agent.teleport.model import ProxySettings

__all__ = ["CheckRow", "render_table", "run"]


@dataclass(frozen=True)
class CheckRow:
    what: str
    ok: bool
    detail: str


def render_table(rows: list[CheckRow]) -> str:
    width = max([len(r.what) for r in rows] + [5])
    lines = [f"{'CHECK':<{width}}  RESULT  DETAIL"]
    lines += [f"{r.what:<{width}}  {'ok' if r.ok else 'FAIL':<6}  {r.detail}" for r in rows]
    return "\n".join(lines)


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


def run(config: AgentConfig) -> int:
    """Config, proxy, join, listing, then a real request with every secret's credential."""
    rows = [CheckRow("config", True, f"{len(config.services)} service(s)")]
    api = connect()
    client = TeleportClient(config, store=identity_store(config, api), read_only=True)
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
        clusters, cycle = desired(config, client, utcnow())
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
