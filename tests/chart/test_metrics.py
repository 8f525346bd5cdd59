"""The chart's metrics objects: the Service and monitors render as prometheus-operator expects,
and the PrometheusRule's alerts are proven with the real ``promtool`` (check rules, then unit
tests over series named and labelled as the agent exports them).

The alerts' metric names and grouping labels are checked against the agent's own registry
(``agent.diagnostics.Metrics``), so a renamed metric fails here rather than silently never
alerting; tests/integration/test_daemon.py feeds a real scrape of a running agent to promtool.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from agent.diagnostics import Metrics
from tests.chart.helm import CHART, Helm
from tests.harness.kube import ControlPlane, binary, unique_namespace

GUIDE = CHART / "ci" / "guide-values.yaml"
POD = "rel-teleport-argocd-agent-6d5f9c7b8-q2x4z"
# Same namespace, another release; and this release's name in another namespace.
OTHER_RELEASE_POD = "other-teleport-argocd-agent-6d5f9c7b8-q2x4z"
ALERTS = {
    "TeleportArgoCDCredentialExpiringSoon",
    "TeleportArgoCDSyncStale",
    "TeleportArgoCDTeleportRequestsFailing",
    "TeleportArgoCDSelectorUnmatched",
    "TeleportArgoCDRotationPendingTooLong",
}


def _values(**metrics: Any) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(GUIDE.read_text())
    values["metrics"] = metrics
    return values


def promtool() -> str:
    return binary("PROMTOOL_BIN", "promtool")


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def rule_groups(helm: Helm) -> list[dict[str, Any]]:
    rendered = helm.template(
        [_values(serviceMonitor={"enabled": True}, prometheusRule={"enabled": True})]
    )
    rule = rendered.one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    return rule["spec"]["groups"]  # type: ignore[no-any-return]


def _rules(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for group in groups for rule in group["rules"]]


# -- rendering -----------------------------------------------------------------------------------


def test_metrics_objects_are_off_by_default(helm: Helm):
    kinds = {o["kind"] for o in helm.template([GUIDE]).objects}
    assert not kinds & {"Service", "ServiceMonitor", "PodMonitor", "PrometheusRule"}


def test_service_monitor_scrapes_the_service_in_front_of_the_diagnostics_port(helm: Helm):
    rendered = helm.template(
        [
            _values(
                serviceMonitor={
                    "enabled": True,
                    "interval": "30s",
                    "labels": {"release": "kube-prometheus-stack"},
                    "metricRelabelings": [{"action": "drop", "regex": "python_.*"}],
                }
            )
        ]
    )
    service = rendered.one("Service", "rel-teleport-argocd-agent-metrics")
    deployment = rendered.deployment()
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 3001, "targetPort": "diagnostics", "protocol": "TCP"}
    ]
    monitor = rendered.one("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["argocd"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "30s"
    assert endpoint["metricRelabelings"] == [{"action": "drop", "regex": "python_.*"}]
    assert not rendered.all("PodMonitor")


def test_pod_monitor_scrapes_the_pod_without_a_service(helm: Helm):
    rendered = helm.template([_values(podMonitor={"enabled": True, "scrapeTimeout": "5s"})])
    assert not rendered.all("Service")
    monitor = rendered.one("PodMonitor")
    selector = rendered.deployment()["spec"]["selector"]["matchLabels"]
    assert monitor["spec"]["selector"]["matchLabels"] == selector
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["scrapeTimeout"]) == ("diagnostics", "5s")
    assert rendered.container()["ports"][0]["name"] == "diagnostics"


def test_service_alone_for_a_prometheus_without_the_operator(helm: Helm):
    rendered = helm.template(
        [_values(service={"enabled": True, "port": 9100, "annotations": {"a.example/b": "c"}})]
    )
    service = rendered.one("Service")
    assert service["spec"]["ports"][0]["port"] == 9100
    assert service["metadata"]["annotations"] == {"a.example/b": "c"}
    assert not rendered.all("ServiceMonitor")


def test_rule_has_every_alert_the_issue_lists_with_labels(helm: Helm, rule_groups):
    rules = {r["alert"]: r for r in _rules(rule_groups)}
    assert set(rules) == ALERTS
    assert rules["TeleportArgoCDCredentialExpiringSoon"]["labels"] == {"severity": "critical"}
    custom = helm.template(
        [
            _values(
                podMonitor={"enabled": True},
                prometheusRule={
                    "enabled": True,
                    "alertLabels": {"team": "platform", "severity": "page"},
                    "credentialExpiresWithin": "1h30m",
                },
            )
        ]
    )
    rules = {r["alert"]: r for r in _rules(custom.one("PrometheusRule")["spec"]["groups"])}
    for rule in rules.values():
        assert rule["labels"] == {"team": "platform", "severity": "page"}
    assert rules["TeleportArgoCDCredentialExpiringSoon"]["expr"].endswith("< 5400")


def test_alerts_use_only_metrics_and_labels_the_agent_exports(rule_groups):
    agent = Metrics()
    # Labelled series exist once the agent has set them, as it does on its first cycle.
    agent.selectors_unmatched.labels(service="argo-cd").set(1)
    agent.clusters_selected.labels(service="argo-cd").set(2)
    agent.teleport_errors.labels(operation="listing").inc()
    exported = {
        sample.name: set(sample.labels)
        for family in agent.registry.collect()
        for sample in family.samples
    }
    for rule in _rules(rule_groups):
        names = re.findall(r"\b(teleport_argocd_agent_[a-z_]+)\{", rule["expr"])
        assert names, rule["alert"]
        for name in names:
            assert name in exported, f"{rule['alert']}: {name} is not exported by the agent"
            grouped = re.search(r"by \(([^)]*)\)", rule["expr"])
            assert grouped is not None
            # namespace and pod come from the scrape; anything else must be the agent's label.
            extra = {g.strip() for g in grouped.group(1).split(",")} - {"namespace", "pod"}
            assert extra <= exported[name], f"{rule['alert']}: {extra} not on {name}"


# -- promtool ------------------------------------------------------------------------------------


def _write_rules(tmp_path: Path, groups: list[dict[str, Any]], *, annotations: bool) -> Path:
    groups = [
        {
            **group,
            "rules": [
                rule if annotations else {k: v for k, v in rule.items() if k != "annotations"}
                for rule in group["rules"]
            ],
        }
        for group in groups
    ]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    return path


def test_promtool_check_rules_accepts_the_rules_and_their_templates(tmp_path, rule_groups):
    _write_rules(tmp_path, rule_groups, annotations=True)
    proc = run_promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in proc.stdout


def _series(metric: str, values: str, pod: str = POD, namespace: str = "argocd", **labels: str):
    all_labels = {"namespace": namespace, "pod": pod, **labels}
    rendered = ",".join(f'{k}="{v}"' for k, v in all_labels.items())
    return {"series": f"{metric}{{{rendered}}}", "values": values}


def _alert(pod: str = POD, severity: str = "warning", **labels: str) -> dict[str, Any]:
    return {"exp_labels": {"namespace": "argocd", "pod": pod, "severity": severity, **labels}}


def _promtool_test(tmp_path: Path, tests: list[dict[str, Any]]) -> None:
    (tmp_path / "tests.yaml").write_text(
        yaml.safe_dump(
            {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests},
            sort_keys=False,
        )
    )
    proc = run_promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_alerts_fire_for_this_release_only_and_only_when_due(tmp_path, rule_groups):
    _write_rules(tmp_path, rule_groups, annotations=False)
    expiry = "teleport_argocd_agent_credential_expiry_seconds"
    success = "teleport_argocd_agent_last_successful_sync_timestamp_seconds"
    errors = "teleport_argocd_agent_teleport_request_errors_total"
    unmatched = "teleport_argocd_agent_selectors_unmatched"
    pending = "teleport_argocd_agent_rotation_pending_secrets"
    other_pods = [
        {"pod": OTHER_RELEASE_POD},
        {"namespace": "staging"},
    ]

    def everywhere(metric: str, values: str, **labels: str) -> list[dict[str, str]]:
        return [
            _series(metric, values, **labels),
            *(_series(metric, values, **{**o, **labels}) for o in other_pods),
        ]

    tests = [
        {
            # Renewals stopped at 0: the credential runs out 60 s per minute.
            "name": "credential expiring",
            "interval": "1m",
            "input_series": everywhere(expiry, "3600-60x60"),
            "alert_rule_test": [
                {"eval_time": "40m", "alertname": "TeleportArgoCDCredentialExpiringSoon"},
                {
                    "eval_time": "50m",
                    "alertname": "TeleportArgoCDCredentialExpiringSoon",
                    "exp_alerts": [_alert(severity="critical")],
                },
            ],
        },
        {
            "name": "credential renewed in time",
            "interval": "1m",
            "input_series": [_series(expiry, "3600-60x20 3600-60x39")],
            "alert_rule_test": [
                {"eval_time": "58m", "alertname": "TeleportArgoCDCredentialExpiringSoon"}
            ],
        },
        {
            # One complete sync at t=60 s, then none.
            "name": "sync stale",
            "interval": "1m",
            "input_series": everywhere(success, "60x60"),
            "alert_rule_test": [
                {"eval_time": "33m", "alertname": "TeleportArgoCDSyncStale"},
                {
                    "eval_time": "40m",
                    "alertname": "TeleportArgoCDSyncStale",
                    "exp_alerts": [_alert()],
                },
            ],
        },
        {
            "name": "syncing every minute",
            "interval": "1m",
            "input_series": [_series(success, "0+60x60")],
            "alert_rule_test": [{"eval_time": "59m", "alertname": "TeleportArgoCDSyncStale"}],
        },
        {
            "name": "teleport keeps failing",
            "interval": "1m",
            "input_series": [
                *everywhere(errors, "0+1x30", operation="listing"),
                # A single failed renewal is not an outage.
                _series(errors, "0x5 1x25", operation="renewal"),
            ],
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": "TeleportArgoCDTeleportRequestsFailing"},
                {
                    "eval_time": "20m",
                    "alertname": "TeleportArgoCDTeleportRequestsFailing",
                    "exp_alerts": [_alert(operation="listing")],
                },
            ],
        },
        {
            "name": "selector unmatched",
            "interval": "1m",
            "input_series": [
                *everywhere(unmatched, "1x60", service="argo-cd"),
                # A cluster registered after ten minutes: the selector matches from then on.
                _series(
                    unmatched,
                    "1x10 0x50",
                    pod="rel-teleport-argocd-agent-6d5f9c7b8-zzzzz",
                    service="a",
                ),
            ],
            "alert_rule_test": [
                {"eval_time": "20m", "alertname": "TeleportArgoCDSelectorUnmatched"},
                {
                    "eval_time": "45m",
                    "alertname": "TeleportArgoCDSelectorUnmatched",
                    "exp_alerts": [_alert()],
                },
            ],
        },
        {
            "name": "rotation pending",
            "interval": "1m",
            "input_series": [
                *everywhere(pending, "3x60"),
                # A normal window: secrets wait five minutes, then all are rewritten.
                _series(pending, "3x5 0x55", pod="rel-teleport-argocd-agent-6d5f9c7b8-zzzzz"),
            ],
            "alert_rule_test": [
                {"eval_time": "20m", "alertname": "TeleportArgoCDRotationPendingTooLong"},
                {
                    "eval_time": "45m",
                    "alertname": "TeleportArgoCDRotationPendingTooLong",
                    "exp_alerts": [_alert()],
                },
            ],
        },
    ]
    _promtool_test(tmp_path, tests)


def test_promtool_alert_annotations_name_the_agent(tmp_path, rule_groups):
    _write_rules(tmp_path, rule_groups, annotations=True)
    alert = _alert()
    alert["exp_annotations"] = {
        "summary": "A cluster selector matches no Teleport Kubernetes cluster.",
        "description": (
            f"1 selector(s) of argocd/{POD} have matched no Teleport cluster for 30m: a typo, "
            "a cluster not registered yet, or a role that does not allow it."
        ),
    }
    tests = [
        {
            "interval": "1m",
            "input_series": [
                _series("teleport_argocd_agent_selectors_unmatched", "1x60", service="argo-cd")
            ],
            "alert_rule_test": [
                {
                    "eval_time": "45m",
                    "alertname": "TeleportArgoCDSelectorUnmatched",
                    "exp_alerts": [alert],
                }
            ],
        }
    ]
    _promtool_test(tmp_path, tests)


# -- against the real monitoring CRDs ----------------------------------------------------------

MONITORING_CRDS = ("servicemonitors", "podmonitors", "prometheusrules")


@pytest.fixture(scope="module")
def monitoring_helm(kube: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """helm against the test API server, after prometheus-operator's own CRD files (from its Go
    module, tools/install.sh monitoring-crds) were applied and established there."""
    crd_dir = os.environ.get("MONITORING_CRDS", "")
    if not crd_dir or not Path(crd_dir).is_dir():
        raise AssertionError(
            "MONITORING_CRDS is not a directory: run the tests through `make pytest`, which sets "
            "it to the output of `tools/install.sh monitoring-crds`."
        )
    home = tmp_path_factory.mktemp("helm-monitoring")
    kubeconfig = kube.kubeconfig(home / "kubeconfig")
    kubectl = binary("KUBECTL_BIN", "kubectl")
    files = [str(Path(crd_dir) / f"monitoring.coreos.com_{name}.yaml") for name in MONITORING_CRDS]
    for args in (
        ["apply", "--server-side", *(a for f in files for a in ("-f", f))],
        ["wait", "--for=condition=Established", "--timeout=60s"]
        + [f"crd/{name}.monitoring.coreos.com" for name in MONITORING_CRDS],
    ):
        proc = subprocess.run(
            [kubectl, "--kubeconfig", str(kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return Helm(home, kubeconfig)


def _objects(api: k8s.ApiClient, namespace: str, plural: str) -> list[dict[str, Any]]:
    answer = k8s.CustomObjectsApi(api).list_namespaced_custom_object(
        "monitoring.coreos.com", "v1", namespace, plural
    )
    return answer["items"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("monitor", ["serviceMonitor", "podMonitor"])
def test_monitoring_objects_are_accepted_by_the_real_crds(
    monitoring_helm: Helm, admin_api: k8s.ApiClient, monitor: str
):
    ns = unique_namespace(admin_api, prefix="metrics")
    values = _values(
        **{
            monitor: {
                "enabled": True,
                "interval": "30s",
                "scrapeTimeout": "10s",
                "labels": {"release": "kube-prometheus-stack"},
                "relabelings": [{"action": "replace", "targetLabel": "team", "replacement": "x"}],
                "metricRelabelings": [{"action": "drop", "regex": "python_.*"}],
            },
            "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        }
    )
    args = ["install", "rel", str(CHART), "--namespace", ns]
    monitoring_helm.run(*args, *monitoring_helm.values_args([values]))
    plural = monitor.lower() + "s"
    (created,) = _objects(admin_api, ns, plural)
    assert created["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    endpoints = created["spec"].get("endpoints") or created["spec"]["podMetricsEndpoints"]
    assert endpoints[0]["interval"] == "30s"
    (rule,) = _objects(admin_api, ns, "prometheusrules")
    assert {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]} == ALERTS


def test_the_real_crd_schema_rejects_what_it_must(monitoring_helm: Helm, admin_api: k8s.ApiClient):
    # The chart passes relabelings through; the CRD's schema is what checks them.
    ns = unique_namespace(admin_api, prefix="metrics")
    values = _values(serviceMonitor={"enabled": True, "relabelings": [{"action": "Bogus"}]})
    args = ["install", "rel", str(CHART), "--namespace", ns]
    proc = monitoring_helm.run(*args, *monitoring_helm.values_args([values]), check=False)
    assert proc.returncode != 0
    assert "ServiceMonitor" in proc.stderr
    assert "relabelings[0].action" in proc.stderr
