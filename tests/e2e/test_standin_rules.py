"""The Teleport stand-in's rules that need real API servers (rules 2 and 8 of its contract).

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
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.harness.kube import ControlPlane, control_plane, pod_bound_token, unique_namespace
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
    ``<namespace>:agent``; yields it and the namespace (which also has an ``intruder``)."""
    namespace = unique_namespace(admin_api, prefix="join")
    for account in ("agent", "intruder"):
        k8s.CoreV1Api(admin_api).create_namespaced_service_account(
            namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name=account))
        )
    resources = [
        role_doc("access", kubernetes_labels={"*": "*"}),
        bot_doc("argocd", ["access"]),
        kubernetes_token_doc(
            "kube-join", "argocd", jwks=kube.jwks(), service_accounts=[f"{namespace}:agent"]
        ),
    ]
    with standin(resources, cluster_name=CLUSTER) as server:
        yield server, namespace


def test_pod_bound_token_from_the_api_server_joins(
    kube_join: tuple[StandIn, str], admin_api: k8s.ApiClient
) -> None:
    server, namespace = kube_join
    token = pod_bound_token(admin_api, namespace, audiences=[CLUSTER])
    bot = web_join(server, "kube-join", id_token=token)
    subject = {a.oid.dotted_string: a.value for a in bot.certificate.subject}
    assert subject["2.5.4.3"] == "bot-argocd"
    assert "1.3.9999.1.13" not in subject  # kubernetes joins are not renewable
    # The token is reusable: a second join works and makes a second bot instance.
    web_join(server, "kube-join", id_token=token)
    assert [i["join_method"] for i in server.instances()] == ["kubernetes", "kubernetes"]


def token_from_another_api_server(other_kube: ControlPlane, namespace: str) -> str:
    """A token from ``other_kube`` for the same namespace and account name, so only the signing
    key differs."""
    api = other_kube.admin_client()
    try:
        core = k8s.CoreV1Api(api)
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
        core.create_namespaced_service_account(
            namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="agent"))
        )
        return pod_bound_token(api, namespace, audiences=[CLUSTER])
    finally:
        api.close()


# Each refusal: how the id_token is made, then Teleport's HTTP status and message (a part of it
# where the rest is the JWT library's wording).
JoinToken = Callable[[k8s.ApiClient, ControlPlane, str], str]
REFUSED_JOINS: dict[str, tuple[JoinToken, int, str]] = {
    "token signed by another API server": (
        lambda api, other, ns: token_from_another_api_server(other, ns),
        500,
        "reviewing kubernetes token with static_jwks: validating jwt signature",
    ),
    "token without the cluster in its audience": (
        lambda api, other, ns: pod_bound_token(
            api, ns, audiences=["https://kubernetes.default.svc"]
        ),
        500,
        "validating jwt claims",
    ),
    "token not bound to a pod": (
        lambda api, other, ns: pod_bound_token(api, ns, audiences=[CLUSTER], bind_pod=False),
        400,
        "reviewing kubernetes token with static_jwks: static_jwks joining requires the use "
        "of projected pod bound service account token",
    ),
    "token living longer than 30 minutes": (
        lambda api, other, ns: pod_bound_token(api, ns, audiences=[CLUSTER], seconds=31 * 60),
        400,
        "with a TTL of less than 30m0s",
    ),
    "service account outside the allow rules": (
        lambda api, other, ns: pod_bound_token(api, ns, "intruder", audiences=[CLUSTER]),
        403,
        "kubernetes token did not match any allow rules",
    ),
    "empty id_token": (lambda api, other, ns: "", 400, "IDToken not provided"),
}


@pytest.mark.parametrize("case", list(REFUSED_JOINS))
def test_kubernetes_join_is_refused(
    case: str,
    kube_join: tuple[StandIn, str],
    admin_api: k8s.ApiClient,
    other_kube: ControlPlane,
) -> None:
    make_token, status, message = REFUSED_JOINS[case]
    server, namespace = kube_join
    refused_status, refused_message = join_error(
        server, "kube-join", make_token(admin_api, other_kube, namespace)
    )
    assert refused_status == status
    assert message in refused_message
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


@pytest.mark.parametrize(
    ("cluster", "seen", "hidden"),
    [("alpha", "alpha", "beta"), ("beta", "beta", "alpha")],
    ids=[
        "alpha, as the impersonated group (the only subject allowed to read there)",
        "beta, as the impersonated user (the only subject allowed to read there)",
    ],
)
def test_request_reaches_the_right_api_server(
    routed: dict[str, Any], cluster: str, seen: str, hidden: str
) -> None:
    response = kube_request(
        routed["server"],
        cluster,
        "/api/v1/namespaces",
        identity=routed["out"],
        workdir=routed["workdir"],
    )
    assert response.status == 200, response.body
    names = namespaces(response.json())
    assert routed["marker"][seen] in names
    assert routed["marker"][hidden] not in names


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


# Each refusal: the cluster, the path, which identity (``out`` or ``bot``), extra request
# options, and the status with the message (None: any message).
REFUSED_ROUTES: dict[str, tuple[str, str, str, dict[str, Any], int, str | None]] = {
    # The stand-in's own upstream credential is cluster-admin; secrets are refused only
    # because the request runs as the impersonated user and group.
    "upstream sees the impersonated identity, not the proxy's": (
        "alpha",
        "/api/v1/namespaces/kube-system/secrets",
        "out",
        {},
        403,
        'User "bot-argocd" cannot list resource "secrets"',
    ),
    "route differing from the certificate's": (
        "alpha",
        "/api/v1/namespaces",
        "out",
        {"teleport_cluster": "leaf"},
        403,
        "existing route in identity may not be overwritten",
    ),
    "cluster the roles do not allow": (
        "gamma",
        "/api/v1/namespaces",
        "out",
        {},
        403,
        'kubernetes cluster "gamma" not found',
    ),
    "bot identity, which reaches no cluster": ("alpha", "/api/v1/namespaces", "bot", {}, 403, None),
    "client impersonation outside the roles": (
        "alpha",
        "/api/v1/namespaces",
        "out",
        {"headers": {"Impersonate-Group": "system:masters"}},
        403,
        "system:masters",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED_ROUTES))
def test_kubernetes_route_refuses(routed: dict[str, Any], case: str) -> None:
    cluster, path, identity, options, status, message = REFUSED_ROUTES[case]
    response = kube_request(
        routed["server"],
        cluster,
        path,
        identity=routed[identity],
        workdir=routed["workdir"],
        **options,
    )
    assert response.status == status, response.body
    if message is not None:
        assert message in response.json()["message"]


def stranger() -> IssuedIdentity:
    """A certificate for the bot's user name from a CA Teleport does not know."""
    pair = CertificateAuthority("not-teleport").issue("bot-argocd", client=True)
    return IssuedIdentity(pair.cert_pem, pair.key_pem, [])


@pytest.mark.parametrize(
    "identity",
    [stranger, lambda: None],
    ids=["certificate from another CA", "no client certificate"],
)
def test_handshake_without_a_teleport_certificate_is_refused(
    routed: dict[str, Any], identity: Callable[[], IssuedIdentity | None], tmp_path: Path
) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        kube_request(
            routed["server"], "alpha", "/api/v1/namespaces", identity=identity(), workdir=tmp_path
        )
