"""The diagnostics endpoints over real HTTP on loopback."""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request

import pytest

from agent.diagnostics import DiagnosticsServer, Metrics
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
