"""``plan``: what a cycle would create, update and prune, against the live secrets; nothing is
written."""

from __future__ import annotations

import datetime as dt

from agent.commands.clients import connect, desired, fail, identity_store
from agent.commands.diff import diff_secret
from agent.commands.exitcodes import EXIT_INCOMPLETE, EXIT_OK
from agent.config import AgentConfig
from agent.kube import SecretWriter
from agent.kubeapi import ApiError
from agent.teleport.client import TeleportClient
from agent.teleport.errors import TeleportError

__all__ = ["run"]


def run(config: AgentConfig, *, now: dt.datetime) -> int:
    """Print what a cycle would create, update and prune; write nothing."""
    api = connect()
    client = TeleportClient(config, store=identity_store(config, api), read_only=True)
    try:
        clusters, cycle = desired(config, client, now)
    except TeleportError as exc:
        return fail(exc)
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
