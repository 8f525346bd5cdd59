"""The cluster listing follows ListResources' pages to the last one (TELEPORT.md §3).

The Auth side is an in-process gRPC server on loopback (no API server, no other process: the
test sits in this tier for its sockets), paging like Teleport: at most ``Limit`` entries a page
in key order, ``NextKey`` the first key of the next page, empty on the last one. The client
under test is the agent's own ``AuthClient``, over TLS verified against a throw-away Host CA,
as it talks to Teleport. The stand-in's paging has its own Go unit tests, and the e2e tier lists
more clusters than one page through it.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream

from agent.teleport.auth import AuthClient, auth_server_name
from agent.teleport.model import KubeCluster
from agent.teleport.proto import authservice_pb2 as pb
from agent.teleport.proto import types_pb2
from agent.teleport.proto.authservice_grpc import AuthServiceBase
from tests.harness.kube import free_port
from tests.harness.pki import CertificateAuthority

CLUSTER = "root"


def kube_server(name: str, index: int, labels: dict[str, str]) -> pb.PaginatedResource:
    cluster = types_pb2.KubernetesClusterV3(
        Kind="kube_cluster", Metadata=types_pb2.Metadata(Name=name, Labels=labels)
    )
    return pb.PaginatedResource(
        KubernetesServer=types_pb2.KubernetesServerV3(
            Kind="kube_server",
            Metadata=types_pb2.Metadata(Name=f"{name}-{index}"),
            Spec=types_pb2.KubernetesServerSpecV3(Hostname=f"kube-{index}", Cluster=cluster),
        )
    )


class PagingAuth(AuthServiceBase):
    """ListResources over ``clusters`` (each carried by ``servers`` kube services), at most
    ``page_size`` entries a page (or the request's Limit, if smaller); every request is kept."""

    def __init__(self, clusters: list[str], *, servers: int, page_size: int) -> None:
        self.entries = sorted(
            (f"{name}/{i}", kube_server(name, i, {"n": name}))
            for name in clusters
            for i in range(servers)
        )
        self.page_size = page_size
        self.requests: list[pb.ListResourcesRequest] = []

    async def ListResources(self, stream: Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        assert request is not None
        self.requests.append(request)
        if request.Limit <= 0:
            raise GRPCError(Status.INVALID_ARGUMENT, "nonpositive parameter limit")
        size = min(self.page_size, request.Limit)
        rest = [e for e in self.entries if e[0] >= request.StartKey]
        page, after = rest[:size], rest[size:]
        await stream.send_message(
            pb.ListResourcesResponse(
                Resources=[resource for _, resource in page],
                NextKey=after[0][0] if after else "",
                TotalCount=len(self.entries),
            )
        )

    async def _unused(self, stream: Stream[Any, Any]) -> None:
        raise GRPCError(Status.UNIMPLEMENTED, "not part of this test")

    Ping = GenerateUserCerts = GetRole = GetClusterCACert = _unused


@pytest.fixture(scope="module")
def host_ca() -> CertificateAuthority:
    return CertificateAuthority("host-ca")


@pytest.fixture(scope="module")
def serving(
    host_ca: CertificateAuthority, tmp_path_factory: pytest.TempPathFactory
) -> ssl.SSLContext:
    """The Auth Service's TLS: a certificate for ``<hex(cluster)>.teleport.cluster.local`` from
    the Host CA, ALPN ``h2``."""
    name = auth_server_name(CLUSTER)
    cert, key = host_ca.issue(name, dns_names=(name,), server=True).write(
        tmp_path_factory.mktemp("auth"), "serving"
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2"])
    return ctx


def list_through(
    auth: PagingAuth, host_ca: CertificateAuthority, serving: ssl.SSLContext
) -> list[KubeCluster]:
    """Serve ``auth`` on loopback and list with an AuthClient holding a client certificate."""
    client_pair = host_ca.issue("bot-argocd", client=True)

    async def run() -> list[KubeCluster]:
        server = Server([auth])
        port = free_port()
        await server.start("127.0.0.1", port, ssl=serving)
        try:
            async with AuthClient(
                f"127.0.0.1:{port}",
                cluster_name=CLUSTER,
                host_ca_pem=(host_ca.cert_pem,),
                cert_pem=client_pair.cert_pem,
                key_pem=client_pair.key_pem,
            ) as client:
                return await client.list_kube_clusters()
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(run())


def names(clusters: list[KubeCluster]) -> list[str]:
    return [c.name for c in clusters]


@pytest.mark.parametrize(
    "case",
    [(3, 1, 10, 1), (4, 1, 4, 1), (5, 1, 4, 2), (10, 2, 3, 7)],
    ids=[
        "everything on one page",
        "exactly one full page",
        "one cluster over a page",
        "many pages, a cluster's kube services split across pages",
    ],
)
def test_every_page_is_listed_and_each_cluster_once(
    host_ca: CertificateAuthority, serving: ssl.SSLContext, case: tuple[int, int, int, int]
) -> None:
    clusters, servers, page_size, pages = case
    wanted = [f"kc-{i:02d}" for i in range(clusters)]
    auth = PagingAuth(wanted, servers=servers, page_size=page_size)
    listed = list_through(auth, host_ca, serving)
    assert names(listed) == wanted
    assert all(c.labels == {"n": c.name} for c in listed)
    assert len(auth.requests) == pages
    # Each request starts where the previous page said the next one starts.
    starts = [r.StartKey for r in auth.requests]
    assert starts[0] == ""
    assert starts[1:] == [auth.entries[page_size * i][0] for i in range(1, pages)]
    assert all(r.Limit > 0 and r.ResourceType == "kube_server" for r in auth.requests)
