"""``start``: the daemon, or ``start --oneshot``, one cycle and an exit code."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

from agent import __version__
from agent.commands.clients import connect, fail, identity_store
from agent.commands.exitcodes import EXIT_INCOMPLETE, EXIT_OK
from agent.config import AgentConfig
from agent.kube import SecretWriter
from agent.kubeapi import ApiError
from agent.ports import Parts
from agent.runtime import Runtime, serve
from agent.teleport.client import TeleportClient
from agent.teleport.errors import TeleportError
from agent.teleport.model import Credential, KubeCluster, ProxySettings

__all__ = ["run"]


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


def run(config: AgentConfig, *, oneshot: bool) -> int:
    """The daemon; with ``oneshot`` one cycle, whose exit code says if it wrote everything."""
    api = connect()
    source = _Recorder(TeleportClient(config, store=identity_store(config, api)))
    writer = SecretWriter(api, ownership_enforced=config.admission_policy)
    runtime = Runtime(Parts(config, source, writer, __version__))
    if not oneshot:
        return serve(runtime, diag_addr=config.diag_addr)
    complete = runtime.run_once()
    if source.error is not None:
        return fail(source.error)
    if not complete:
        print("error: not every selected cluster was written (see the log)", file=sys.stderr)
        return EXIT_INCOMPLETE
    return EXIT_OK
