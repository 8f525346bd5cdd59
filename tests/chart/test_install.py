"""``helm install`` / ``helm upgrade`` into a real API server, with RBAC proven by real requests.

There is no controller manager, so the Deployment never makes a Pod: the tests create one from
the Deployment's pod template to prove it passes ``restricted`` Pod Security admission.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from agent.argocd import cluster_config, owner_id
from tests.chart.helm import CHART, Helm
from tests.harness.kube import ControlPlane, unique_namespace
from tests.harness.notes import teleport_resources as notes_resources

RELEASE = "teleport-argocd-agent"  # contains the chart name, so it is also the full name
CI = CHART / "ci"
GUIDE = CI / "guide-values.yaml"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}
APPLY = "application/apply-patch+yaml"
FIELD_MANAGER = "teleport-argocd-agent"

SaClient = Callable[..., k8s.ApiClient]


@pytest.fixture(scope="module")
def kube_helm(kube: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    home = tmp_path_factory.mktemp("helm-install")
    return Helm(home, kube.kubeconfig(home / "kubeconfig"))


@pytest.fixture(scope="module")
def chart() -> Path:
    """The real chart, kubeVersion constraint included (the test API server reports 1.34)."""
    return CHART


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def _install(helm: Helm, chart: Path, namespace: str, *values: Path | dict[str, Any]) -> str:
    args = ["install", RELEASE, str(chart), "--namespace", namespace]
    return helm.run(*args, *helm.values_args(values)).stdout


def _owner(release_namespace: str) -> str:
    return owner_id(f"{release_namespace}/{RELEASE}", "argo-cd")


KUBE_SERVER_NAME = "kube-teleport-proxy-alpn.teleport.example.com"


def _labels(release_namespace: str) -> dict[str, str]:
    """The labels the agent of the release in ``release_namespace`` puts on its secrets: what the
    chart's admission policy requires of them."""
    return {
        "argocd.argoproj.io/secret-type": "cluster",
        "app.kubernetes.io/managed-by": "teleport-argocd-agent",
        "teleport-argocd-agent/owner": _owner(release_namespace),
    }


def _secret(name: str, labels: dict[str, str] | None = None, ca: bytes = b"CA\n") -> dict[str, Any]:
    """A secret with what the agent writes (server under the guide's proxy, canonical config),
    so the admission policy judges it by its name and labels."""
    config = cluster_config(
        ca_pem=ca, cert_pem=b"CERT\n", key_pem=b"KEY\n", server_name=KUBE_SERVER_NAME
    )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": labels or {}},
        "type": "Opaque",
        "stringData": {
            "name": name,
            "server": f"https://teleport.example.com:443/v1/teleport/cm9vdA/{name[-16:]}",
            "config": config,
        },
    }


def _status(call: Callable[[], object]) -> int:
    """HTTP status of an API call: 200 when it succeeds, else the error's status."""
    try:
        call()
    except ApiException as exc:
        return int(exc.status)
    return 200


def _notes_resources(notes: str) -> list[dict[str, Any]]:
    """The YAML documents NOTES.txt tells the user to `tctl create`."""
    return [doc for doc in yaml.safe_load_all(notes_resources(notes)) if doc]


def _by_kind(resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["kind"]: r for r in resources}


# -- install, upgrade, Pod Security -------------------------------------------------------------


def test_guide_values_install_then_upgrade_after_a_chart_version_bump(
    chart: Path, kube_helm: Helm, admin_api: k8s.ApiClient, tmp_path: Path
):
    ns = unique_namespace(admin_api, labels=RESTRICTED)
    out = _install(kube_helm, chart, ns, GUIDE)
    assert "STATUS: deployed" in out

    core, apps = k8s.CoreV1Api(admin_api), k8s.AppsV1Api(admin_api)
    rbac = k8s.RbacAuthorizationV1Api(admin_api)
    config = yaml.safe_load(core.read_namespaced_config_map(RELEASE, ns).data["config.yaml"])
    assert config["instance"] == f"{ns}/{RELEASE}"
    assert config["services"][0]["secret_namespace"] == ns
    assert core.read_namespaced_service_account(RELEASE, ns)
    assert rbac.read_namespaced_role(RELEASE, ns).rules[0].verbs == ["create", "patch"]
    assert rbac.read_namespaced_role_binding(RELEASE, ns).subjects[0].name == RELEASE
    before = apps.read_namespaced_deployment(RELEASE, ns)

    bumped = tmp_path / "chart"
    shutil.copytree(chart, bumped)
    version = yaml.safe_load((chart / "Chart.yaml").read_text())["version"]
    major, minor, patch = version.split(".")
    newer = f"{major}.{minor}.{int(patch) + 1}"
    _edit(bumped / "Chart.yaml", f"\nversion: {version}\n", f"\nversion: {newer}\n")
    out = kube_helm.run(
        "upgrade", RELEASE, str(bumped), "--namespace", ns, "--values", str(GUIDE)
    ).stdout
    assert "STATUS: deployed" in out

    history = json.loads(kube_helm.run("history", RELEASE, "-n", ns, "-o", "json").stdout)
    assert [(h["chart"], h["status"]) for h in history] == [
        (f"teleport-argocd-agent-{version}", "superseded"),
        (f"teleport-argocd-agent-{newer}", "deployed"),
    ]
    after = apps.read_namespaced_deployment(RELEASE, ns)
    assert after.metadata.labels["helm.sh/chart"] == f"teleport-argocd-agent-{newer}"
    # Same config, same checksum: the version bump alone does not change what the agent runs with.
    assert (
        after.spec.template.metadata.annotations["checksum/config"]
        == before.spec.template.metadata.annotations["checksum/config"]
    )


@pytest.fixture(scope="module")
def guide_release(chart: Path, kube: ControlPlane, kube_helm: Helm) -> tuple[str, str]:
    """The guide's values installed into a namespace enforcing restricted Pod Security."""
    api = kube.admin_client()
    ns = unique_namespace(api, labels=RESTRICTED)
    api.close()
    notes = _install(kube_helm, chart, ns, GUIDE)
    return ns, notes


def _pod_from_deployment(api: k8s.ApiClient, ns: str, name: str) -> dict[str, Any]:
    deployment = k8s.AppsV1Api(api).read_namespaced_deployment(RELEASE, ns)
    template: dict[str, Any] = api.sanitize_for_serialization(deployment.spec.template)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**template["metadata"], "name": name},
        "spec": template["spec"],
    }


def test_deployment_pod_template_is_admitted_by_restricted_pod_security(
    admin_api: k8s.ApiClient, guide_release: tuple[str, str]
):
    ns, _ = guide_release
    core = k8s.CoreV1Api(admin_api)
    pod = _pod_from_deployment(admin_api, ns, "agent-from-template")
    created = core.create_namespaced_pod(ns, pod)
    assert created.metadata.name == "agent-from-template"
    # What the API server stored is what the chart asked for.
    assert created.spec.security_context.run_as_user == 65532
    assert created.spec.containers[0].security_context.read_only_root_filesystem is True
    projected = next(v for v in created.spec.volumes if v.name == "join-sa-token").projected
    token = projected.sources[0].service_account_token
    assert (token.audience, token.expiration_seconds) == ("teleport.example.com", 600)


def test_pod_template_without_its_security_context_is_rejected(
    admin_api: k8s.ApiClient, guide_release: tuple[str, str]
):
    ns, _ = guide_release
    pod = _pod_from_deployment(admin_api, ns, "agent-without-security-context")
    del pod["spec"]["securityContext"]
    del pod["spec"]["containers"][0]["securityContext"]
    with pytest.raises(ApiException) as rejected:
        k8s.CoreV1Api(admin_api).create_namespaced_pod(ns, pod)
    assert rejected.value.status == 403
    assert "violates PodSecurity" in rejected.value.body


def test_install_notes_print_the_teleport_resources_for_this_release(
    guide_release: tuple[str, str],
):
    ns, notes = guide_release
    resources = _by_kind(_notes_resources(notes))
    assert set(resources) == {"role", "bot", "token"}
    role = resources["role"]
    assert role["metadata"]["name"] == RELEASE
    assert role["spec"]["allow"]["kubernetes_labels"] == {"environment": "production"}
    assert role["spec"]["allow"]["kubernetes_groups"] == ["system:masters"]
    assert resources["bot"]["metadata"]["name"] == RELEASE
    assert resources["bot"]["spec"]["roles"] == [RELEASE]
    token = resources["token"]
    assert token["metadata"]["name"] == "argocd-bot"
    assert token["spec"]["join_method"] == "kubernetes"
    assert token["spec"]["bot_name"] == RELEASE
    assert token["spec"]["roles"] == ["Bot"]
    assert token["spec"]["kubernetes"]["type"] == "static_jwks"
    assert "kubectl get --raw /openid/v1/jwks" in token["spec"]["kubernetes"]["static_jwks"]["jwks"]
    assert token["spec"]["kubernetes"]["allow"] == [{"service_account": f"{ns}:{RELEASE}"}]
    assert "tctl create -f" in notes
    assert f"kubectl --namespace {ns} logs deployment/{RELEASE}" in notes
    assert "/readyz" in notes
    assert "get secrets -l argocd.argoproj.io/secret-type=cluster" in notes


def test_notes_allow_every_cluster_for_name_selectors_and_a_union_for_label_selectors(
    chart: Path, kube_helm: Helm, admin_api: k8s.ApiClient
):
    ns = unique_namespace(admin_api)
    dry = ["install", RELEASE, str(chart), "--namespace", ns, "--dry-run=server"]
    names = kube_helm.run(*dry, "--values", str(CI / "name-selectors-values.yaml")).stdout
    allow = _by_kind(_notes_resources(names))["role"]["spec"]["allow"]
    assert allow["kubernetes_labels"] == {"*": "*"}
    assert "kubernetes_labels_expression" not in allow

    union = {
        "argocd": {
            "clusterSelectors": [
                {"labels": {"env": "prod", "tier": "1"}},
                {"labels": {"team": "a"}},
            ]
        }
    }
    labels = kube_helm.run(*dry, *kube_helm.values_args([GUIDE, union])).stdout
    allow = _by_kind(_notes_resources(labels))["role"]["spec"]["allow"]
    assert allow["kubernetes_labels"] == {"*": "*"}
    assert allow["kubernetes_labels_expression"] == (
        '(labels["env"] == "prod" && labels["tier"] == "1") || (labels["team"] == "a")'
    )


# -- RBAC, proven with the chart's own ServiceAccount -------------------------------------------


def _apply(core: k8s.CoreV1Api, ns: str, body: dict[str, Any]) -> object:
    return core.patch_namespaced_secret(
        body["metadata"]["name"], ns, body, field_manager=FIELD_MANAGER, _content_type=APPLY
    )


def test_agent_can_create_and_apply_cluster_secrets_but_never_read_them(
    admin_api: k8s.ApiClient,
    guide_release: tuple[str, str],
    service_account_client: SaClient,
):
    ns, _ = guide_release
    admin = k8s.CoreV1Api(admin_api)
    admin.create_namespaced_secret(ns, _secret("argocd-secret"))
    agent = k8s.CoreV1Api(service_account_client(ns, RELEASE, create=False))

    name = "teleport.argocd-cluster.e815df7b7588be17"
    assert _status(lambda: agent.create_namespaced_secret(ns, _secret(name, _labels(ns)))) == 200
    # Server-side apply of an existing secret is authorized as `patch`...
    updated = _secret(name, _labels(ns), ca=b"ANOTHER CA\n")
    assert _status(lambda: _apply(agent, ns, updated)) == 200
    # ... and of a new one as `create` (plus `patch`).
    fresh = _secret("teleport.argocd-cluster.0000000000000001", _labels(ns))
    assert _status(lambda: _apply(agent, ns, fresh)) == 200
    assert admin.read_namespaced_secret(name, ns).data["config"]

    # It cannot read, list, watch or delete anything: not Argo CD's secrets, not even its own.
    assert _status(lambda: agent.read_namespaced_secret("argocd-secret", ns)) == 403
    assert _status(lambda: agent.read_namespaced_secret(name, ns)) == 403
    assert _status(lambda: agent.list_namespaced_secret(ns)) == 403
    assert _status(lambda: agent.list_namespaced_secret(ns, watch=True, timeout_seconds=1)) == 403
    assert _status(lambda: agent.delete_namespaced_secret(name, ns)) == 403
    assert (
        _status(
            lambda: agent.delete_collection_namespaced_secret(
                ns, label_selector=f"teleport-argocd-agent/owner={_owner(ns)}"
            )
        )
        == 403
    )
    # Nothing outside secrets, nothing outside its namespace.
    other = unique_namespace(admin_api)
    assert _status(lambda: agent.create_namespaced_secret(other, _secret(name))) == 403
    configmap = {"metadata": {"name": "x"}, "data": {}}
    assert _status(lambda: agent.create_namespaced_config_map(ns, configmap)) == 403


def test_prune_allows_label_selected_deletecollection_but_still_no_list(
    chart: Path, kube_helm: Helm, admin_api: k8s.ApiClient, service_account_client: SaClient
):
    ns = unique_namespace(admin_api, labels=RESTRICTED)
    _install(kube_helm, chart, ns, CI / "prune-values.yaml")
    admin = k8s.CoreV1Api(admin_api)
    admin.create_namespaced_secret(ns, _secret("argocd-secret"))
    agent = k8s.CoreV1Api(service_account_client(ns, RELEASE, create=False))
    for i in range(2):
        body = _secret(f"teleport.argocd-cluster.000000000000000{i}", _labels(ns))
        assert _status(lambda body=body: _apply(agent, ns, body)) == 200

    selector = f"teleport-argocd-agent/owner={_owner(ns)}"
    response = agent.delete_collection_namespaced_secret(
        ns, label_selector=selector, _preload_content=False
    )
    # The call answers with what it deleted: with the owner selector, only the agent's secrets.
    deleted = {item["metadata"]["name"] for item in json.loads(response.data)["items"]}
    assert deleted == {f"teleport.argocd-cluster.000000000000000{i}" for i in range(2)}
    remaining = {s.metadata.name for s in admin.list_namespaced_secret(ns).items}
    # Only the selected secrets went; Argo CD's and Helm's own stayed.
    assert remaining == {"argocd-secret", f"sh.helm.release.v1.{RELEASE}.v1"}
    assert _status(lambda: agent.list_namespaced_secret(ns)) == 403
    assert _status(lambda: agent.read_namespaced_secret("argocd-secret", ns)) == 403


def test_separate_secret_namespace_gets_the_role_and_the_agent_writes_only_there(
    chart: Path, kube_helm: Helm, admin_api: k8s.ApiClient, service_account_client: SaClient
):
    agent_ns = unique_namespace(admin_api, prefix="agent", labels=RESTRICTED)
    argocd_ns = unique_namespace(admin_api, prefix="argocd")
    _install(kube_helm, chart, agent_ns, GUIDE, {"argocd": {"secretNamespace": argocd_ns}})
    rbac = k8s.RbacAuthorizationV1Api(admin_api)
    assert [r.metadata.name for r in rbac.list_namespaced_role(argocd_ns).items] == [RELEASE]
    assert rbac.list_namespaced_role(agent_ns).items == []
    binding = rbac.read_namespaced_role_binding(RELEASE, argocd_ns)
    assert (binding.subjects[0].name, binding.subjects[0].namespace) == (RELEASE, agent_ns)

    agent = k8s.CoreV1Api(service_account_client(agent_ns, RELEASE, create=False))
    body = _secret("teleport.argocd-cluster.e815df7b7588be17", _labels(agent_ns))
    assert _status(lambda: _apply(agent, argocd_ns, body)) == 200
    assert _status(lambda: _apply(agent, agent_ns, body)) == 403
    assert _status(lambda: agent.list_namespaced_secret(argocd_ns)) == 403


def test_token_join_can_keep_its_identity_secret_and_nothing_more(
    chart: Path, kube_helm: Helm, admin_api: k8s.ApiClient, service_account_client: SaClient
):
    ns = unique_namespace(admin_api, labels=RESTRICTED)
    admin = k8s.CoreV1Api(admin_api)
    admin.create_namespaced_secret(
        ns, {"metadata": {"name": "teleport-argocd-join-token"}, "stringData": {"join-token": "x"}}
    )
    notes = _install(kube_helm, chart, ns, CI / "token-join-values.yaml")
    agent = k8s.CoreV1Api(service_account_client(ns, RELEASE, create=False))
    identity = f"{RELEASE}-identity"

    assert _status(lambda: agent.create_namespaced_secret(ns, _secret(identity))) == 200
    assert _status(lambda: agent.read_namespaced_secret(identity, ns)) == 200
    current = agent.read_namespaced_secret(identity, ns)
    current.string_data = {"identity": "renewed"}
    assert _status(lambda: agent.replace_namespaced_secret(identity, ns, current)) == 200
    assert _status(lambda: _apply(agent, ns, _secret(identity))) == 200
    # The join token is mounted into the pod; the API never hands it out.
    assert _status(lambda: agent.read_namespaced_secret("teleport-argocd-join-token", ns)) == 403
    assert _status(lambda: agent.list_namespaced_secret(ns)) == 403
    assert _status(lambda: agent.delete_namespaced_secret(identity, ns)) == 403

    resources = _by_kind(_notes_resources(notes))
    assert set(resources) == {"role", "bot"}
    assert "join_method: token" in notes
    assert (
        f'printf %s "$TOKEN" | kubectl --namespace {ns} create secret generic '
        "teleport-argocd-join-token --from-file=join-token=/dev/stdin"
    ) in notes
    # The one-time token is never an argument of a command (visible to other users in ps).
    assert "--from-literal" not in notes
