"""The Teleport client's pure parts: routing names, certificate subjects, error mapping,
listing pages, and the bot identity lifecycle with the network steps replaced."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpclib.const import Status

from agent.config import parse_config
from agent.teleport import errors as E
from agent.teleport.auth import (
    auth_alpn,
    auth_server_name,
    kube_clusters_from_page,
    map_status,
    map_tls_alert,
)
from agent.teleport.client import SPARE_MAX_AGE, TeleportClient
from agent.teleport.model import (
    OID_BOT_INSTANCE,
    OID_BOT_NAME,
    OID_GENERATION,
    OID_RENEWABLE,
    OID_TELEPORT_CLUSTER,
    BotIdentity,
    Credential,
    KubeCluster,
    ProxySettings,
    split_address,
    split_pem_certificates,
)
from agent.teleport.proto import authservice_pb2 as pb
from agent.teleport.proto import types_pb2
from agent.teleport.storage import MemoryStore
from agent.teleport.webapi import _error_message


def teleport_cert(
    *,
    generation: int = 0,
    instance: str = "inst-1",
    age: dt.timedelta = dt.timedelta(hours=1),
    life: dt.timedelta = dt.timedelta(hours=1),
    cluster: str = "root",
) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [
        x509.NameAttribute(NameOID.COMMON_NAME, "bot-argocd"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bot-argocd"),
        x509.NameAttribute(OID_TELEPORT_CLUSTER, cluster),
        x509.NameAttribute(OID_RENEWABLE, "true"),
        x509.NameAttribute(OID_BOT_NAME, "argocd"),
        x509.NameAttribute(OID_BOT_INSTANCE, instance),
    ]
    if generation:
        attrs.append(x509.NameAttribute(OID_GENERATION, str(generation)))
    name = x509.Name(attrs)
    # The real clock, not an import-time constant: the client compares ages with now.
    start = dt.datetime.now(dt.UTC) - age
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "user-ca")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - dt.timedelta(minutes=1))
        .not_valid_after(start + life)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def identity(**kwargs: object) -> BotIdentity:
    cert, key = teleport_cert(**kwargs)  # type: ignore[arg-type]
    return BotIdentity.from_pem(cert, key, (b"HOST-CA",))


# -- routing names ------------------------------------------------------------------------


def test_auth_route_names_are_hex_of_the_cluster_name():
    assert auth_server_name("root") == "726f6f74.teleport.cluster.local"
    assert auth_alpn("root") == [
        "teleport-auth@726f6f74.teleport.cluster.local",
        "h2",
    ]


def test_addresses_split_with_default_port():
    assert split_address("teleport.example.com:443") == ("teleport.example.com", 443)
    assert split_address("auth", 3025) == ("auth", 3025)
    assert split_address("[::1]:3080") == ("::1", 3080)


# -- certificates -------------------------------------------------------------------------


def test_bot_identity_is_read_from_the_certificate_subject():
    bot = identity(generation=3, instance="abc")
    assert (bot.username, bot.bot_name, bot.cluster_name) == ("bot-argocd", "argocd", "root")
    assert (bot.instance_id, bot.generation, bot.renewable) == ("abc", 3, True)
    assert "key_pem" not in repr(bot)
    assert "PRIVATE" not in str(bot.describe())


def test_generation_is_zero_when_absent():
    assert identity().generation == 0


def test_concatenated_ca_certificates_split_into_blocks():
    one, _ = teleport_cert()
    two, _ = teleport_cert()
    assert split_pem_certificates(one + two) == (one, two)
    assert split_pem_certificates(b"") == ()


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "status", "message", "kind"),
    [
        (E.Operation.RENEW, Status.PERMISSION_DENIED, "cert generation mismatch", E.BotLocked),
        (
            E.Operation.LIST_CLUSTERS,
            Status.PERMISSION_DENIED,
            'lock targeting User:"bot-a" is in force',
            E.BotLocked,
        ),
        (
            E.Operation.ISSUE,
            Status.PERMISSION_DENIED,
            "not allowed to impersonate",
            E.RoleNotImpersonable,
        ),
        (
            E.Operation.REJOIN,
            Status.PERMISSION_DENIED,
            "kubernetes token did not match any allow rules",
            E.JoinRejected,
        ),
        (E.Operation.REJOIN, Status.INVALID_ARGUMENT, "empty id_token", E.JoinRejected),
        (
            E.Operation.PING,
            Status.NOT_FOUND,
            'auth server for "x" cluster name not found',
            E.WrongAddress,
        ),
        (E.Operation.LIST_CLUSTERS, Status.UNAVAILABLE, "down", E.TeleportUnavailable),
        (E.Operation.LIST_CLUSTERS, Status.FAILED_PRECONDITION, "retry", E.TeleportUnavailable),
        (E.Operation.GET_ROLE, Status.UNKNOWN, "boom", E.TeleportError),
        (E.Operation.GET_ROLE, Status.PERMISSION_DENIED, "not allowed", E.TeleportError),
        (E.Operation.RENEW, Status.PERMISSION_DENIED, "access denied", E.BotDeleted),
        (E.Operation.REJOIN, Status.PERMISSION_DENIED, "access denied", E.BotDeleted),
        (E.Operation.GET_ROLE, Status.PERMISSION_DENIED, "access denied", E.BotDeleted),
    ],
)
def test_grpc_status_maps_to_an_error_that_says_what_to_do(operation, status, message, kind):
    error = map_status(operation, status, message)
    assert type(error) is kind
    assert message in str(error)
    assert str(error).startswith(operation)


def test_a_deleted_bot_says_what_happened_and_how_to_resume():
    error = map_status(E.Operation.RENEW, Status.PERMISSION_DENIED, "access denied")
    assert error.summary == "bot deleted"
    assert "writes nothing more" in str(error)
    assert "create the bot again" in str(error)
    # Other refusals that start the same way keep their own meaning.
    expired = "access denied: client credentials have expired, please relogin."
    assert type(map_status(E.Operation.RENEW, Status.PERMISSION_DENIED, expired)) is not (
        E.BotDeleted
    )


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("SSLV3_ALERT_CERTIFICATE_EXPIRED", E.IdentityExpired),
        ("TLSV1_ALERT_UNKNOWN_CA", E.UntrustedCertificate),
        ("TLSV1_ALERT_NO_APPLICATION_PROTOCOL", E.WrongAddress),
        ("WRONG_VERSION_NUMBER", E.WrongAddress),
    ],
)
def test_tls_alerts_map_to_errors(reason, kind):
    assert type(map_tls_alert(E.Operation.RENEW, "proxy:443", reason)) is kind


def test_web_error_bodies_give_their_message():
    assert _error_message(b'{"error": {"message": "token expired or not found"}}') == (
        "token expired or not found"
    )
    assert _error_message(b'{"message": "flat"}') == "flat"
    assert _error_message(b"plain text") == "plain text"


# -- listing ------------------------------------------------------------------------------


def _server(name: str, labels: dict[str, str], dynamic: dict[str, str]) -> pb.PaginatedResource:
    cluster = types_pb2.KubernetesClusterV3(
        Kind="kube_cluster",
        Metadata=types_pb2.Metadata(Name=name, Labels=labels),
        Spec=types_pb2.KubernetesClusterSpecV3(
            DynamicLabels={k: types_pb2.CommandLabelV2(Result=v) for k, v in dynamic.items()}
        ),
    )
    return pb.PaginatedResource(
        KubernetesServer=types_pb2.KubernetesServerV3(
            Kind="kube_server", Spec=types_pb2.KubernetesServerSpecV3(Cluster=cluster)
        )
    )


def test_a_page_merges_static_and_dynamic_labels():
    page = pb.ListResourcesResponse(
        Resources=[_server("a", {"env": "prod"}, {"zone": "eu"}), _server("b", {}, {})]
    )
    decoded = pb.ListResourcesResponse.FromString(page.SerializeToString())
    assert kube_clusters_from_page(decoded) == [
        KubeCluster("a", {"env": "prod", "zone": "eu"}),
        KubeCluster("b", {}),
    ]


def test_kube_server_is_field_7_of_paginated_resource():
    wire = _server("a", {}, {}).SerializeToString()
    assert wire[0] == (7 << 3) | 2  # field 7, length-delimited


def test_user_certs_request_uses_the_contract_field_numbers():
    request = pb.UserCertsRequest(
        Username="bot-a",
        RouteToCluster="root",
        RoleRequests=["r"],
        UseRoleRequests=True,
        SSHPublicKey=b"s",
        TLSPublicKey=b"t",
    )
    fields = {f.number for f, _ in request.ListFields()}
    assert fields == {2, 5, 12, 14, 22, 23}


# -- lifecycle ----------------------------------------------------------------------------

PROXY = ProxySettings("root", "proxy.test:443", tls_routing=True)


class Steps:
    """Stands in for the network steps; records what the client did, in order."""

    def __init__(self, client: TeleportClient, store: MemoryStore) -> None:
        self.calls: list[str] = []
        self.generation = 1
        client._proxy = PROXY
        client._host_ca = (b"HOST-CA",)
        client._join_web = self.join  # type: ignore[method-assign]
        client._run = lambda make: make()  # type: ignore[method-assign,assignment,return-value]
        client._renew = self.renew  # type: ignore[method-assign,assignment]
        client._rejoin = self.rejoin  # type: ignore[method-assign,assignment]
        self.store = store

    def join(self, proxy: ProxySettings) -> BotIdentity:
        self.calls.append("join")
        return identity(age=dt.timedelta(0), instance="new")

    def renew(self, bot: BotIdentity, proxy: ProxySettings) -> BotIdentity:
        self.calls.append(f"renew from {bot.generation}")
        self.generation = bot.generation + 1
        return identity(generation=self.generation, age=dt.timedelta(0), instance=bot.instance_id)

    def rejoin(self, bot: BotIdentity, proxy: ProxySettings) -> BotIdentity:
        self.calls.append("rejoin")
        return identity(
            generation=bot.generation + 1, age=dt.timedelta(0), instance=bot.instance_id
        )


def make_client(method: str = "token", *, read_only: bool = False):
    config = parse_config(
        {
            "proxy_server": "proxy.test:443",
            "onboarding": {"join_method": method, "token": "t"},
            "storage": {"type": "kubernetes_secret", "name": "id"}
            if method == "token"
            else {"type": "memory"},
            "services": [{"type": "kubernetes/argo-cd", "selectors": [{"name": "a"}]}],
        }
    )
    store = MemoryStore()
    client = TeleportClient(config, store=store, read_only=read_only)
    return client, store, Steps(client, store)


def test_token_join_saves_the_identity_before_using_it():
    client, store, steps = make_client()
    bot = client.bot_identity()
    assert steps.calls == ["join"]
    assert store.load() is bot


def test_a_restart_continues_from_the_stored_identity():
    client, store, steps = make_client()
    store.save(identity(generation=4, instance="kept", age=dt.timedelta(minutes=10)))
    bot = client.bot_identity()
    assert steps.calls == ["renew from 4"]
    assert (bot.instance_id, bot.generation) == ("kept", 5)
    assert store.load() is bot


def test_an_identity_that_could_not_be_saved_is_saved_before_anything_else():
    client, store, steps = make_client()
    store.save(identity(generation=4, age=dt.timedelta(minutes=10)))
    failing = [True]
    real_save = store.save

    def save(bot: BotIdentity) -> None:
        if failing.pop(0) if failing else False:
            raise E.TeleportError(E.Operation.SAVE_IDENTITY, "API server down")
        real_save(bot)

    store.save = save  # type: ignore[method-assign]
    with pytest.raises(E.TeleportError, match="API server down"):
        client.bot_identity()
    # The next call stores generation 5 first and does not renew from 4 again.
    bot = client.bot_identity()
    assert steps.calls == ["renew from 4"]
    assert bot.generation == 5
    assert store.load() is bot


def test_a_fresh_identity_is_not_renewed_twice_in_one_step():
    client, _, steps = make_client()
    first = client.bot_identity()
    assert client.bot_identity() is first
    assert steps.calls == ["join"]


def test_the_credential_issued_for_the_listing_serves_the_renewal_right_after_it():
    client, _, _ = make_client()
    now = [dt.datetime.now(dt.UTC)]
    client._clock = lambda: now[0]
    issued: list[dt.timedelta] = []

    def issue(bot: BotIdentity, ttl: dt.timedelta) -> Credential:
        issued.append(ttl)
        return Credential(b"CERT-%d" % len(issued), b"KEY", (b"CA",), "bot", now[0] + ttl)

    client._issue_output = issue  # type: ignore[method-assign,assignment]
    client._list = lambda credential: []  # type: ignore[method-assign,assignment,return-value]
    ttl = client._config.credential_ttl

    client.list_clusters()
    assert client.issue_credential(ttl).cert_pem == b"CERT-1"  # start-up: one issue, not two
    assert client.issue_credential(ttl).cert_pem == b"CERT-2"  # handed out once only
    client._listing = None
    client.list_clusters()
    assert client.issue_credential(ttl * 2).cert_pem == b"CERT-4"  # another TTL: its own
    client._listing = None
    client.list_clusters()
    now[0] += SPARE_MAX_AGE
    assert client.issue_credential(ttl).cert_pem == b"CERT-6"  # too old to hand out
    assert len(issued) == 6


def test_kubernetes_method_rejoins_while_valid_and_joins_after_expiry():
    client, store, steps = make_client("kubernetes")
    store.save(identity(age=dt.timedelta(minutes=30)))
    client.bot_identity()
    assert steps.calls == ["rejoin"]
    client._bot = identity(age=dt.timedelta(hours=2))  # expired an hour ago
    client.bot_identity()
    assert steps.calls == ["rejoin", "join"]


def test_read_only_never_spends_the_token_nor_renews():
    client, store, steps = make_client(read_only=True)
    with pytest.raises(E.IdentityExpired, match="never spend the one-time join token"):
        client.bot_identity()
    stored = identity(generation=2, age=dt.timedelta(minutes=10))
    store.save(stored)
    client._loaded = False
    assert client.bot_identity() is stored
    assert steps.calls == []


def test_expired_token_identity_with_a_spent_token_says_what_to_do():
    client, store, _steps = make_client()
    store.save(identity(age=dt.timedelta(hours=2)))

    def refused(proxy: ProxySettings) -> BotIdentity:
        raise E.JoinRejected(E.Operation.JOIN, "token expired or not found")

    client._join_web = refused  # type: ignore[method-assign]
    with pytest.raises(E.IdentityExpired, match="Create a new join token"):
        client.bot_identity()


def test_identity_for_another_cluster_is_refused():
    client, store, _ = make_client()
    store.save(identity(cluster="other", age=dt.timedelta(minutes=10)))
    with pytest.raises(E.TeleportError, match="is for the cluster 'other'"):
        client.bot_identity()


def test_a_locked_instance_reports_the_lock_until_a_new_token_joins_a_new_instance():
    client, store, steps = make_client()
    store.save(identity(generation=4, instance="locked", age=dt.timedelta(minutes=10)))

    def locked(bot: BotIdentity, proxy: ProxySettings) -> BotIdentity:
        raise E.BotLocked(E.Operation.RENEW, "lock targeting BotInstanceID:locked is in force")

    def spent(proxy: ProxySettings) -> BotIdentity:
        steps.calls.append("join refused")
        raise E.JoinRejected(E.Operation.JOIN, "token expired or not found")

    client._renew = locked  # type: ignore[method-assign,assignment]
    client._join_web = spent  # type: ignore[method-assign]
    # The token file still holds the spent token: the lock is what is reported.
    with pytest.raises(E.BotLocked, match="is in force"):
        client.bot_identity()
    assert store.load().instance_id == "locked"  # type: ignore[union-attr]
    # An administrator put a new token there: a new instance, saved before it is used.
    client._join_web = steps.join  # type: ignore[method-assign]
    bot = client.bot_identity()
    assert steps.calls == ["join refused", "join"]
    assert bot.instance_id == "new"
    assert store.load() is bot


def test_a_refused_kubernetes_rejoin_names_the_token_and_how_long_the_identity_lasts():
    client, store, _ = make_client("kubernetes")
    store.save(identity(age=dt.timedelta(minutes=30)))

    def refused(bot: BotIdentity, proxy: ProxySettings) -> BotIdentity:
        raise E.JoinRejected(
            E.Operation.REJOIN, "Teleport rejected the re-join: token expired or not found"
        )

    client._rejoin = refused  # type: ignore[method-assign,assignment]
    with pytest.raises(E.JoinRejected) as caught:
        client.bot_identity()
    assert "token expired or not found" in caught.value.message
    assert "check that the join token 't' still exists (tctl get token/t)" in caught.value.message
    assert "stays valid until" in caught.value.message


class _Web:
    def __init__(self, host_ca: tuple[bytes, ...]) -> None:
        self.host_ca_pems = host_ca

    def host_ca(self) -> tuple[bytes, ...]:
        return self.host_ca_pems


def test_an_auth_call_is_retried_once_with_the_host_ca_the_proxy_serves_now():
    client, _, _ = make_client()
    client = TeleportClient(client._config)
    client._host_ca = (b"OLD",)
    client._web = _Web((b"NEW", b"OLD"))  # type: ignore[assignment]
    trusted: list[tuple[bytes, ...]] = []

    async def call() -> str:
        trusted.append(client._host_ca)
        if b"NEW" not in client._host_ca:
            raise E.UntrustedCertificate(E.Operation.LIST_CLUSTERS, "Host CA does not verify")
        return "answer"

    # Rotated in Teleport while the agent ran: trust what the proxy serves now, try once more.
    assert client._run(call) == "answer"
    assert trusted == [(b"OLD",), (b"NEW", b"OLD")]
    # Not a rotation (the proxy serves what is already trusted): the error stands, no loop.
    client._host_ca = (b"OTHER",)
    client._web = _Web((b"OTHER",))  # type: ignore[assignment]
    with pytest.raises(E.UntrustedCertificate):
        client._run(call)


# -- the server prefix the chart's admission policy allows ---------------------------------


def prefix_client(allowed: str) -> TeleportClient:
    config = parse_config(
        {
            "proxy_server": "proxy.test:443",
            "onboarding": {"token": "t"},
            "allowed_server_prefix": allowed,
            "services": [{"type": "kubernetes/argo-cd", "selectors": [{"name": "a"}]}],
        }
    )
    client = TeleportClient(config)
    client._proxy_answers_tls = True  # no load balancer test handshake: no network here
    return client


@pytest.mark.parametrize(
    "proxy",
    [
        PROXY,
        ProxySettings("root", "web.test:443", tls_routing=False, kube_public_addr="proxy.test:443"),
    ],
    ids=["tls-routing", "kube-listener"],
)
def test_the_address_the_policy_allows_passes(proxy):
    client = prefix_client("https://proxy.test:443/v1/teleport/")
    client._web.find = lambda: proxy  # type: ignore[method-assign]
    assert client.proxy_settings() is proxy


def test_an_advertised_address_the_policy_refuses_is_one_error_naming_the_chart_value():
    client = prefix_client("https://teleport.example.com:443/v1/teleport/")
    client._web.find = lambda: PROXY  # type: ignore[method-assign]
    with pytest.raises(E.ServerNotAllowed) as refused:
        client.proxy_settings()
    message = str(refused.value)
    assert "admissionPolicy.proxyPublicAddress to proxy.test:443" in message
    assert "https://teleport.example.com:443/v1/teleport/" in message


@pytest.mark.parametrize(
    "value",
    [
        "http://proxy.test:443/v1/teleport/",
        "https://proxy.test:443/",
        "https:///v1/teleport/",
        "https://proxy.test:443/x/v1/teleport/",
    ],
)
def test_allowed_server_prefix_must_be_a_proxy_address_prefix(value):
    with pytest.raises(Exception, match="allowed_server_prefix"):
        prefix_client(value)
