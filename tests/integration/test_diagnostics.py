"""The diagnostics endpoints over real HTTP on loopback."""

from __future__ import annotations

import datetime as dt
import json
import socket
import urllib.error
import urllib.request

import pytest

from agent.diagnostics import DiagnosticsServer, Metrics, _Handler
from agent.kube import Outcome, WriteResult
from agent.schedule import Readiness

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def serve():
    servers = []

    def start(readiness, metrics=None):
        server = DiagnosticsServer("127.0.0.1:0", metrics or Metrics(lambda: NOW), readiness)
        servers.append(server.start())
        return f"http://127.0.0.1:{server.port}"

    yield start
    for server in servers:
        server.close()


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback test server
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def test_livez_and_readyz_follow_the_current_state(serve):
    state = {"value": Readiness(False, ("no credential has been written yet",))}
    base = serve(lambda: state["value"])
    assert get(base + "/livez")[0] == 200
    status, content_type, body = get(base + "/readyz")
    assert (status, content_type) == (503, "application/json")
    assert json.loads(body) == {
        "status": "degraded",
        "reasons": ["no credential has been written yet"],
        "warnings": [],
    }
    state["value"] = Readiness(True, ())
    assert get(base + "/readyz")[0] == 200
    assert get(base + "/nothing")[0] == 404


def test_metrics_are_exported_in_prometheus_format(serve):
    metrics = Metrics(lambda: NOW)
    metrics.credential_written(NOW + dt.timedelta(minutes=40))
    metrics.record_writes(
        "argo-cd",
        [
            WriteResult("argocd", "a", "c1", Outcome.CREATED),
            WriteResult("argocd", "b", "c2", Outcome.CONFLICT),
        ],
    )
    metrics.clusters_selected.labels(service="argo-cd").set(2)
    metrics.sync_runs.labels(result="success").inc()
    metrics.sync_duration.observe(0.3)
    metrics.last_success.set(NOW.timestamp())
    metrics.teleport_errors.labels(operation="list_clusters").inc()
    status, content_type, body = get(serve(lambda: Readiness(True, ()), metrics) + "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    for line in (
        "teleport_argocd_agent_credential_expiry_seconds 2400.0",
        'teleport_argocd_agent_secret_writes_total{result="created",service="argo-cd"} 1.0',
        'teleport_argocd_agent_secret_writes_total{result="conflict",service="argo-cd"} 1.0',
        'teleport_argocd_agent_clusters_selected{service="argo-cd"} 2.0',
        'teleport_argocd_agent_sync_runs_total{result="success"} 1.0',
        'teleport_argocd_agent_sync_duration_seconds_bucket{le="0.5"} 1.0',
        "teleport_argocd_agent_last_successful_sync_timestamp_seconds 1.7672256e+09",
        'teleport_argocd_agent_teleport_request_errors_total{operation="list_clusters"} 1.0',
    ):
        assert line in body, line


def test_livez_follows_the_loops_heartbeat():
    alive = {"value": True}
    server = DiagnosticsServer(
        "127.0.0.1:0",
        Metrics(lambda: NOW),
        lambda: Readiness(True, ()),
        liveness=lambda: alive["value"],
    ).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert get(base + "/livez")[0] == 200
        alive["value"] = False
        assert get(base + "/livez")[0] == 503
    finally:
        server.close()


def test_idle_half_sent_requests_are_dropped_after_the_connection_timeout(monkeypatch, serve):
    monkeypatch.setattr(_Handler, "timeout", 0.5)
    base = serve(lambda: Readiness(True, ()))
    port = int(base.rpartition(":")[2])
    idle = []
    for _ in range(20):
        conn = socket.create_connection(("127.0.0.1", port))
        conn.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n")  # never finished
        conn.settimeout(5)
        idle.append(conn)
    try:
        for conn in idle:
            assert conn.recv(1024) == b"", "the server closes a connection that never finishes"
        assert get(base + "/livez")[0] == 200
    finally:
        for conn in idle:
            conn.close()
