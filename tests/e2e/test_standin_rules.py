"""The Teleport stand-in's rules that need real API servers (issue 10, rules 2 and 8).

Rule 2: the kubernetes join method with ``static_jwks`` checks real TokenRequest-issued,
pod-bound tokens against the API server's real ``/openid/v1/jwks``. Rule 8: the Kubernetes
route reaches the right real API server, as the impersonated user and groups (proved with
upstream RBAC that only they hold), and refuses what Teleport's proxy refuses.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.harness.kube import ControlPlane, control_plane, unique_namespace
from tests.harness.pki import CertificateAuthority
from tests.harness.standin import (
    IssuedIdentity,
    StandIn,
    bot_doc,
    kube_cluster_doc,
    kube_request,
    kubernetes_token_doc,
    output_identity,
    role_doc,
    standin,
    token_doc,
    web_join,
)

CLUSTER = "root"
READERS_GROUP = "standin-namespace-readers"


@pytest.fixture(scope="module")
def other_kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A second real API server: a second target cluster, and a second token signer."""
    with control_plane(tmp_path_factory.mktemp("kube-other")) as plane:
        yield plane


def jwks_of(plane: ControlPlane) -> str:
    """The API server's real ``/openid/v1/jwks``."""
    ctx = ssl.create_default_context(cafile=str(plane.ca_path))
    ctx.load_cert_chain(str(plane.admin_cert_path), str(plane.admin_key_path))
    url = f"{plane.url}/openid/v1/jwks"
    with urllib.request.urlopen(url, timeout=10, context=ctx) as response:  # noqa: S310
        return str(response.read().decode())


def pod_bound_token(
    plane: ControlPlane,
    namespace: str,
    service_account: str,
    *,
    audiences: list[str],
    seconds: int = 600,
    bind_pod: bool = True,
) -> str:
    """A TokenRequest token for the account, bound to a Pod created for it (there is no
    controller manager: the Pod only has to exist as an object)."""
    api = plane.admin_client()
    core = k8s.CoreV1Api(api)
    try:
        try:
            core.create_namespaced_service_account(
                namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name=service_account))
            )
        except k8s.ApiException as exc:
            if exc.status != 409:
                raise
        bound = None
        if bind_pod:
            pod = core.create_namespaced_pod(
                namespace,
                k8s.V1Pod(
                    metadata=k8s.V1ObjectMeta(name=f"agent-{uuid.uuid4().hex[:6]}"),
                    spec=k8s.V1PodSpec(
                        service_account_name=service_account,
                        automount_service_account_token=False,
                        containers=[k8s.V1Container(name="agent", image="example.invalid/agent")],
                    ),
                ),
            )
            bound = k8s.V1BoundObjectReference(
                api_version="v1", kind="Pod", name=pod.metadata.name, uid=pod.metadata.uid
            )
        response = core.create_namespaced_service_account_token(
            service_account,
            namespace,
            k8s.AuthenticationV1TokenRequest(
                spec=k8s.V1TokenRequestSpec(
                    audiences=audiences, expiration_seconds=seconds, bound_object_ref=bound
                )
            ),
        )
        return str(response.status.token)
    finally:
        api.close()


def join_error(server: StandIn, token: str, id_token: str) -> tuple[int, str]:
    """The HTTP status and message of a refused join."""
    with pytest.raises(urllib.error.HTTPError) as refused:
        web_join(server, token, id_token=id_token)
    body = json.loads(refused.value.read() or b"{}")
    return refused.value.code, str(body.get("error", {}).get("message", ""))


# -- rule 2: kubernetes join (static_jwks) -----------------------------------------------------


@pytest.fixture
def kube_join(kube: ControlPlane, admin_api: k8s.ApiClient) -> Iterator[tuple[StandIn, str]]:
    """A stand-in with a static_jwks token trusting ``kube``'s real JWKS and allowing
    ``<namespace>:agent``; yields it and the namespace."""
    namespace = unique_namespace(admin_api, prefix="join")
    resources = [
        role_doc("access", kubernetes_labels={"*": "*"}),
        bot_doc("argocd", ["access"]),
        kubernetes_token_doc(
            "kube-join", "argocd", jwks=jwks_of(kube), service_accounts=[f"{namespace}:agent"]
        ),
    ]
    with standin(resources, cluster_name=CLUSTER) as server:
        yield server, namespace


def test_pod_bound_token_from_the_api_server_joins(
    kube_join: tuple[StandIn, str], kube: ControlPlane
) -> None:
    server, namespace = kube_join
    token = pod_bound_token(kube, namespace, "agent", audiences=[CLUSTER])
    bot = web_join(server, "kube-join", id_token=token)
    subject = {a.oid.dotted_string: a.value for a in bot.certificate.subject}
    assert subject["2.5.4.3"] == "bot-argocd"
    assert "1.3.9999.1.13" not in subject  # kubernetes joins are not renewable
    # The token is reusable: a second join works and makes a second bot instance.
    web_join(server, "kube-join", id_token=token)
    assert [i["join_method"] for i in server.instances()] == ["kubernetes", "kubernetes"]


def test_token_signed_by_another_api_server_is_rejected(
    kube_join: tuple[StandIn, str], other_kube: ControlPlane, admin_api: k8s.ApiClient
) -> None:
    server, namespace = kube_join
    other_api = other_kube.admin_client()
    try:
        # The same namespace and account name, so only the signing key differs.
        k8s.CoreV1Api(other_api).create_namespace(
            k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace))
        )
    finally:
        other_api.close()
    foreign = pod_bound_token(other_kube, namespace, "agent", audiences=[CLUSTER])
    status, message = join_error(server, "kube-join", foreign)
    assert status == 500
    assert "reviewing kubernetes token with static_jwks" in message
    assert "validating jwt signature" in message


def test_token_without_the_cluster_in_its_audience_is_rejected(
    kube_join: tuple[StandIn, str], kube: ControlPlane
) -> None:
    server, namespace = kube_join
    token = pod_bound_token(kube, namespace, "agent", audiences=["https://kubernetes.default.svc"])
    status, message = join_error(server, "kube-join", token)
    assert status == 500
    assert "validating jwt claims" in message


def test_token_not_bound_to_a_pod_is_rejected(
    kube_join: tuple[StandIn, str], kube: ControlPlane
) -> None:
    server, namespace = kube_join
    token = pod_bound_token(kube, namespace, "agent", audiences=[CLUSTER], bind_pod=False)
    status, message = join_error(server, "kube-join", token)
    assert (status, message) == (
        400,
        "reviewing kubernetes token with static_jwks: static_jwks joining requires the use "
        "of projected pod bound service account token",
    )


def test_token_living_longer_than_30_minutes_is_rejected(
    kube_join: tuple[StandIn, str], kube: ControlPlane
) -> None:
    server, namespace = kube_join
    token = pod_bound_token(kube, namespace, "agent", audiences=[CLUSTER], seconds=31 * 60)
    status, message = join_error(server, "kube-join", token)
    assert status == 400
    assert "with a TTL of less than 30m0s" in message


def test_service_account_outside_the_allow_rules_is_rejected(
    kube_join: tuple[StandIn, str], kube: ControlPlane
) -> None:
    server, namespace = kube_join
    token = pod_bound_token(kube, namespace, "intruder", audiences=[CLUSTER])
    assert join_error(server, "kube-join", token) == (
        403,
        "kubernetes token did not match any allow rules",
    )


def test_empty_id_token_is_rejected(kube_join: tuple[StandIn, str]) -> None:
    server, _ = kube_join
    status, message = join_error(server, "kube-join", "")
    assert status == 400
    assert "IDToken not provided" in message
    assert server.instances() == []


# -- rule 8: the Kubernetes route to real API servers ------------------------------------------


def grant_namespace_reading(plane: ControlPlane, subject: k8s.RbacV1Subject, name: str) -> None:
    """A ClusterRole to list namespaces, bound to one subject only."""
    api = plane.admin_client()
    rbac = k8s.RbacAuthorizationV1Api(api)
    try:
        rbac.create_cluster_role(
            k8s.V1ClusterRole(
                metadata=k8s.V1ObjectMeta(name=name),
                rules=[
                    k8s.V1PolicyRule(
                        api_groups=[""], resources=["namespaces"], verbs=["get", "list", "watch"]
                    )
                ],
            )
        )
        rbac.create_cluster_role_binding(
            k8s.V1ClusterRoleBinding(
                metadata=k8s.V1ObjectMeta(name=name),
                role_ref=k8s.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=name
                ),
                subjects=[subject],
            )
        )
    finally:
        api.close()


@pytest.fixture(scope="module")
def routed(
    kube: ControlPlane, other_kube: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Two real API servers behind one stand-in: ``alpha`` (env=dev) on ``kube`` and ``beta``
    (env=prod, by a dynamic label) on ``other_kube``, ``gamma`` (env=staging) hidden by the
    roles. Namespace reading is granted on alpha to a group only, on beta to a user only."""
    suffix = uuid.uuid4().hex[:6]
    grant_namespace_reading(
        kube,
        k8s.RbacV1Subject(kind="Group", name=READERS_GROUP, api_group="rbac.authorization.k8s.io"),
        f"standin-readers-{suffix}",
    )
    grant_namespace_reading(
        other_kube,
        k8s.RbacV1Subject(kind="User", name="bot-argocd", api_group="rbac.authorization.k8s.io"),
        f"standin-readers-{suffix}",
    )
    marker = {}
    for name, plane in (("alpha", kube), ("beta", other_kube)):
        api = plane.admin_client()
        try:
            marker[name] = unique_namespace(api, prefix=f"only-{name}")
        finally:
            api.close()
    resources = [
        role_doc(
            "deployer",
            kubernetes_labels={"env": ["dev", "prod"]},
            kubernetes_groups=[READERS_GROUP],
        ),
        bot_doc("argocd", ["deployer"]),
        token_doc("join-once", "argocd"),
        kube_cluster_doc("alpha", kube, labels={"env": "dev"}, servers=2),
        kube_cluster_doc("beta", other_kube, labels={"team": "b"}, dynamic_labels={"env": "prod"}),
        kube_cluster_doc("gamma", kube, labels={"env": "staging"}),
    ]
    workdir = tmp_path_factory.mktemp("routed")
    with standin(resources, cluster_name=CLUSTER) as server:
        bot = web_join(server, "join-once")
        out = output_identity(server, bot, ["deployer"], workdir=workdir)
        yield {"server": server, "bot": bot, "out": out, "marker": marker, "workdir": workdir}


def namespaces(body: dict[str, Any]) -> set[str]:
    return {item["metadata"]["name"] for item in body["items"]}


def test_request_reaches_the_right_api_server_as_the_impersonated_group(
    routed: dict[str, Any],
) -> None:
    server: StandIn = routed["server"]
    response = kube_request(
        server, "alpha", "/api/v1/namespaces", identity=routed["out"], workdir=routed["workdir"]
    )
    assert response.status == 200, response.body
    names = namespaces(response.json())
    assert routed["marker"]["alpha"] in names
    assert routed["marker"]["beta"] not in names


def test_request_reaches_the_second_api_server_as_the_impersonated_user(
    routed: dict[str, Any],
) -> None:
    server: StandIn = routed["server"]
    response = kube_request(
        server, "beta", "/api/v1/namespaces", identity=routed["out"], workdir=routed["workdir"]
    )
    assert response.status == 200, response.body
    names = namespaces(response.json())
    assert routed["marker"]["beta"] in names
    assert routed["marker"]["alpha"] not in names


def test_upstream_sees_the_impersonated_identity_not_the_proxy(routed: dict[str, Any]) -> None:
    # The stand-in's own upstream credential is cluster-admin; secrets are refused only
    # because the request runs as the impersonated user and group.
    response = kube_request(
        routed["server"],
        "alpha",
        "/api/v1/namespaces/kube-system/secrets",
        identity=routed["out"],
        workdir=routed["workdir"],
    )
    assert response.status == 403
    assert 'User "bot-argocd" cannot list resource "secrets"' in response.json()["message"]


def test_watch_streams_through_the_route(routed: dict[str, Any]) -> None:
    # The API server keeps this watch open for a minute: the first event must arrive long
    # before, so the route flushes as the upstream writes. resourceVersion=0 lets the API
    # server answer from its watch cache at once (the test API server has no controllers
    # writing, so a consistent start could wait on a progress notification).
    started = time.monotonic()
    response = kube_request(
        routed["server"],
        "alpha",
        "/api/v1/namespaces?watch=1&resourceVersion=0&timeoutSeconds=60",
        identity=routed["out"],
        workdir=routed["workdir"],
        first_line=True,
    )
    assert response.status == 200
    event = json.loads(response.body)
    assert event["type"] == "ADDED", event
    assert time.monotonic() - started < 30


def test_route_differing_from_the_certificate_is_refused(routed: dict[str, Any]) -> None:
    response = kube_request(
        routed["server"],
        "alpha",
        "/api/v1/namespaces",
        identity=routed["out"],
        workdir=routed["workdir"],
        teleport_cluster="leaf",
    )
    assert response.status == 403
    assert response.json()["message"] == "existing route in identity may not be overwritten"


def test_cluster_not_allowed_by_the_roles_is_refused(routed: dict[str, Any]) -> None:
    response = kube_request(
        routed["server"],
        "gamma",
        "/api/v1/namespaces",
        identity=routed["out"],
        workdir=routed["workdir"],
    )
    assert response.status == 403
    assert response.json()["message"] == 'kubernetes cluster "gamma" not found'


def test_bot_identity_reaches_no_cluster(routed: dict[str, Any]) -> None:
    response = kube_request(
        routed["server"],
        "alpha",
        "/api/v1/namespaces",
        identity=routed["bot"],
        workdir=routed["workdir"],
    )
    assert response.status == 403


def test_client_impersonation_outside_the_roles_is_refused(routed: dict[str, Any]) -> None:
    response = kube_request(
        routed["server"],
        "alpha",
        "/api/v1/namespaces",
        identity=routed["out"],
        workdir=routed["workdir"],
        headers={"Impersonate-Group": "system:masters"},
    )
    assert response.status == 403
    assert "system:masters" in response.json()["message"]


def test_certificate_from_another_ca_is_refused(routed: dict[str, Any], tmp_path: Path) -> None:
    stranger = CertificateAuthority("not-teleport").issue("bot-argocd", client=True)
    identity = IssuedIdentity(stranger.cert_pem, stranger.key_pem, [])
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        kube_request(
            routed["server"], "alpha", "/api/v1/namespaces", identity=identity, workdir=tmp_path
        )


def test_no_client_certificate_is_refused(routed: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        kube_request(
            routed["server"], "alpha", "/api/v1/namespaces", identity=None, workdir=tmp_path
        )
