"""Bad values are rejected by ``helm template`` with a message that names the key.

Each case starts from the values of Teleport's Argo CD guide and breaks one thing. The
schema catches types, unknown keys and required keys; the chart's templates catch the rules
a schema cannot express (and say how to fix them).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from agent.labels import is_reserved_annotation, is_reserved_label
from tests.chart.helm import CHART, Helm

GUIDE: dict[str, Any] = yaml.safe_load((CHART / "ci" / "guide-values.yaml").read_text())
_DROP = object()


def _values(changes: dict[str, Any]) -> dict[str, Any]:
    """The guide's values with dotted-path ``changes`` applied (``_DROP`` removes a key)."""
    values = copy.deepcopy(GUIDE)
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        node = values
        for key in parents:
            node = node.setdefault(key, {})
        if value is _DROP:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return values


CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "unknown-top-level-key",
        {"clusterSelectors": [{"name": "a"}]},
        ["at '': additional properties 'clusterSelectors' not allowed"],
    ),
    (
        "clusterSelector-typo-under-argocd",
        {"argocd.clusterSelector": [{"name": "a"}]},
        ["at '/argocd': additional properties 'clusterSelector' not allowed"],
    ),
    (
        "selector-with-name-and-labels",
        {"argocd.clusterSelectors": [{"name": "a", "labels": {"env": "prod"}}]},
        ["/argocd/clusterSelectors/0", "additional properties 'labels' not allowed"],
    ),
    (
        "selector-with-neither-name-nor-labels",
        {"argocd.clusterSelectors": [{}]},
        ["/argocd/clusterSelectors/0", "missing property 'name'", "missing property 'labels'"],
    ),
    (
        "selector-key-typo",
        {"argocd.clusterSelectors": [{"label": {"env": "prod"}}]},
        ["/argocd/clusterSelectors/0", "additional properties 'label' not allowed"],
    ),
    (
        "selector-label-value-not-a-string",
        {"argocd.clusterSelectors": [{"labels": {"tier": 1}}]},
        ["at '/argocd/clusterSelectors/0/labels/tier': got number, want string"],
    ),
    (
        "selector-with-empty-labels",
        {"argocd.clusterSelectors": [{"labels": {}}]},
        ["/argocd/clusterSelectors/0/labels", "minProperties"],
    ),
    (
        "no-selectors",
        {"argocd.clusterSelectors": []},
        ["at '/argocd/clusterSelectors': minItems: got 0, want 1"],
    ),
    (
        "defaultOutput-enabled",
        {"defaultOutput.enabled": True},
        ["/defaultOutput/enabled", "this chart provides only the Argo CD output"],
    ),
    (
        "argocd-disabled",
        {"argocd.enabled": False},
        ["argocd.enabled is false", "this chart provides only the Argo CD output"],
    ),
    (
        "joinMethod-bogus",
        {"joinMethod": "iam"},
        ["at '/joinMethod': value must be one of 'kubernetes', 'token'"],
    ),
    ("missing-clusterName", {"clusterName": _DROP}, ["at '/clusterName': minLength"]),
    ("clusterName-not-a-string", {"clusterName": 42}, ["at '/clusterName': got number"]),
    ("missing-token", {"token": _DROP}, ["at '/token': minLength"]),
    (
        "auth-address",
        {"teleportAuthAddress": "auth.example.com:3025"},
        ["teleportAuthAddress is not supported", "set teleportProxyAddress"],
    ),
    (
        "no-proxy-address",
        {"teleportProxyAddress": _DROP},
        ["teleportProxyAddress is not set"],
    ),
    (
        "proxy-address-with-scheme",
        {"teleportProxyAddress": "https://teleport.example.com"},
        ["at '/teleportProxyAddress'", "does not match pattern"],
    ),
    (
        "credentialTTL-not-a-duration",
        {"credentialTTL": "1hour"},
        ["at '/credentialTTL': '1hour' does not match pattern"],
    ),
    (
        "discoveryInterval-without-unit",
        {"argocd.discoveryInterval": "30"},
        ["at '/argocd/discoveryInterval': '30' does not match pattern"],
    ),
    (
        "rotationWindow-without-unit",
        {"argocd.rotationWindow": "300"},
        ["at '/argocd/rotationWindow'"],
    ),
    ("image-tag-number", {"image.tag": 1.2}, ["at '/image/tag': got number, want string"]),
    (
        "image-pullPolicy-bogus",
        {"image.pullPolicy": "Sometimes"},
        ["at '/image/pullPolicy': value must be one of"],
    ),
    ("negative-port", {"diagnostics.port": -1}, ["at '/diagnostics/port': minimum: got -1"]),
    ("port-too-large", {"diagnostics.port": 70000}, ["at '/diagnostics/port': maximum"]),
    (
        "join-token-shorter-than-the-api-allows",
        {"joinTokenExpirationSeconds": 300},
        ["at '/joinTokenExpirationSeconds': minimum: got 300"],
    ),
    (
        "probe-path-is-not-a-value",
        {"probes.liveness.path": "/healthz"},
        ["at '/probes/liveness': additional properties 'path' not allowed"],
    ),
    (
        "clusterResources-without-namespaces",
        {"argocd.clusterResources": True},
        ["argocd.clusterResources is only applicable if argocd.namespaces is also set"],
    ),
    (
        "namespaces-blank-entry",
        {"argocd.namespaces": ["apps", ""]},
        ["at '/argocd/namespaces/1': minLength"],
    ),
    (
        "namespaces-invalid-name",
        {"argocd.namespaces": ["Apps"]},
        ["at '/argocd/namespaces/0': 'Apps' does not match pattern"],
    ),
    (
        "namespaces-duplicate",
        {"argocd.namespaces": ["apps", "apps"]},
        ["at '/argocd/namespaces'", "items at 0 and 1 are equal"],
    ),
    (
        "secretNamePrefix-trailing-dash",
        {"argocd.secretNamePrefix": "teleport-"},
        ["/argocd/secretNamePrefix"],
    ),
    (
        "secretNamespace-invalid",
        {"argocd.secretNamespace": "Argo_CD"},
        ["/argocd/secretNamespace"],
    ),
    (
        "secretLabels-reserved-key",
        {"argocd.secretLabels": {"argocd.argoproj.io/secret-type": "repository"}},
        ['argocd.secretLabels: label "argocd.argoproj.io/secret-type" is set by the agent'],
    ),
    (
        "secretAnnotations-reserved-key",
        {"argocd.secretAnnotations": {"teleport.dev/bot-name": "x"}},
        ['argocd.secretAnnotations: annotation "teleport.dev/bot-name" is set by the agent'],
    ),
    (
        "secretLabels-value-not-a-string",
        {"argocd.secretLabels": {"tier": 1}},
        ["at '/argocd/secretLabels/tier': got number, want string"],
    ),
    (
        "token-method-without-tokenSecret-name",
        {"joinMethod": "token", "token": _DROP},
        ["at '/tokenSecret/name': minLength"],
    ),
    (
        "token-method-with-token-in-values",
        {"joinMethod": "token", "tokenSecret.name": "join"},
        ["token is set but joinMethod is token", "tokenSecret.name"],
    ),
    (
        "securityContext-typo",
        {"securityContext.readOnlyRootFileSystem": True},
        ["at '/securityContext': additional properties 'readOnlyRootFileSystem' not allowed"],
    ),
    ("logLevel-bogus", {"logLevel": "verbose"}, ["at '/logLevel': value must be one of"]),
    ("extraArgs-not-strings", {"extraArgs": [1]}, ["at '/extraArgs/0': got number"]),
    # The admission policy's server pin: an address that would loosen or break it is refused.
    (
        "proxyPublicAddress-with-scheme",
        {"admissionPolicy.proxyPublicAddress": "https://teleport.example.com:443"},
        ["at '/admissionPolicy/proxyPublicAddress'", "does not match pattern"],
    ),
    (
        "proxyPublicAddress-with-path",
        {"admissionPolicy.proxyPublicAddress": "teleport.example.com:443/v1"},
        ["at '/admissionPolicy/proxyPublicAddress'", "does not match pattern"],
    ),
    (
        "proxyPublicAddress-wildcard",
        {"admissionPolicy.proxyPublicAddress": "*.example.com:443"},
        ["at '/admissionPolicy/proxyPublicAddress'", "does not match pattern"],
    ),
    (
        "proxyPublicAddress-regex",
        {"admissionPolicy.proxyPublicAddress": ".*:443"},
        ["at '/admissionPolicy/proxyPublicAddress'", "does not match pattern"],
    ),
    (
        "proxyPublicAddress-without-port",
        {"admissionPolicy.proxyPublicAddress": "teleport.example.com"},
        ["at '/admissionPolicy/proxyPublicAddress'", "does not match pattern"],
    ),
    (
        "resources-typo",
        {"resources": {"limit": {"memory": "1Gi"}}},
        ["at '/resources': additional properties 'limit' not allowed"],
    ),
    # -- chart conventions --------------------------------------------------------------------
    ("image-digest-not-sha256", {"image.digest": "latest"}, ["at '/image/digest'"]),
    (
        "extraVolumes-item-without-name",
        {"extraVolumes": [{"emptyDir": {}}]},
        ["at '/extraVolumes/0': missing property 'name'"],
    ),
    (
        "extraVolumeMounts-item-without-mountPath",
        {"extraVolumeMounts": [{"name": "ca"}]},
        ["at '/extraVolumeMounts/0': missing property 'mountPath'"],
    ),
    (
        "envFrom-typo",
        {"envFrom": [{"secretRefs": {"name": "proxy"}}]},
        ["at '/envFrom/0': additional properties 'secretRefs' not allowed"],
    ),
    ("revisionHistoryLimit-negative", {"revisionHistoryLimit": -1}, ["/revisionHistoryLimit"]),
    (
        "topologySpreadConstraints-incomplete",
        {"topologySpreadConstraints": [{"maxSkew": 1}]},
        ["at '/topologySpreadConstraints/0': missing properties"],
    ),
    (
        "enabled-false-without-a-parent-condition",
        {"enabled": False},
        ["enabled is false", "condition: teleport-argocd-agent.enabled"],
    ),
    (
        "metrics-typo",
        {"metrics.serviceMonitor.intervall": "30s"},
        ["at '/metrics/serviceMonitor': additional properties 'intervall' not allowed"],
    ),
    (
        "metrics-two-monitors",
        {"metrics.serviceMonitor.enabled": True, "metrics.podMonitor.enabled": True},
        ["serviceMonitor.enabled and metrics.podMonitor.enabled are both true"],
    ),
    (
        "prometheusRule-bad-duration",
        {"metrics.prometheusRule.credentialExpiresWithin": "15 minutes"},
        ["at '/metrics/prometheusRule/credentialExpiresWithin'"],
    ),
    # -- tbot chart values that mean something else here: each says what to write instead -----
    (
        "tbot-image-string",
        {"image": "public.ecr.aws/gravitational/tbot-distroless"},
        ["image is a string", "image.repository, image.tag"],
    ),
    (
        "tbot-extraLabels-deployment",
        {"extraLabels": {"deployment": {"team": "platform"}}},
        ["extraLabels.deployment is a map", "extraLabels (one map, on every object)"],
    ),
    (
        "tbot-extraLabels-pod",
        {"extraLabels": {"pod": {"team": "platform"}}},
        ["extraLabels.pod is a map", "under podLabels"],
    ),
    (
        "tbot-annotations-pod",
        {"annotations": {"pod": {"example.com/a": "b"}}},
        ["annotations.pod is a map", "under podAnnotations"],
    ),
    (
        "tbot-annotations-serviceAccount",
        {"annotations": {"serviceAccount": {"eks.amazonaws.com/role-arn": "arn"}}},
        ["annotations.serviceAccount is a map", "under serviceAccount.annotations"],
    ),
    (
        "tbot-persistence",
        {"persistence": {"enabled": True}},
        ["persistence is set", "Remove persistence"],
    ),
    (
        "tbot-customConfig",
        {"customConfig": {"version": "v2"}},
        ["customConfig is set", "argocd.clusterSelectors"],
    ),
    (
        "tbot-services",
        {"services": [{"type": "kubernetes/argo-cd"}]},
        ["outputs or services is set", "argocd.*"],
    ),
    (
        "tbot-teleportVersionOverride",
        {"teleportVersionOverride": "18.0.0"},
        ["teleportVersionOverride is set", "image.tag"],
    ),
    ("tbot-anonymousTelemetry", {"anonymousTelemetry": True}, ["anonymousTelemetry is true"]),
    (
        "tbot-defaultOutput-secretName",
        {"defaultOutput.secretName": "identity-output"},
        ["defaultOutput.secretName is set"],
    ),
    ("tbot-imagePullPolicy-bogus", {"imagePullPolicy": "Sometimes"}, ["at '/imagePullPolicy'"]),
]


def test_case_ids_are_unique():
    # Two cases with one id would make pytest report one of them under the other's name.
    assert len({case_id for case_id, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [pytest.param(changes, expected, id=case_id) for case_id, changes, expected in CASES],
)
def test_bad_values_are_rejected_with_a_message_naming_the_key(
    helm: Helm, changes: dict[str, Any], expected: list[str]
):
    error = helm.template_error([_values(changes)])
    for fragment in expected:
        assert fragment in error, f"{fragment!r} not in:\n{error}"
    # Every message is either a schema violation or one of the chart's own explanations.
    assert "values don't meet the specifications" in error or "execution error" in error


def test_the_guide_values_themselves_are_accepted(helm: Helm):
    assert helm.template([_values({})]).objects


# The agent's reserved keys (agent/labels.py) are the one source; the chart must agree with it
# on each of them and on keys that look reserved but are not.
LABEL_KEYS = [
    "argocd.argoproj.io/secret-type",
    "app.kubernetes.io/managed-by",
    "teleport-argocd-agent/owner",
    "teleport-argocd-agent/anything",
    "app.kubernetes.io/part-of",
    "team",
]
ANNOTATION_KEYS = [
    "teleport.dev/bot-name",
    "teleport.dev/kubernetes-cluster-name",
    "teleport.dev/teleport-cluster-name",
    "teleport.dev/updated",
    "teleport.dev/tbot-version",
    "teleport-argocd-agent/version",
    "example.com/contact",
]


@pytest.mark.parametrize("key", LABEL_KEYS)
def test_chart_and_agent_agree_on_reserved_label_keys(helm: Helm, key: str):
    rendered = helm.run(
        *helm.template_args([_values({"argocd.secretLabels": {key: "x"}})]), check=False
    )
    assert (rendered.returncode != 0) == is_reserved_label(key), rendered.stderr


@pytest.mark.parametrize("key", ANNOTATION_KEYS)
def test_chart_and_agent_agree_on_reserved_annotation_keys(helm: Helm, key: str):
    rendered = helm.run(
        *helm.template_args([_values({"argocd.secretAnnotations": {key: "x"}})]), check=False
    )
    assert (rendered.returncode != 0) == is_reserved_annotation(key), rendered.stderr
