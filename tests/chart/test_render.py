"""``helm template`` over every chart/ci/ value set, asserted object by object."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
from typing import Any

import pytest
import yaml

from agent.argocd import cluster_config, owner_id
from tests.chart.conftest import scenario
from tests.chart.helm import CHART, CI_VALUES, Helm, Rendered
from tests.unit.test_argocd import CASES as RENDER_CASES

GUIDE = CHART / "ci" / "guide-values.yaml"
FULLNAME = "rel-teleport-argocd-agent"
CONFIG_PATH = "/etc/teleport-argocd-agent/config.yaml"
SECRET_VERBS = ["create", "patch"]
ALL_SCENARIOS = [scenario(p) for p in CI_VALUES]
CHART_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]

STANDARD_LABELS = {
    "app.kubernetes.io/name": "teleport-argocd-agent",
    "app.kubernetes.io/instance": "rel",
    "app.kubernetes.io/managed-by": "Helm",
    "app.kubernetes.io/version": "0.1.0",
    "helm.sh/chart": f"teleport-argocd-agent-{CHART_VERSION}",
}


def _guide(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(GUIDE.read_text())
    values.update(overrides)
    return values


def _rules(role: dict[str, Any]) -> list[dict[str, Any]]:
    return role["rules"]  # type: ignore[no-any-return]


# -- every scenario ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_SCENARIOS)
def test_objects_are_exactly_configmap_sa_rbac_policy_and_deployment(rendered_ci, name):
    kinds = sorted(o["kind"] for o in rendered_ci[name].objects)
    expected = sorted(
        [
            "ConfigMap",
            "Deployment",
            "Role",
            "RoleBinding",
            "ServiceAccount",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ]
    )
    if name == "token-join":  # plus the Role/RoleBinding for the identity Secret
        expected = sorted([*expected, "Role", "RoleBinding"])
    expected = sorted([*expected, "Pod"])  # the `helm test` hook
    assert kinds == expected
    assert not rendered_ci[name].all("ClusterRole")
    assert not rendered_ci[name].all("ClusterRoleBinding")
    assert not rendered_ci[name].all("Secret")


@pytest.mark.parametrize("name", ALL_SCENARIOS)
def test_every_object_has_the_standard_labels(rendered_ci, name):
    for obj in rendered_ci[name].objects:
        labels = obj["metadata"]["labels"]
        for key in ("app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "helm.sh/chart"):
            assert key in labels, (obj["kind"], key)
        assert labels["app.kubernetes.io/version"] == "0.1.0"


@pytest.mark.parametrize("name", ALL_SCENARIOS)
def test_deployment_runs_one_agent_with_the_config_and_probes(rendered_ci, name):
    rendered = rendered_ci[name]
    deployment = rendered.deployment()
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()

    container = rendered.container()
    args = container["args"]
    assert args[:7] == ["start", "-c", CONFIG_PATH, "--log-format", "json", "--log-level", args[6]]
    port = rendered.config()["diag_addr"].rpartition(":")[2]
    assert container["ports"] == [
        {"name": "diagnostics", "containerPort": int(port), "protocol": "TCP"}
    ]
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "diagnostics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "diagnostics"}
    pod = rendered.pod_spec()
    assert pod["enableServiceLinks"] is False
    # Longer than the writer's 5 s connect + 20 s read, so the last write in flight can finish.
    assert pod["terminationGracePeriodSeconds"] == 45
    assert container["env"][0] == {
        "name": "POD_NAMESPACE",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
    }
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["config"] == {
        "name": "config",
        "mountPath": CONFIG_PATH,
        "subPath": "config.yaml",
        "readOnly": True,
    }
    assert mounts["tmp"]["mountPath"] == "/tmp"
    volumes = {v["name"]: v for v in rendered.pod_spec()["volumes"]}
    assert volumes["config"]["configMap"]["name"] == rendered.one("ConfigMap")["metadata"]["name"]
    assert "emptyDir" in volumes["tmp"]


@pytest.mark.parametrize("name", ALL_SCENARIOS)
def test_pod_security_is_restricted_by_default(rendered_ci, name):
    spec = rendered_ci[name].pod_spec()
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = rendered_ci[name].container()["securityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["readOnlyRootFilesystem"] is True
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert container["runAsNonRoot"] is True
    # The agent needs its API token to write secrets.
    assert spec["automountServiceAccountToken"] is True
    assert spec["serviceAccountName"] == rendered_ci[name].one("ServiceAccount")["metadata"]["name"]


@pytest.mark.parametrize("name", ALL_SCENARIOS)
def test_secret_role_grants_only_create_and_patch_in_the_secret_namespace(rendered_ci, name):
    rendered = rendered_ci[name]
    config = rendered.config()
    secret_ns = config["services"][0]["secret_namespace"]
    fullname = rendered.one("ConfigMap")["metadata"]["name"]
    role = rendered.one("Role", fullname)
    binding = rendered.one("RoleBinding", fullname)
    assert role["metadata"]["namespace"] == secret_ns
    assert binding["metadata"]["namespace"] == secret_ns
    verbs = [*SECRET_VERBS, "deletecollection"] if config["services"][0]["prune"] else SECRET_VERBS
    assert _rules(role) == [{"apiGroups": [""], "resources": ["secrets"], "verbs": verbs}]
    sa = rendered.one("ServiceAccount")["metadata"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": fullname,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["name"], "namespace": sa["namespace"]}
    ]


@pytest.mark.parametrize("name", ALL_SCENARIOS)
def test_no_rule_anywhere_can_read_or_list_secrets_broadly(rendered_ci, name):
    for role in rendered_ci[name].all("Role"):
        for rule in _rules(role):
            assert not {"list", "watch", "*"} & set(rule["verbs"]), rule
            if {"get", "update"} & set(rule["verbs"]):
                assert rule.get("resourceNames"), rule


@pytest.mark.parametrize("name", ALL_SCENARIOS)
def test_config_has_exactly_the_contract_keys(rendered_ci, name):
    config = rendered_ci[name].config()
    assert set(config) == {
        "version",
        "proxy_server",
        "onboarding",
        "credential_ttl",
        "renewal_interval",
        "storage",
        "instance",
        "diag_addr",
        "services",
        # The chart's admission policy is on by default, and the agent is told so, and
        # which server it allows.
        "admission_policy",
        "allowed_server_prefix",
    } | ({"rotation_window"} if name == "full-options" else set())
    assert config["admission_policy"] is True
    assert config["allowed_server_prefix"] == "https://teleport.example.com:443/v1/teleport/"
    assert config["version"] == "v2"
    assert config["instance"] == "argocd/rel"
    service = config["services"][0]
    assert len(config["services"]) == 1
    assert service["type"] == "kubernetes/argo-cd"
    assert service["name"] == "argo-cd"


@pytest.mark.parametrize("name", ALL_SCENARIOS)
def test_checksum_annotation_is_the_sha256_of_the_config(rendered_ci, name):
    annotations = rendered_ci[name].deployment()["spec"]["template"]["metadata"]["annotations"]
    config = rendered_ci[name].config_text().encode()
    assert annotations["checksum/config"] == hashlib.sha256(config).hexdigest()


# -- the guide's values -----------------------------------------------------------------------


def test_guide_values_render_the_expected_config(rendered_ci):
    assert rendered_ci["guide"].config() == {
        "version": "v2",
        "proxy_server": "teleport.example.com:443",
        "onboarding": {"join_method": "kubernetes", "token": "argocd-bot"},
        "credential_ttl": "1h",
        "renewal_interval": "20m",
        "storage": {"type": "memory"},
        "instance": "argocd/rel",
        "diag_addr": "0.0.0.0:3001",
        "admission_policy": True,
        "allowed_server_prefix": "https://teleport.example.com:443/v1/teleport/",
        "services": [
            {
                "type": "kubernetes/argo-cd",
                "name": "argo-cd",
                "selectors": [{"labels": {"environment": "production"}}],
                "secret_namespace": "argocd",
                "discovery_interval": "30s",
                "prune": False,
            }
        ],
    }


def test_guide_values_use_the_default_image_and_names(rendered_ci):
    rendered = rendered_ci["guide"]
    container = rendered.container()
    assert container["image"] == "ghcr.io/teleport-argocd-agent/teleport-argocd-agent:0.1.0"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["args"][6] == "info"
    for obj in rendered.objects:
        if obj["kind"].startswith("ValidatingAdmissionPolicy"):  # cluster-scoped
            assert obj["metadata"]["name"] == f"{FULLNAME}.argocd"
            assert "namespace" not in obj["metadata"]
        elif obj["kind"] == "Pod":  # the `helm test` hook, labelled apart from the agent's pod
            assert obj["metadata"]["name"] == f"{FULLNAME}-check"
            assert obj["metadata"]["labels"] == {
                **STANDARD_LABELS,
                "app.kubernetes.io/name": "teleport-argocd-agent-check",
                "app.kubernetes.io/component": "test",
            }
            continue
        else:
            assert obj["metadata"]["name"] == FULLNAME
            assert obj["metadata"]["namespace"] == "argocd"
        assert obj["metadata"]["labels"] == {
            **STANDARD_LABELS,
            "app.kubernetes.io/component": "agent",
        }
    assert rendered.deployment()["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "teleport-argocd-agent",
        "app.kubernetes.io/instance": "rel",
    }
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]


def test_kubernetes_join_projects_a_short_lived_token_for_the_teleport_cluster(rendered_ci):
    rendered = rendered_ci["guide"]
    volumes = {v["name"]: v for v in rendered.pod_spec()["volumes"]}
    assert volumes["join-sa-token"]["projected"] == {
        "sources": [
            {
                "serviceAccountToken": {
                    "audience": "teleport.example.com",
                    "expirationSeconds": 600,
                    "path": "join-sa-token",
                }
            }
        ]
    }
    container = rendered.container()
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["join-sa-token"] == {
        "name": "join-sa-token",
        "mountPath": "/var/run/secrets/tokens",
        "readOnly": True,
    }
    env = {e["name"]: e for e in container["env"]}
    assert env["KUBERNETES_TOKEN_PATH"] == {
        "name": "KUBERNETES_TOKEN_PATH",
        "value": "/var/run/secrets/tokens/join-sa-token",
    }
    assert "join-token" not in volumes


# -- other scenarios --------------------------------------------------------------------------


def test_token_join_reads_the_token_from_the_secret_and_persists_the_identity(rendered_ci):
    rendered = rendered_ci["token-join"]
    config = rendered.config()
    assert config["onboarding"] == {
        "join_method": "token",
        "token": "/etc/teleport-argocd-agent/join/token",
    }
    assert config["storage"] == {"type": "kubernetes_secret", "name": f"{FULLNAME}-identity"}
    volumes = {v["name"]: v for v in rendered.pod_spec()["volumes"]}
    assert volumes["join-token"]["secret"] == {
        "secretName": "teleport-argocd-join-token",
        "items": [{"key": "join-token", "path": "token"}],
        "defaultMode": 0o440,
    }
    assert "join-sa-token" not in volumes
    container = rendered.container()
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["join-token"] == {
        "name": "join-token",
        "mountPath": "/etc/teleport-argocd-agent/join",
        "readOnly": True,
    }
    assert "KUBERNETES_TOKEN_PATH" not in {e["name"] for e in container["env"]}


def test_token_join_identity_role_is_limited_to_the_identity_secret(rendered_ci):
    rendered = rendered_ci["token-join"]
    role = rendered.one("Role", f"{FULLNAME}-identity")
    assert role["metadata"]["namespace"] == "argocd"
    assert _rules(role) == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [f"{FULLNAME}-identity"],
            "verbs": ["get", "update", "patch"],
        },
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    ]
    binding = rendered.one("RoleBinding", f"{FULLNAME}-identity")
    assert binding["metadata"]["namespace"] == "argocd"
    assert binding["roleRef"]["name"] == f"{FULLNAME}-identity"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": "argocd"}
    ]


def test_token_join_never_puts_a_token_value_in_the_configmap(helm: Helm):
    values = yaml.safe_load((CHART / "ci" / "token-join-values.yaml").read_text())
    rendered = helm.template([values])
    text = rendered.config_text()
    assert "teleport-argocd-join-token" not in text
    assert rendered.config()["onboarding"]["token"].startswith("/")


def test_separate_secret_namespace_puts_role_and_binding_there(helm: Helm):
    values = CHART / "ci" / "separate-secret-namespace-values.yaml"
    rendered = helm.template([values], namespace="teleport-agent")
    assert rendered.config()["services"][0]["secret_namespace"] == "argocd"
    role = rendered.one("Role")
    binding = rendered.one("RoleBinding")
    assert role["metadata"]["namespace"] == "argocd"
    assert binding["metadata"]["namespace"] == "argocd"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": "teleport-agent"}
    ]
    for kind in ("ConfigMap", "ServiceAccount", "Deployment"):
        assert rendered.one(kind)["metadata"]["namespace"] == "teleport-agent"
    assert rendered.config()["instance"] == "teleport-agent/rel"


def test_prune_adds_only_deletecollection(rendered_ci):
    role = rendered_ci["prune"].one("Role")
    assert _rules(role) == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "verbs": ["create", "patch", "deletecollection"],
        }
    ]
    assert rendered_ci["prune"].config()["services"][0]["prune"] is True


def test_name_selectors_render_in_order(rendered_ci):
    assert rendered_ci["name-selectors"].config()["services"][0]["selectors"] == [
        {"name": "prod-eu"},
        {"name": "prod-us"},
        {"labels": {"environment": "staging", "team": "platform"}},
    ]


def test_full_options_render_every_argocd_key(rendered_ci):
    config = rendered_ci["full-options"].config()
    assert config["credential_ttl"] == "2h"
    assert config["renewal_interval"] == "30m"
    assert config["rotation_window"] == "10m"
    assert config["diag_addr"] == "0.0.0.0:9090"
    assert config["services"] == [
        {
            "type": "kubernetes/argo-cd",
            "name": "argo-cd",
            "selectors": [
                {"labels": {"environment": "production", "region": "eu"}},
                {"name": "legacy-cluster"},
            ],
            "secret_namespace": "argocd",
            # tbot's chart silently drops this one.
            "secret_name_prefix": "teleport.prod",
            "secret_labels": {"team": '{{ index .Labels "team" }}', "source": "teleport"},
            "secret_annotations": {"example.com/owner": "platform"},
            "project": "production",
            "namespaces": ["apps", "monitoring"],
            "cluster_resources": True,
            "cluster_name_template": "{{.KubeName}}",
            "discovery_interval": "1m",
            "prune": True,
        }
    ]


def test_full_options_apply_the_chart_surface(rendered_ci):
    rendered = rendered_ci["full-options"]
    for obj in rendered.objects:
        assert obj["metadata"]["name"] == {
            "ServiceAccount": "argocd-teleport-bot",
            "ValidatingAdmissionPolicy": "argocd-teleport.argocd",
            "ValidatingAdmissionPolicyBinding": "argocd-teleport.argocd",
            "Pod": "argocd-teleport-check",
        }.get(obj["kind"], "argocd-teleport")
        assert obj["metadata"]["labels"]["example.com/team"] == "platform"
        assert obj["metadata"]["annotations"]["example.com/contact"] == "platform@example.com"
    sa = rendered.one("ServiceAccount")
    assert sa["metadata"]["annotations"]["example.com/purpose"] == "teleport-join"
    assert rendered.one("RoleBinding")["subjects"][0]["name"] == "argocd-teleport-bot"

    template = rendered.deployment()["spec"]["template"]
    assert template["metadata"]["labels"]["example.com/tier"] == "gitops"
    assert template["metadata"]["labels"]["example.com/team"] == "platform"
    assert template["metadata"]["annotations"]["example.com/scrape"] == "true"
    assert "example.com/contact" not in template["metadata"]["annotations"]
    spec = template["spec"]
    assert spec["serviceAccountName"] == "argocd-teleport-bot"
    assert spec["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["tolerations"][0]["key"] == "dedicated"
    assert "nodeAffinity" in spec["affinity"]

    container = rendered.container()
    assert container["image"] == "registry.example.com/mirror/teleport-argocd-agent:0.1.0-rc.1"
    assert container["imagePullPolicy"] == "Always"
    assert container["args"][5:] == ["--log-level", "debug", "--log-format=text"]
    env = {e["name"]: e for e in container["env"]}
    assert env["HTTPS_PROXY"]["value"] == "http://proxy.example.com:3128"
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": "512Mi"}
    assert container["ports"][0]["containerPort"] == 9090


# -- single-value behaviour -------------------------------------------------------------------


def _checksum(rendered: Rendered) -> str:
    return str(
        rendered.deployment()["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    )


def test_checksum_changes_when_the_config_changes_and_only_then(helm: Helm):
    base = _checksum(helm.template([GUIDE]))
    assert _checksum(helm.template([GUIDE])) == base
    changed_config = [
        {"renewalInterval": "10m"},
        {"argocd": {"clusterSelectors": [{"name": "other"}]}},
        {"argocd": {"secretNamePrefix": "argocd.teleport"}},
        {"diagnostics": {"port": 3002}},
    ]
    for overrides in changed_config:
        assert _checksum(helm.template([GUIDE, overrides])) != base, overrides
    assert _checksum(helm.template([GUIDE, {"podAnnotations": {"a": "b"}}])) == base


@pytest.mark.parametrize(
    ("values", "level"),
    [
        ({}, "info"),
        ({"logLevel": "warning"}, "warning"),
        ({"debug": True}, "debug"),
        ({"debug": True, "logLevel": "error"}, "debug"),
    ],
    ids=["default", "logLevel", "debug", "debug-wins"],
)
def test_log_level(helm: Helm, values, level):
    assert helm.template([GUIDE, values]).container()["args"][6] == level


def test_extra_labels_cannot_break_the_standard_labels_or_the_selector(helm: Helm):
    rendered = helm.template(
        [
            GUIDE,
            {
                "extraLabels": {"app.kubernetes.io/name": "other", "team": "a"},
                "podLabels": {"app.kubernetes.io/instance": "other"},
            },
        ]
    )
    template_labels = rendered.deployment()["spec"]["template"]["metadata"]["labels"]
    assert template_labels["app.kubernetes.io/name"] == "teleport-argocd-agent"
    assert template_labels["app.kubernetes.io/instance"] == "rel"
    assert template_labels["team"] == "a"
    assert rendered.one("ConfigMap")["metadata"]["labels"]["app.kubernetes.io/name"] == (
        "teleport-argocd-agent"
    )


def test_service_account_and_rbac_can_be_brought_by_the_user(helm: Helm):
    rendered = helm.template(
        [GUIDE, {"serviceAccount": {"create": False, "name": "mine"}, "rbac": {"create": False}}]
    )
    assert not rendered.all("ServiceAccount")
    assert not rendered.all("Role")
    assert not rendered.all("RoleBinding")
    assert rendered.pod_spec()["serviceAccountName"] == "mine"


def test_service_account_defaults_to_default_when_not_created(helm: Helm):
    rendered = helm.template([GUIDE, {"serviceAccount": {"create": False}}])
    assert rendered.pod_spec()["serviceAccountName"] == "default"
    assert rendered.one("RoleBinding")["subjects"][0]["name"] == "default"


def test_release_name_containing_the_chart_name_is_not_repeated(helm: Helm):
    rendered = helm.template([GUIDE], release="teleport-argocd-agent")
    assert rendered.one("ConfigMap")["metadata"]["name"] == "teleport-argocd-agent"


def test_config_values_are_quoted_exactly(helm: Helm):
    tricky = {
        "token": "yes",
        "argocd": {
            "clusterSelectors": [{"labels": {"on": "true", "port": "8080", "x": "a: b # c"}}],
            "project": "null",
            "clusterNameTemplate": '{{ index .Labels "a: b" }}',
        },
    }
    config = helm.template([GUIDE, tricky]).config()
    assert config["onboarding"]["token"] == "yes"
    service = config["services"][0]
    assert service["selectors"] == [{"labels": {"on": "true", "port": "8080", "x": "a: b # c"}}]
    assert service["project"] == "null"
    assert service["cluster_name_template"] == '{{ index .Labels "a: b" }}'


def test_kube_version_constraint_rejects_clusters_older_than_1_25(helm: Helm):
    args = ["template", "rel", str(CHART), "--values", str(GUIDE), "--kube-version"]
    old = helm.run(*args, "1.24.17", check=False)
    assert old.returncode != 0
    assert "chart requires kubeVersion: >=1.25.0-0" in old.stderr
    # Below 1.30 (no ValidatingAdmissionPolicy) only with the policy turned off, knowingly.
    below = helm.run(*args, "1.29.5", check=False)
    assert below.returncode != 0
    assert "set admissionPolicy.enabled: false" in below.stderr
    off = helm.values_args([{"admissionPolicy": {"enabled": False}}])
    assert helm.run(*args, "1.25.0", *off).returncode == 0


# -- the admission policy (proven against the real API server in test_admission_policy.py) -----


def test_admission_policy_applies_to_the_agents_service_account_only(helm: Helm):
    rendered = helm.template([GUIDE], namespace="argocd")
    policy = rendered.one("ValidatingAdmissionPolicy", "rel-teleport-argocd-agent.argocd")
    binding = rendered.one("ValidatingAdmissionPolicyBinding", "rel-teleport-argocd-agent.argocd")
    assert binding["spec"] == {
        "policyName": policy["metadata"]["name"],
        "validationActions": ["Deny"],
    }
    assert "namespace" not in policy["metadata"]  # cluster-scoped
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert policy["spec"]["matchConditions"] == [
        {
            "name": "agent-service-account",
            "expression": (
                f'request.userInfo.username == "system:serviceaccount:argocd:{FULLNAME}"'
            ),
        }
    ]
    rules = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rules[0]["resources"] == ["secrets"]
    assert rules[0]["operations"] == ["CREATE", "UPDATE", "DELETE"]


def test_admission_policy_knows_the_agents_owner_label_and_name_prefix(helm: Helm):
    rendered = helm.template(
        [GUIDE, {"argocd": {**_guide()["argocd"], "secretNamePrefix": "my.argo"}}],
        release="rel",
        namespace="argocd",
    )
    variables = {
        v["name"]: v["expression"]
        for v in rendered.one("ValidatingAdmissionPolicy")["spec"]["variables"]
    }
    # The same owner id the agent computes from the config's instance and service name.
    owner = owner_id(rendered.config()["instance"], rendered.config()["services"][0]["name"])
    assert f'== "{owner}"' in variables["ownedAfter"]
    assert f'== "{owner}"' in variables["ownedBefore"]
    assert r"r'^my\.argo\.[0-9a-f]{16}$'" in variables["clusterSecret"]
    assert variables["identitySecret"] == "false"


def test_admission_policy_can_be_turned_off(helm: Helm):
    rendered = helm.template([GUIDE, {"admissionPolicy": {"enabled": False}}])
    assert not rendered.all("ValidatingAdmissionPolicy")
    assert not rendered.all("ValidatingAdmissionPolicyBinding")
    # Without the policy the agent must check ownership itself before a first write.
    assert "admission_policy" not in rendered.config()
    assert "allowed_server_prefix" not in rendered.config()


def _pinned(rendered: Rendered, field: str) -> list[re.Pattern[str]]:
    """The anchored regular expressions the policy matches ``data.<field>``'s base64 text
    with (RE2; the constructs used mean the same in Python's re)."""
    validations = rendered.one("ValidatingAdmissionPolicy")["spec"]["validations"]
    found = [
        re.search(rf"object\.data\.{field}\.matches\(r'([^']*)'\)", v["expression"])
        for v in validations
    ]
    patterns = [re.compile(m.group(1)) for m in found if m]
    assert patterns, f"no rule on data.{field}"
    return patterns


def _accepted(patterns: list[re.Pattern[str]], value: str) -> bool:
    encoded = base64.b64encode(value.encode()).decode()
    return all(p.fullmatch(encoded) for p in patterns)


def _policy_for(helm: Helm, proxy: str) -> Rendered:
    return helm.template([GUIDE, {"admissionPolicy": {"proxyPublicAddress": proxy}}])


@pytest.mark.parametrize("case", sorted(RENDER_CASES))
def test_policy_accepts_every_config_and_server_the_renderer_writes(helm: Helm, case: str):
    # The renderer's golden cases (tests/unit/test_argocd.py), against the rendered policy.
    secret = RENDER_CASES[case]()
    proxy = secret.server.removeprefix("https://").split("/", 1)[0]
    rendered = _policy_for(helm, proxy)
    data = {k: base64.b64decode(v).decode() for k, v in secret.apply_body()["data"].items()}
    assert _accepted(_pinned(rendered, "config"), data["config"]), data["config"]
    assert _accepted(_pinned(rendered, "server"), data["server"]), data["server"]
    assert rendered.config()["allowed_server_prefix"] == f"https://{proxy}/v1/teleport/"
    assert data["server"].startswith(rendered.config()["allowed_server_prefix"])


def _config(ca: bytes, cert: bytes, key: bytes, server_name: str) -> str:
    return cluster_config(ca_pem=ca, cert_pem=cert, key_pem=key, server_name=server_name)


SNI = "kube-teleport-proxy-alpn.teleport.example.com"


def test_policy_accepts_credentials_of_every_length(helm: Helm):
    # Every PEM length lands on another base64 alignment before the renderer pads it.
    patterns = _pinned(helm.template([GUIDE]), "config")
    rng = random.Random(24)
    for _ in range(300):
        ca, cert, key = (
            b"-----BEGIN X-----\n" + rng.randbytes(rng.randrange(0, 3000)).hex().encode()
            for _ in range(3)
        )
        for server_name in (SNI, ""):
            assert _accepted(patterns, _config(ca, cert, key, server_name))


CANONICAL = _config(b"CA\n", b"CERT\n", b"KEY\n", SNI)


def _swap(old: str, new: str) -> str:
    assert old in CANONICAL
    return CANONICAL.replace(old, new, 1)


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(_swap('"insecure":false', '"insecure":true '), id="insecure-true"),
        pytest.param(
            _swap('"}}', '","execProviderConfig":{"command":"/bin/sh"}}}'), id="exec-provider-last"
        ),
        pytest.param(
            _swap('{"tlsClientConfig"', '{"execProviderConfig":{"command":"sh"},"tlsClientConfig"'),
            id="exec-provider-first",
        ),
        pytest.param(
            _swap('{"tlsClientConfig"', '{"bearerToken":"t","tlsClientConfig"'), id="bearer"
        ),
        pytest.param(_swap(SNI, "attacker.example.com"), id="another-server-name"),
        pytest.param(_swap('"caData": "', '"caData":"'), id="other-spacing"),
        pytest.param(CANONICAL + "\n", id="trailing-newline"),
        pytest.param(json.dumps(json.loads(CANONICAL)), id="json-dumps-of-the-same"),
    ],
)
def test_policy_refuses_every_other_config(helm: Helm, config: str):
    patterns = _pinned(helm.template([GUIDE]), "config")
    assert _accepted(patterns, CANONICAL)
    assert not _accepted(patterns, config)


def test_policy_refuses_a_quote_smuggled_into_a_value(helm: Helm):
    # Any one character of a value replaced (alignment kept): only base64 text may stand there.
    patterns = _pinned(helm.template([GUIDE]), "config")
    config = _config(b"C" * 40, b"D" * 40, b"E" * 40, SNI)
    values = [m.span(1) for m in re.finditer(r'"([A-Za-z0-9+/]+)"', config)]
    rng = random.Random(7)
    for start, end in values:
        for _ in range(40):
            at = rng.randrange(start, end)
            bad = rng.choice('"\\{}:, \n=-_')
            assert not _accepted(patterns, config[:at] + bad + config[at + 1 :]), (at, bad)


@pytest.mark.parametrize(
    "proxy",
    [
        "teleport.example.com:443",
        "a.example.com:443",
        "ab.example.com:443",
        "[::1]:3080",
        "10.0.0.1:3080",
    ],
)
def test_policy_server_rule_pins_the_proxy_prefix(helm: Helm, proxy: str):
    # Addresses of every length modulo 3: the prefix's last bytes share a base64 group with
    # the cluster path, which the policy still pins.
    rendered = _policy_for(helm, proxy)
    patterns = _pinned(rendered, "server")
    prefix = f"https://{proxy}/v1/teleport/"
    assert rendered.config()["allowed_server_prefix"] == prefix
    for tail in ("cm9vdA/a3ViZS1jbHVzdGVyLTE", "X/Y", "_-/-_", "cm9vdA/" + "a" * 300):
        assert _accepted(patterns, prefix + tail)
    for other in (
        "https://attacker.example.com/v1/teleport/cm9vdA/a3ViZS1jbHVzdGVyLTE",
        prefix.replace("https://", "http://") + "cm9vdA/x",
        prefix[:-1] + "X" + "cm9vdA/x",
        prefix[:-2] + "/x",
        "https://kubernetes.default.svc",
        prefix[:-1],
    ):
        assert not _accepted(patterns, other), other


@pytest.mark.parametrize(
    ("values", "prefix"),
    [
        ({}, "https://teleport.example.com:443/v1/teleport/"),
        (
            {"teleportProxyAddress": "teleport.example.com"},
            "https://teleport.example.com:443/v1/teleport/",
        ),
        (
            {"admissionPolicy": {"proxyPublicAddress": "tp.example.com:3080"}},
            "https://tp.example.com:3080/v1/teleport/",
        ),
    ],
    ids=["guide", "bare-host-gets-443", "explicit"],
)
def test_policy_server_prefix_comes_from_the_proxy_address(
    helm: Helm, values: dict[str, Any], prefix: str
):
    rendered = helm.template([GUIDE, values])
    assert rendered.config()["allowed_server_prefix"] == prefix
    assert _accepted(_pinned(rendered, "server"), prefix + "cm9vdA/a3ViZS1jbHVzdGVyLTE")


def test_instance_keeps_the_owner_identity_across_a_release_rename(helm: Helm):
    old = helm.template([GUIDE], release="old", namespace="argocd")
    renamed = helm.template([GUIDE, {"instance": "argocd/old"}], release="new", namespace="argocd")
    assert renamed.config()["instance"] == old.config()["instance"] == "argocd/old"

    def owner_in_policy(rendered: Rendered) -> str:
        variables = rendered.one("ValidatingAdmissionPolicy")["spec"]["variables"]
        expression = next(v["expression"] for v in variables if v["name"] == "ownedBefore")
        return expression.rsplit('"', 2)[1]

    assert owner_in_policy(renamed) == owner_in_policy(old) == owner_id("argocd/old", "argo-cd")


# -- probes, the projected token, helm test --------------------------------------------------


def test_probes_default_to_a_start_without_failed_probes_and_take_overrides(helm: Helm):
    container = helm.template([GUIDE]).container()
    startup, liveness, readiness = (
        container[f"{kind}Probe"] for kind in ("startup", "liveness", "readiness")
    )
    assert startup["httpGet"] == liveness["httpGet"] == {"path": "/livez", "port": "diagnostics"}
    assert readiness["httpGet"] == {"path": "/readyz", "port": "diagnostics"}
    # Liveness runs only after the startup probe passed: no initial delay of its own.
    assert "initialDelaySeconds" not in liveness
    assert readiness["initialDelaySeconds"] >= 1

    container = helm.template(
        [GUIDE, {"probes": {"readiness": {"initialDelaySeconds": 30, "periodSeconds": 3}}}]
    ).container()
    # Helm merges the override into the defaults: the fields not given keep theirs.
    assert container["readinessProbe"] == {
        "httpGet": {"path": "/readyz", "port": "diagnostics"},
        **readiness,
        "initialDelaySeconds": 30,
        "periodSeconds": 3,
    }


def test_join_token_expiration_is_a_value(helm: Helm):
    volumes = {v["name"]: v for v in helm.template([GUIDE]).pod_spec()["volumes"]}
    source = volumes["join-sa-token"]["projected"]["sources"][0]["serviceAccountToken"]
    assert source["expirationSeconds"] == 600
    rendered = helm.template([GUIDE, {"joinTokenExpirationSeconds": 3600}])
    volumes = {v["name"]: v for v in rendered.pod_spec()["volumes"]}
    source = volumes["join-sa-token"]["projected"]["sources"][0]["serviceAccountToken"]
    assert source["expirationSeconds"] == 3600


def test_log_libraries_is_an_opt_in(helm: Helm):
    assert "--log-libraries" not in helm.template([GUIDE]).container()["args"]
    args = helm.template([GUIDE, {"logLevel": "debug", "logLibraries": True}]).container()["args"]
    assert args[5:8] == ["--log-level", "debug", "--log-libraries"]


@pytest.mark.parametrize("name", ALL_SCENARIOS)
def test_helm_test_pod_checks_with_the_agents_config_and_credentials(rendered_ci, name):
    rendered = rendered_ci[name]
    pod = rendered.one("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    # Never selected by the Deployment: its ReplicaSet would adopt (and delete) the Pod.
    selector = rendered.deployment()["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= pod["metadata"]["labels"].items()
    spec = pod["spec"]
    agent = rendered.pod_spec()
    assert spec["restartPolicy"] == "Never"
    for key in ("serviceAccountName", "securityContext", "automountServiceAccountToken"):
        assert spec[key] == agent[key], key
    (check,) = spec["containers"]
    container = rendered.container()
    assert check["args"] == ["check", "-c", CONFIG_PATH]
    for key in ("image", "env", "securityContext", "resources", "volumeMounts"):
        assert check[key] == container[key], key
    assert spec["volumes"] == agent["volumes"]
