"""The chart's ValidatingAdmissionPolicy against the real API server, tried as the chart's own
ServiceAccount: everything the agent does passes, everything else its RBAC would allow is denied.

RBAC's `create` and `patch` on secrets are enough to read a secret whose name is known (a
dry-run no-op PATCH answers with the whole object) and to mint a token Secret for another
ServiceAccount; the policy is what closes both, so each denial is shown next to what the same
request does without the policy.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from agent.argocd import owner_id, shape_of
from agent.kube import Outcome, SecretWriter
from tests.chart.helm import CHART, Helm
from tests.harness.kube import ControlPlane, unique_namespace, wait_for_admission_policy
from tests.integration.test_writer import desired

RELEASE = "teleport-argocd-agent"
CI = CHART / "ci"
ARGOCD_SECRET_VALUE = "argocd-server-signing-key"
SaClient = Callable[..., k8s.ApiClient]


@pytest.fixture(scope="module")
def kube_helm(kube: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    home = tmp_path_factory.mktemp("helm-policy")
    return Helm(home, kube.kubeconfig(home / "kubeconfig"))


@pytest.fixture(scope="module")
def release(kube: ControlPlane, kube_helm: Helm) -> str:
    """The prune scenario installed with its policy, Argo CD's own secret beside it."""
    return _release(kube, kube_helm, CI / "prune-values.yaml")


def _release(kube: ControlPlane, helm: Helm, *values: Path | dict[str, Any]) -> str:
    admin = kube.admin_client()
    try:
        ns = unique_namespace(admin, prefix="policy")
        k8s.CoreV1Api(admin).create_namespaced_secret(
            ns,
            {
                "metadata": {"name": "argocd-secret"},
                "stringData": {"server.secretkey": ARGOCD_SECRET_VALUE},
            },
        )
    finally:
        admin.close()
    helm.run("install", RELEASE, str(CHART), "--namespace", ns, *helm.values_args(values))
    if not any(isinstance(v, dict) and v.get("admissionPolicy") for v in values):
        wait_for_admission_policy(kube, ns, RELEASE)
    return ns


def _owner(ns: str) -> str:
    return owner_id(f"{ns}/{RELEASE}", "argo-cd")


def _labels(ns: str) -> dict[str, str]:
    return {
        "argocd.argoproj.io/secret-type": "cluster",
        "app.kubernetes.io/managed-by": "teleport-argocd-agent",
        "teleport-argocd-agent/owner": _owner(ns),
    }


def _secret(name: str, labels: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": labels},
        "type": "Opaque",
        "stringData": {"name": name},
        **extra,
    }


def _denied(call: Callable[[], object]) -> str:
    """The body of the policy's denial of ``call``."""
    with pytest.raises(ApiException) as denied:
        call()
    assert denied.value.status in (403, 422), denied.value.body
    body = str(denied.value.body)
    assert "ValidatingAdmissionPolicy" in body, body
    return body


def _dry_run_noop_patch(agent: k8s.CoreV1Api, ns: str, name: str) -> Any:
    return agent.patch_namespaced_secret(name, ns, {"metadata": {}}, dry_run="All")


NAME = "teleport.argocd-cluster.e815df7b7588be17"


# -- what the policy denies ----------------------------------------------------------------


def test_dry_run_patch_cannot_read_argocd_secret(release: str, service_account_client: SaClient):
    agent = k8s.CoreV1Api(service_account_client(release, RELEASE, create=False))
    body = _denied(lambda: _dry_run_noop_patch(agent, release, "argocd-secret"))
    assert base64.b64encode(ARGOCD_SECRET_VALUE.encode()).decode() not in body


def test_without_the_policy_a_dry_run_patch_reads_any_secret_whose_name_is_known(
    kube: ControlPlane, kube_helm: Helm, service_account_client: SaClient
):
    # The documented fallback below Kubernetes 1.30: RBAC alone leaks the secret.
    ns = _release(
        kube, kube_helm, CI / "guide-values.yaml", {"admissionPolicy": {"enabled": False}}
    )
    agent = k8s.CoreV1Api(service_account_client(ns, RELEASE, create=False))
    leaked = _dry_run_noop_patch(agent, ns, "argocd-secret")
    assert base64.b64decode(leaked.data["server.secretkey"]).decode() == ARGOCD_SECRET_VALUE


def test_service_account_token_secret_cannot_be_created(
    release: str, service_account_client: SaClient
):
    agent = k8s.CoreV1Api(service_account_client(release, RELEASE, create=False))
    # Even with a name and labels the agent may use: only Opaque secrets.
    token = _secret(
        "teleport.argocd-cluster.0000000000000001",
        _labels(release),
        type="kubernetes.io/service-account-token",
    )
    token["metadata"]["annotations"] = {
        "kubernetes.io/service-account.name": "argocd-application-controller"
    }
    token.pop("stringData")
    _denied(lambda: agent.create_namespaced_secret(release, token))
    _denied(lambda: agent.create_namespaced_secret(release, token, dry_run="All"))


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        pytest.param("argocd-repo-creds", "ours", id="foreign name"),
        pytest.param("teleport.argocd-cluster.e815df7b7588be1", "ours", id="short hash"),
        pytest.param("other-prefix.e815df7b7588be17", "ours", id="other prefix"),
        pytest.param(NAME, "none", id="missing owner label"),
        pytest.param(NAME, "other owner", id="another installation's owner label"),
    ],
)
def test_create_outside_the_agents_own_secrets_is_denied(
    release: str, service_account_client: SaClient, name: str, labels: str
):
    agent = k8s.CoreV1Api(service_account_client(release, RELEASE, create=False))
    chosen = {
        "ours": _labels(release),
        "none": {"argocd.argoproj.io/secret-type": "cluster"},
        "other owner": {**_labels(release), "teleport-argocd-agent/owner": "0123456789abcdef"},
    }[labels]
    _denied(lambda: agent.create_namespaced_secret(release, _secret(name, chosen)))


# Under the policy the agent may skip its own dry-run ownership check (config admission_policy,
# which the chart sets): the API server's refusal must then protect the same secrets.
OWNERSHIP_CHECK = pytest.mark.parametrize(
    "enforced", [False, True], ids=["agent-checks-ownership", "policy-alone-decides"]
)


@OWNERSHIP_CHECK
def test_foreign_secret_under_an_agent_name_cannot_be_changed_or_deleted(
    kube: ControlPlane, release: str, service_account_client: SaClient, enforced: bool
):
    admin = k8s.CoreV1Api(kube.admin_client())
    name = f"teleport.argocd-cluster.00000000000000f{int(enforced)}"
    admin.create_namespaced_secret(release, _secret(name, {"team": "payments"}))
    agent_api = service_account_client(release, RELEASE, create=False)
    agent = k8s.CoreV1Api(agent_api)
    before = admin.read_namespaced_secret(name, release)

    # Adding the owner label does not make it the agent's: ownership is decided before the request.
    _denied(
        lambda: agent.patch_namespaced_secret(
            name, release, {"metadata": {"labels": _labels(release)}}
        )
    )
    _denied(lambda: agent.delete_collection_namespaced_secret(release))
    colliding = replace(desired(release, "x", instance=f"{release}/{RELEASE}"), name=name)
    result = SecretWriter(agent_api, ownership_enforced=enforced).write_one(colliding)

    assert result.outcome is Outcome.CONFLICT
    after = admin.read_namespaced_secret(name, release)
    assert after.metadata.resource_version == before.metadata.resource_version
    assert {s.metadata.name for s in admin.list_namespaced_secret(release).items} >= {
        "argocd-secret",
        name,
    }


# -- what the agent does still works ------------------------------------------------------


@OWNERSHIP_CHECK
def test_agent_writes_adopts_tbot_secrets_and_prunes_under_the_policy(
    kube: ControlPlane, release: str, service_account_client: SaClient, enforced: bool
):
    admin = k8s.CoreV1Api(kube.admin_client())
    writer = SecretWriter(
        service_account_client(release, RELEASE, create=False), ownership_enforced=enforced
    )
    instance = f"{release}/{RELEASE}"
    run = "policy" if enforced else "agent"  # the two runs share the release's namespace
    keep, stale = (
        desired(release, f"keep-{run}", instance=instance),
        desired(release, f"stale-{run}", instance=instance),
    )
    assert [r.outcome for r in writer.write([keep, stale])] == [Outcome.CREATED] * 2
    renewed = desired(release, f"keep-{run}", serial=2, instance=instance)
    assert writer.write_one(renewed).outcome is Outcome.UPDATED

    # A secret tbot wrote under the same name (TELEPORT.md section 9) is adopted.
    tbot = desired(release, f"from-tbot-{run}", instance=instance)
    body = tbot.apply_body()
    body["metadata"]["labels"] = {"argocd.argoproj.io/secret-type": "cluster"}
    body["metadata"]["annotations"] = {
        "teleport.dev/bot-name": "argocd",
        "teleport.dev/kubernetes-cluster-name": f"from-tbot-{run}",
        "teleport.dev/teleport-cluster-name": "root",
        "teleport.dev/updated": "2026-11-22T12:00:00Z",
        "teleport.dev/tbot-version": "18.0.0",
    }
    admin.create_namespaced_secret(release, body, field_manager="tbot")
    adopted = writer.write_one(tbot)
    assert (adopted.outcome, adopted.managers) == (Outcome.UPDATED, ("tbot",))
    live = admin.read_namespaced_secret(tbot.name, release)
    assert live.metadata.labels["teleport-argocd-agent/owner"] == _owner(release)

    pruned = writer.prune(release, _owner(release), {keep.cluster_hash, tbot.cluster_hash})
    # The other parametrized run's secrets share this owner, so they may go too.
    assert pruned.error == ""
    assert stale.name in pruned.deleted
    assert not {keep.name, tbot.name} & set(pruned.deleted)
    names = {s.metadata.name for s in admin.list_namespaced_secret(release).items}
    assert {keep.name, tbot.name, "argocd-secret"} <= names
    assert stale.name not in names


def test_token_join_identity_secret_is_the_only_other_secret_the_agent_may_touch(
    kube: ControlPlane, kube_helm: Helm, service_account_client: SaClient
):
    ns = _release(kube, kube_helm, CI / "token-join-values.yaml")
    agent = k8s.CoreV1Api(service_account_client(ns, RELEASE, create=False))
    identity = f"{RELEASE}-identity"
    created = agent.create_namespaced_secret(ns, _secret(identity, {}))
    created.string_data = {"identity": "renewed"}
    agent.replace_namespaced_secret(identity, ns, created)

    # RBAC allows `create` of any name in the release namespace; the policy allows only this one.
    _denied(lambda: agent.create_namespaced_secret(ns, _secret("another-secret", {})))
    token = _secret(identity + "-2", {}, type="kubernetes.io/service-account-token")
    token["metadata"]["annotations"] = {"kubernetes.io/service-account.name": "default"}
    _denied(lambda: agent.create_namespaced_secret(ns, token))


# -- content: what a secret of the agent may say ---------------------------------------------
#
# Argo CD treats a secret's content as instructions: a repository secret's `proxy` and
# `insecure` redirect its git fetches, a cluster `config` with `execProviderConfig` is a command
# its application controller runs, a `server` elsewhere receives every manifest. Each request
# below is what an attacker holding the agent's token would send; the agent's own name, owner
# label and RBAC verbs are all in order, only the content is not.

EXEC_CONFIG = (
    '{"execProviderConfig":{"command":"/bin/sh","args":["-c","id > /tmp/pwned"],'
    '"apiVersion":"client.authentication.k8s.io/v1beta1"},'
    '"tlsClientConfig":{"insecure":false,"caData":"Q0E="}}'
)
# What each content rule's denial says (the policy's messages).
RULE_TYPE = "may write only Argo CD cluster secrets"
RULE_KEYS = "may hold only the data keys it renders"
RULE_SERVER = "data.server must start with https://teleport.example.com:443/v1/teleport/"
RULE_CONFIG = "data.config must be the agent's canonical form"


def _agent_secret(ns: str, cluster: str) -> dict[str, Any]:
    """The apply body the agent itself renders for ``cluster`` (its name, labels, data)."""
    return desired(ns, cluster, instance=f"{ns}/{RELEASE}").apply_body()


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _with(body: dict[str, Any], **data: str | None) -> dict[str, Any]:
    """``body`` with data keys set (base64) or removed (None)."""
    changed = {**body, "data": dict(body["data"])}
    for key, value in data.items():
        if value is None:
            changed["data"].pop(key, None)
        else:
            changed["data"][key] = _b64(value)
    return changed


def _relabelled(body: dict[str, Any], secret_type: str | None) -> dict[str, Any]:
    labels = dict(body["metadata"]["labels"])
    if secret_type is None:
        labels.pop("argocd.argoproj.io/secret-type")
    else:
        labels["argocd.argoproj.io/secret-type"] = secret_type
    return {**body, "metadata": {**body["metadata"], "labels": labels}}


def _repository(body: dict[str, Any], secret_type: str) -> dict[str, Any]:
    """An agent-named secret that Argo CD's repo-server would use as a repository."""
    repo = _relabelled(body, secret_type)
    return {
        **repo,
        "data": {
            "type": _b64("git"),
            "url": _b64("https://github.com/example/deployments.git"),
            "proxy": _b64("http://attacker.example.com:3128"),
            "insecure": _b64("true"),
        },
    }


def _insecure(body: dict[str, Any]) -> dict[str, Any]:
    config = base64.b64decode(body["data"]["config"]).decode()
    assert '"insecure":false' in config
    return _with(body, config=config.replace('"insecure":false', '"insecure":true'))


ATTACKS: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], str]] = {
    "repository secret with proxy and insecure": (
        lambda b: _repository(b, "repository"),
        RULE_TYPE,
    ),
    "repo-creds secret": (lambda b: _repository(b, "repo-creds"), RULE_TYPE),
    "no secret-type label": (lambda b: _relabelled(b, None), RULE_TYPE),
    "execProviderConfig in config": (lambda b: _with(b, config=EXEC_CONFIG), RULE_CONFIG),
    "insecure true": (_insecure, RULE_CONFIG),
    "server elsewhere": (
        lambda b: _with(b, name="in-cluster", server="https://attacker.example.com"),
        RULE_SERVER,
    ),
    "server at the proxy but another path": (
        lambda b: _with(b, server="https://teleport.example.com:443/v1/webapi/x"),
        RULE_SERVER,
    ),
    "an extra data key": (lambda b: _with(b, proxy="http://attacker.example.com:3128"), RULE_KEYS),
    "no server": (lambda b: _with(b, server=None), RULE_SERVER),
    "config of another spelling": (
        lambda b: _with(b, config=json.dumps(json.loads(base64.b64decode(b["data"]["config"])))),
        RULE_CONFIG,
    ),
    "config too large to match": (
        lambda b: _with(
            b,
            config='{"tlsClientConfig":{"insecure":false,"caData":"'
            + "A" * 20_000
            + '","certData":"Q0E=","keyData":"Q0E="}}',
        ),
        RULE_CONFIG,
    ),
}


def _apply(
    agent: k8s.CoreV1Api, ns: str, body: dict[str, Any], manager: str = "attacker", **query: Any
) -> Any:
    """A server-side apply, the way the agent writes (authorized as create or patch)."""
    return agent.patch_namespaced_secret(
        body["metadata"]["name"],
        ns,
        body,
        field_manager=manager,
        _content_type="application/apply-patch+yaml",
        **query,
    )


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_create_with_content_the_agent_does_not_render_is_denied(
    release: str, service_account_client: SaClient, attack: str
):
    agent = k8s.CoreV1Api(service_account_client(release, RELEASE, create=False))
    change, rule = ATTACKS[attack]
    cluster = "create-" + attack.replace(" ", "-")
    body = change(_agent_secret(release, cluster))
    assert rule in _denied(lambda: agent.create_namespaced_secret(release, body))
    assert rule in _denied(lambda: agent.create_namespaced_secret(release, body, dry_run="All"))
    assert rule in _denied(lambda: _apply(agent, release, body))
    # The same secret as the agent renders it is accepted: the name and labels were in order.
    _apply(agent, release, _agent_secret(release, cluster), dry_run="All")


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_update_of_the_agents_own_secret_to_other_content_is_denied(
    kube: ControlPlane, release: str, service_account_client: SaClient, attack: str
):
    agent_api = service_account_client(release, RELEASE, create=False)
    agent = k8s.CoreV1Api(agent_api)
    cluster = "update-" + attack.replace(" ", "-")
    own = desired(release, cluster, instance=f"{release}/{RELEASE}")
    assert SecretWriter(agent_api, ownership_enforced=True).write_one(own).outcome is (
        Outcome.CREATED
    )
    admin = k8s.CoreV1Api(kube.admin_client())
    before = admin.read_namespaced_secret(own.name, release)
    change, rule = ATTACKS[attack]
    body = change(own.apply_body())
    # A merge patch of what changed and a server-side apply: each an UPDATE (RBAC grants no
    # `update`, so there is no PUT).
    merge = {"metadata": {"labels": body["metadata"]["labels"]}, "data": body["data"]}
    if "argocd.argoproj.io/secret-type" not in body["metadata"]["labels"]:
        merge["metadata"]["labels"] = {"argocd.argoproj.io/secret-type": None}
    merge["data"] = {
        **{k: None for k in own.apply_body()["data"] if k not in body["data"]},
        **body["data"],
    }
    assert rule in _denied(lambda: agent.patch_namespaced_secret(own.name, release, merge))
    # As the agent's own field manager, so what the body leaves out is removed too.
    assert rule in _denied(lambda: _apply(agent, release, body, own.field_manager, force=True))
    after = admin.read_namespaced_secret(own.name, release)
    assert after.metadata.resource_version == before.metadata.resource_version
    assert after.data == before.data


def test_without_the_policy_the_agents_token_writes_any_content(
    kube: ControlPlane, kube_helm: Helm, service_account_client: SaClient
):
    # What the table above would give an attacker without the policy (RBAC only).
    ns = _release(
        kube, kube_helm, CI / "prune-values.yaml", {"admissionPolicy": {"enabled": False}}
    )
    agent = k8s.CoreV1Api(service_account_client(ns, RELEASE, create=False))
    for attack in ("repository secret with proxy and insecure", "execProviderConfig in config"):
        change, _ = ATTACKS[attack]
        body = change(_agent_secret(ns, "unguarded-" + attack.replace(" ", "-")))
        created = agent.create_namespaced_secret(ns, body)
        assert created.data == body["data"]


def test_a_secret_is_read_or_relabelled_without_its_values_checked_only_when_it_is_the_agents(
    kube: ControlPlane, release: str, service_account_client: SaClient
):
    # Updates that keep the data skip the value rules (the policy's costly part) only for the
    # release's own secrets: adopting a tbot secret as it is, with tbot's config, is refused.
    agent = k8s.CoreV1Api(service_account_client(release, RELEASE, create=False))
    admin = k8s.CoreV1Api(kube.admin_client())
    body = _with(
        _agent_secret(release, "kept-tbot"), config='{"tlsClientConfig":{"insecure":false}}'
    )
    body["metadata"]["labels"] = {"argocd.argoproj.io/secret-type": "cluster"}
    body["metadata"]["annotations"] = {
        "teleport.dev/kubernetes-cluster-name": "kept-tbot",
        "teleport.dev/tbot-version": "18.0.0",
    }
    admin.create_namespaced_secret(release, body, field_manager="tbot")
    labels = _agent_secret(release, "kept-tbot")["metadata"]["labels"]
    adopt = {"metadata": {"labels": labels}}
    assert RULE_CONFIG in _denied(
        lambda: agent.patch_namespaced_secret(body["metadata"]["name"], release, adopt)
    )
    # The agent's own secret, read by a dry run that changes nothing and relabelled by its
    # owner, keeps working; a relabelling to another secret type is still refused.
    writer = SecretWriter(
        service_account_client(release, RELEASE, create=False), ownership_enforced=True
    )
    own = desired(release, "kept-own", instance=f"{release}/{RELEASE}")
    assert writer.write_one(own).outcome is Outcome.CREATED
    held = writer.read_held([own])[(release, own.name)]
    assert held.shape == shape_of(own)
    name = own.name
    relabel = {"metadata": {"labels": {"team": "a"}}}
    agent.patch_namespaced_secret(name, release, relabel)
    retype = {"metadata": {"labels": {"argocd.argoproj.io/secret-type": "repository"}}}
    assert RULE_TYPE in _denied(lambda: agent.patch_namespaced_secret(name, release, retype))
