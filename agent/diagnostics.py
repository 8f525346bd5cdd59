"""Diagnostics: Prometheus metrics and the /livez, /readyz, /metrics HTTP endpoints.

The HTTP side is the standard library's threading HTTP server (it parses the requests); the
exposition format is prometheus-client's. Readiness is computed on every request from the
agent's current state, so it recovers by itself; liveness is the daemon loop's heartbeat. Every
connection has a timeout, so clients that open connections and never finish a request cannot
pile up threads.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from agent.schedule import Readiness, utcnow
from agent.writes import WriteResult

__all__ = ["DiagnosticsServer", "Metrics"]

_NS = "teleport_argocd_agent"
M = TypeVar("M", Counter, Gauge)


class Metrics:
    """Every metric the agent exports, in a registry of its own."""

    def __init__(self, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._clock = clock
        self._expires: dt.datetime | None = None
        counter, gauge = self._named(Counter), self._named(Gauge)
        self.sync_runs = counter("sync_runs", "Sync cycles by result.", "result")
        self.secret_writes = counter(
            "secret_writes", "Cluster secret writes by service and result.", "service", "result"
        )
        self.clusters_selected = gauge(
            "clusters_selected", "Kubernetes clusters the service's selectors match.", "service"
        )
        self.selectors_unmatched = gauge(
            "selectors_unmatched",
            "Selectors of the service that matched no Kubernetes cluster at the last listing.",
            "service",
        )
        self.credential_expiry = gauge(
            "credential_expiry_seconds",
            "Seconds until the oldest credential still in any secret expires (negative once "
            "expired).",
        )
        self.credential_expiry.set_function(self._seconds_left)
        self.rotation_pending = gauge(
            "rotation_pending_secrets",
            "Secrets still holding an older valid credential, waiting for their slot in the "
            "rotation window.",
        )
        self.last_success = gauge(
            "last_successful_sync_timestamp_seconds",
            "Unix time of the last sync that wrote every selected cluster.",
        )
        self.sync_duration = Histogram(
            f"{_NS}_sync_duration_seconds",
            "Duration of sync cycles.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=self.registry,
        )
        self.teleport_errors = counter(
            "teleport_request_errors", "Failed requests to Teleport by operation.", "operation"
        )
        self.kubernetes_errors = counter(
            "kubernetes_request_errors",
            "Failed Kubernetes API requests outside the secret writes (the bot identity's "
            "Secret) by operation.",
            "operation",
        )
        self.bot_deleted = gauge(
            "bot_deleted",
            "1 while Teleport refuses the bot because it no longer exists (deleted, e.g. with "
            "tctl bots rm): the agent writes nothing, its secrets keep their credentials until "
            "they expire. Create the bot again to resume (see /readyz).",
        )

    def _named(self, kind: Callable[..., M]) -> Callable[..., M]:
        """``kind`` (Counter or Gauge) named under the agent's prefix, in this registry."""

        def make(name: str, documentation: str, *labels: str) -> M:
            return kind(f"{_NS}_{name}", documentation, labels, registry=self.registry)

        return make

    def _seconds_left(self) -> float:
        if self._expires is None:
            return 0.0
        return (self._expires - self._clock()).total_seconds()

    def credential_written(self, expires: dt.datetime) -> None:
        self._expires = expires

    def record_writes(self, service: str, results: list[WriteResult]) -> None:
        for result in results:
            self.secret_writes.labels(service=service, result=result.outcome.value).inc()


# Seconds a connection may take to send its request (and to take the answer): probes answer
# in milliseconds, so anything slower is a client that will never finish.
CONNECTION_TIMEOUT = 10.0


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = CONNECTION_TIMEOUT  # applied to the socket by StreamRequestHandler.setup

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/livez":
            if self.server.liveness():
                self._send(200, "text/plain; charset=utf-8", b"ok\n")
            else:
                self._send(503, "text/plain; charset=utf-8", b"the agent's loop is stuck\n")
        elif path == "/readyz":
            state = self.server.readiness()
            body = json.dumps(state.as_json()).encode() + b"\n"
            self._send(200 if state.ready else 503, "application/json", body)
        elif path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(self.server.metrics.registry))
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return  # probes every few seconds would drown the agent's own events


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        addr: tuple[str, int],
        metrics: Metrics,
        readiness: Callable[[], Readiness],
        liveness: Callable[[], bool],
    ) -> None:
        super().__init__(addr, _Handler)
        self.metrics = metrics
        self.readiness = readiness
        self.liveness = liveness


class DiagnosticsServer:
    """Serves the endpoints on a background thread until ``close``."""

    def __init__(
        self,
        addr: str,
        metrics: Metrics,
        readiness: Callable[[], Readiness],
        *,
        liveness: Callable[[], bool] = lambda: True,
    ) -> None:
        host, _, port = addr.rpartition(":")
        bind = (host.strip("[]") or "0.0.0.0", int(port))  # noqa: S104
        self._server = _Server(bind, metrics, readiness, liveness)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="diagnostics", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> DiagnosticsServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
