"""The daemon as a process: signals, the API server going away, and what /readyz says.

The agent runs as its own process (tests/harness/daemon.py) as the chart deploys it: the chart
is installed into the test's namespace, and the agent runs with the config the chart rendered, as
the chart's ServiceAccount, under the chart's Role and admission policy, against the real API
server. Teleport's part is an inventory file the test rewrites (tests/harness/source.py).
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kubernetes import client as k8s

from agent.teleport.model import KubeCluster
from tests.chart.helm import CHART, Helm
from tests.harness.agent_process import Daemon, launch_with_config
from tests.harness.kube import (
    ControlPlane,
    binary,
    cluster_secret_data,
    free_port,
    service_account_token,
    wait_for_admission_policy,
)
from tests.harness.pki import write_private
from tests.harness.source import write_inventory


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


RELEASE = "teleport-argocd-agent"


@pytest.fixture(scope="module")
def daemon_helm(kube: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    home = tmp_path_factory.mktemp("helm-daemon")
    return Helm(home, kube.kubeconfig(home / "kubeconfig"))


@pytest.fixture
def start_daemon(
    kube: ControlPlane,
    admin_api: k8s.ApiClient,
    namespace: str,
    tmp_path: Path,
    daemon_helm: Helm,
) -> Iterator[Callable[..., Daemon]]:
    """The agent as the chart deploys it (DESIGN section 8): the chart is installed into the
    namespace, and the agent runs with the config the chart rendered, as the chart's
    ServiceAccount, under the chart's Role and admission policy."""
    daemons: list[Daemon] = []

    def start(clusters: list[KubeCluster], **argocd: Any) -> Daemon:
        port = free_port()
        values = {
            "clusterName": "root",
            "teleportProxyAddress": "teleport.example.com:443",
            "token": "bot",
            "argocd": {
                "clusterSelectors": [{"labels": {"env": "prod"}}],
                "prune": True,
                "discoveryInterval": "1s",
                **argocd,
            },
            "diagnostics": {"port": port},
        }
        args = ["install", RELEASE, str(CHART), "--namespace", namespace]
        daemon_helm.run(*args, *daemon_helm.values_args([values]))
        wait_for_admission_policy(kube, namespace, RELEASE)
        config = tmp_path / "config.yaml"
        configmap = k8s.CoreV1Api(admin_api).read_namespaced_config_map(RELEASE, namespace)
        config.write_text(configmap.data["config.yaml"])
        token = write_private(
            tmp_path / "token", service_account_token(admin_api, namespace, RELEASE, create=False)
        )
        daemon = launch_with_config(kube, tmp_path, token, config, clusters, diag_port=port)
        daemons.append(daemon)
        return daemon

    yield start
    for daemon in daemons:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()


def cluster_secrets(admin_api: k8s.ApiClient, namespace: str) -> dict[str, int]:
    """cluster -> serial of the credential its secret holds, after checking the secret whole:
    the config is valid JSON, the key belongs to the certificate, the CA parses."""
    found = {}
    for name, data in cluster_secret_data(admin_api, namespace):
        tls = data["config"]["tlsClientConfig"]
        cert = x509.load_pem_x509_certificate(base64.b64decode(tls["certData"]))
        key = serialization.load_pem_private_key(base64.b64decode(tls["keyData"]), None)
        x509.load_pem_x509_certificates(base64.b64decode(tls["caData"]))
        assert key.public_key() == cert.public_key(), f"{name}: key/cert mismatch"
        assert data["server"].startswith("https://teleport.example.com:443/v1/teleport/")
        common_name = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
        found[data["name"].removeprefix("root-")] = int(str(common_name).rsplit("-", 1)[1])
    return found


def secret_names(admin_api: k8s.ApiClient, namespace: str) -> dict[str, str]:
    """cluster -> name of its secret."""
    return {
        base64.b64decode(item.data["name"]).decode().removeprefix("root-"): item.metadata.name
        for item in k8s.CoreV1Api(admin_api).list_namespaced_secret(namespace).items
        if "name" in (item.data or {})
    }


def prod(count: int, prefix: str = "kube") -> list[KubeCluster]:
    return [KubeCluster(f"{prefix}-{i:03d}", {"env": "prod"}) for i in range(count)]


def test_sigusr1_syncs_now_discovery_adds_clusters_and_sigterm_exits_zero(
    start_daemon, admin_api, namespace
):
    daemon = start_daemon(prod(3))
    wait_until(lambda: daemon.get("/readyz")[0] == 200, "readiness")
    assert cluster_secrets(admin_api, namespace) == {f"kube-00{i}": 1 for i in range(3)}

    write_inventory(daemon.inventory, [*prod(3), KubeCluster("new", {"env": "prod"})])
    wait_until(lambda: "new" in cluster_secrets(admin_api, namespace), "the new cluster")
    assert cluster_secrets(admin_api, namespace)["new"] == 1, "written with the held credential"

    daemon.signal(signal.SIGUSR1)
    wait_until(
        lambda: set(cluster_secrets(admin_api, namespace).values()) == {2}, "renewal on SIGUSR1"
    )
    status, metrics = daemon.get("/metrics")
    assert status == 200
    assert 'teleport_argocd_agent_clusters_selected{service="argo-cd"} 4.0' in metrics

    daemon.signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=30) == 0
    logs = "".join(daemon.lines)
    assert "PRIVATE KEY" not in logs
    assert "BEGIN CERTIFICATE" not in logs


def test_sigterm_in_the_middle_of_a_500_secret_sync_leaves_every_secret_whole(
    start_daemon, admin_api, namespace
):
    daemon = start_daemon(prod(500), discoveryInterval="30s")
    daemon.wait_event("credential issued")
    daemon.wait_event("sync finished", timeout=120)
    assert set(cluster_secrets(admin_api, namespace).values()) == {1}

    first = secret_names(admin_api, namespace)["kube-000"]  # among the first batch written
    core = k8s.CoreV1Api(admin_api)
    before = core.read_namespaced_secret(first, namespace).metadata.resource_version
    daemon.signal(signal.SIGUSR1)
    wait_until(
        lambda: core.read_namespaced_secret(first, namespace).metadata.resource_version != before,
        "the renewal's first write",
        timeout=60,
    )
    daemon.signal(signal.SIGTERM)  # the other rewrites are in flight or not started
    assert daemon.proc.wait(timeout=60) == 0

    serials = cluster_secrets(admin_api, namespace)  # asserts every secret is whole
    assert len(serials) == 500
    assert set(serials.values()) <= {1, 2}
    renewed = sum(s == 2 for s in serials.values())
    assert renewed >= 1
    assert renewed < 500, "the writes not started when SIGTERM came were skipped"
    print(f"after SIGTERM mid-sync: {renewed} of 500 secrets renewed, the rest untouched")


def test_api_server_outage_degrades_readiness_and_recovers(
    start_daemon, kube, admin_api, namespace
):
    daemon = start_daemon(prod(3))
    wait_until(lambda: daemon.get("/readyz")[0] == 200, "readiness")

    kube.stop_apiserver()
    try:
        daemon.signal(signal.SIGUSR1)  # renew: every write fails while the server is down
        wait_until(lambda: daemon.get("/readyz")[0] == 503, "readiness to drop", timeout=90)
        reasons = json.loads(daemon.get("/readyz")[1])["reasons"]
        assert any("failed to write" in r for r in reasons), reasons
    finally:
        kube.restart_apiserver()

    # The next discovery rewrites what failed, with no signal and no restart.
    wait_until(lambda: daemon.get("/readyz")[0] == 200, "readiness to recover", timeout=90)
    assert cluster_secrets(admin_api, namespace) == {f"kube-00{i}": 2 for i in range(3)}
    assert daemon.proc.poll() is None


def test_signal_storm_never_hangs_the_loop(start_daemon, admin_api, namespace):
    # Signal handlers used to log and set an Event: a burst of SIGUSR1 arriving while the main
    # thread held one of those locks deadlocked the process (or ended in RecursionError) while
    # /livez kept answering 200.
    daemon = start_daemon(prod(2))
    wait_until(lambda: daemon.get("/readyz")[0] == 200, "readiness")
    deadline = time.monotonic() + 5
    sent = 0
    while time.monotonic() < deadline:
        daemon.signal(signal.SIGUSR1)
        sent += 1
        if sent % 50 == 0:
            time.sleep(0.001)  # let the loop run between bursts, so signals land everywhere
    assert daemon.proc.poll() is None, "".join(daemon.lines[-20:])
    print(f"signal storm: {sent} SIGUSR1 in 5 s")

    # The loop still does its job: a new cluster is found and written...
    write_inventory(daemon.inventory, [*prod(2), KubeCluster("after-storm", {"env": "prod"})])
    wait_until(lambda: "after-storm" in cluster_secrets(admin_api, namespace), "the new cluster")
    assert daemon.get("/livez")[0] == 200
    # ... and a stop signal still stops it.
    daemon.signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=30) == 0
    assert "RecursionError" not in "".join(daemon.lines)


def test_a_real_scrape_passes_promtool_and_drives_the_charts_alerts(
    start_daemon, namespace, daemon_helm, tmp_path
):
    # A selector that matches nothing: the pod stays Ready, the metric and the alert say so.
    daemon = start_daemon(prod(2), clusterSelectors=[{"labels": {"env": "prod"}}, {"name": "gone"}])
    wait_until(lambda: daemon.get("/readyz")[0] == 200, "readiness")
    status, scrape = daemon.get("/metrics")
    assert status == 200
    promtool = binary("PROMTOOL_BIN", "promtool")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=scrape, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # The chart's rule for this release, over series exactly as scraped (plus the labels the
    # ServiceMonitor adds), held for an hour: only the unmatched selector alerts.
    rendered = daemon_helm.template(
        [
            {
                "clusterName": "root",
                "teleportProxyAddress": "teleport.example.com:443",
                "token": "bot",
                "argocd": {"clusterSelectors": [{"name": "gone"}]},
                "metrics": {
                    "serviceMonitor": {"enabled": True},
                    "prometheusRule": {"enabled": True},
                },
            }
        ],
        release=RELEASE,
        namespace=namespace,
    )
    groups = rendered.one("PrometheusRule")["spec"]["groups"]
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    pod = f"{RELEASE}-6d5f9c7b8-q2x4z"
    series = []
    for line in scrape.splitlines():
        if not line or line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        name, _, scraped = sample.partition("{")
        extra = f'namespace="{namespace}",pod="{pod}"'
        matchers = f"{scraped.rstrip('}')},{extra}" if scraped else extra
        series.append({"series": f"{name}{{{matchers}}}", "values": f"{float(value)}x60"})
    assert any(s["series"].startswith("teleport_argocd_agent_selectors_unmatched") for s in series)
    labels = {"namespace": namespace, "pod": pod, "severity": "warning"}
    firing = [{"exp_labels": labels}]
    tests = [
        {
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [
                {"eval_time": "45m", "alertname": name, "exp_alerts": []}
                for name in (
                    "TeleportArgoCDCredentialExpiringSoon",
                    "TeleportArgoCDSyncStale",
                    "TeleportArgoCDTeleportRequestsFailing",
                    "TeleportArgoCDRotationPendingTooLong",
                )
            ]
            + [
                {
                    "eval_time": "45m",
                    "alertname": "TeleportArgoCDSelectorUnmatched",
                    "exp_alerts": firing,
                }
            ],
        }
    ]
    (tmp_path / "tests.yaml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "tests": tests}, sort_keys=False)
    )
    proc = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    daemon.signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=30) == 0
