"""One full cycle, planned from data and applied to the real API server as the agent's identity."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json

import pytest
from kubernetes import client as k8s

from agent.argocd import secret_name
from agent.config import parse_config
from agent.diagnostics import Metrics
from agent.kube import Outcome, SecretWriter
from agent.logs import configure_logging
from agent.plan import plan_cycle
from agent.sync import apply_plan
from agent.teleport.model import Credential, KubeCluster, ProxySettings
from tests.harness.pki import CertificateAuthority
from tests.integration.test_writer import grant

PROXY = ProxySettings("root", "teleport.example.com:443", tls_routing=True)


@pytest.fixture
def credential():
    ca = CertificateAuthority("teleport-host-ca")
    pair = ca.issue("bot-argocd", client=True)
    return Credential.from_pem(pair.cert_pem, pair.key_pem, (ca.cert_pem,), "argocd")


@pytest.fixture
def writer(admin_api, namespace, service_account_client):
    grant(admin_api, namespace, ["create", "patch", "deletecollection"], namespace)
    return SecretWriter(service_account_client(namespace, "agent"))


def config(namespace):
    return parse_config(
        {
            "proxy_server": "teleport.example.com:443",
            "onboarding": {"token": "bot"},
            "instance": f"{namespace}/agent",
            "services": [
                {
                    "type": "kubernetes/argo-cd",
                    "name": "prod",
                    "secret_namespace": namespace,
                    "selectors": [{"labels": {"env": "prod"}}],
                    "prune": True,
                    "secret_labels": {"team": '{{ index .Labels "team" }}'},
                },
                {
                    "type": "kubernetes/argo-cd",
                    "name": "edge",
                    "secret_namespace": namespace,
                    "secret_name_prefix": "edge",
                    "selectors": [{"name": "prod-1"}, {"name": "edge-1"}, {"name": "missing"}],
                },
            ],
        }
    )


CLUSTERS = [
    KubeCluster("prod-1", {"env": "prod", "team": "a"}),
    KubeCluster("prod-2", {"env": "prod", "team": "b"}),
    KubeCluster("prod-3", {"env": "prod", "team": "not valid!"}),
    KubeCluster("edge-1", {"env": "edge"}),
]


def cycle(cfg, clusters, credential, writer, metrics=None):
    plan = plan_cycle(
        cfg,
        proxy=PROXY,
        clusters=clusters,
        credential=credential,
        agent_version="0.1.0",
        now=dt.datetime.now(dt.UTC),
    )
    return apply_plan(plan, writer, metrics=metrics)


def argo_secrets(admin, namespace):
    items = (
        k8s.CoreV1Api(admin)
        .list_namespaced_secret(namespace, label_selector="argocd.argoproj.io/secret-type=cluster")
        .items
    )
    return {
        s.metadata.annotations["teleport.dev/kubernetes-cluster-name"]
        + "@"
        + s.metadata.name.split(".")[0]: s
        for s in items
    }


def test_cycle_writes_prunes_and_reports_per_service(admin_api, namespace, writer, credential):
    out = io.StringIO()
    configure_logging("DEBUG", "json", out)
    metrics = Metrics()
    cfg = config(namespace)

    report = cycle(cfg, CLUSTERS, credential, writer, metrics)

    prod, edge = report.services
    assert [r.outcome for r in prod.writes] == [Outcome.CREATED, Outcome.CREATED]
    assert list(prod.plan.render_errors) == ["prod-3"]  # reported, the others still written
    assert [r.cluster for r in edge.writes] == ["edge-1"]
    assert [d.secret.cluster for d in edge.plan.duplicates] == ["prod-1"]  # one server, one secret
    assert edge.plan.selector_problems == {"name=missing": "matched no cluster"}
    assert not report.complete
    assert set(argo_secrets(admin_api, namespace)) == {
        "prod-1@teleport",
        "prod-2@teleport",
        "edge-1@edge",
    }
    for secret in argo_secrets(admin_api, namespace).values():
        config_json = json.loads(base64.b64decode(secret.data["config"]))
        assert config_json["tlsClientConfig"]["insecure"] is False
    assert metrics.clusters_selected.labels(service="prod")._value.get() == 3

    # prod-2 leaves the selection: pruned; edge secrets (another owner) are untouched.
    report = cycle(cfg, [c for c in CLUSTERS if c.name != "prod-2"], credential, writer, metrics)
    assert report.services[0].prune.deleted == (
        secret_name("teleport.argocd-cluster", "root", "prod-2"),
    )
    assert set(argo_secrets(admin_api, namespace)) == {"prod-1@teleport", "edge-1@edge"}

    # A failed listing writes nothing new and prunes nothing.
    report = cycle(cfg, None, credential, writer, metrics)
    assert all(s.prune is None and not s.writes for s in report.services)
    assert set(argo_secrets(admin_api, namespace)) == {"prod-1@teleport", "edge-1@edge"}

    logs = out.getvalue()
    assert "PRIVATE KEY" not in logs
    assert base64.b64encode(credential.key_pem).decode()[:40] not in logs
    events = [json.loads(line) for line in logs.splitlines()]
    assert any(e.get("result") == "pruned" for e in events)
    assert any(e.get("cluster") == "prod-3" and e.get("result") == "error" for e in events)
