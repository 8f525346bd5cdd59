"""gRPC to the Teleport Auth Service (TELEPORT.md §1, §3, §5, §6, §8), with grpclib.

Through the proxy's one port, Auth is reached by offering the ALPN list
``teleport-auth@<hex(cluster)>.teleport.cluster.local``, ``h2`` with the SNI
``<hex(cluster)>.teleport.cluster.local``. The server certificate is verified against the
cluster's Host CA and the client certificate is a bot or output identity. grpclib takes the
caller's ``SSLContext`` as it is (grpcio cannot set the ALPN list), so the context built here
decides all of that.

Failures are mapped to ``agent.teleport.errors`` here, so callers never see grpclib's types.
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Callable
from types import TracebackType
from typing import Any

from google.protobuf import empty_pb2, timestamp_pb2
from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.const import Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError
from grpclib.protocol import H2Protocol

from agent.teleport.egress import EgressProxy, EgressProxyError, open_tunnel_async, proxy_for
from agent.teleport.errors import (
    BotDeleted,
    BotLocked,
    IdentityExpired,
    JoinRejected,
    Operation,
    ProxyUnreachable,
    RoleNotImpersonable,
    TeleportError,
    TeleportUnavailable,
    UntrustedCertificate,
    WrongAddress,
)
from agent.teleport.keys import pem_file
from agent.teleport.model import IssuedCerts, KubeCluster, split_address
from agent.teleport.proto import authservice_pb2 as pb
from agent.teleport.proto import types_pb2
from agent.teleport.proto.authservice_grpc import AuthServiceStub, JoinServiceStub

__all__ = [
    "AuthClient",
    "auth_alpn",
    "auth_server_name",
    "auth_ssl_context",
    "kube_clusters_from_page",
]

CALL_TIMEOUT = 30.0
PAGE_SIZE = 500
# Signature suites as Ping reports them (the enum of TELEPORT.md §3).


def auth_server_name(cluster_name: str) -> str:
    """The Auth Service's SNI and certificate name: ``<hex(cluster)>.teleport.cluster.local``."""
    return f"{cluster_name.encode().hex()}.teleport.cluster.local"


def auth_alpn(cluster_name: str) -> list[str]:
    """Through the proxy's one port, the first ALPN entry routes the connection to Auth."""
    return [f"teleport-auth@{auth_server_name(cluster_name)}", "h2"]


def auth_ssl_context(
    *,
    cluster_name: str,
    host_ca_pem: tuple[bytes, ...],
    cert_pem: bytes | None,
    key_pem: bytes | None,
) -> ssl.SSLContext:
    """TLS to Auth: trust only the Host CA, present the identity, offer the routing ALPN."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ctx.load_verify_locations(cadata=b"".join(host_ca_pem).decode())
    except ssl.SSLError as exc:
        raise UntrustedCertificate(
            Operation.CONNECT_TO_AUTH, f"the Host CA is not valid PEM: {exc}"
        ) from None
    if cert_pem is not None and key_pem is not None:
        with pem_file(cert_pem) as cert_path, pem_file(key_pem) as key_path:
            ctx.load_cert_chain(cert_path, key_path)
    ctx.set_alpn_protocols(auth_alpn(cluster_name))
    return ctx


def kube_clusters_from_page(response: pb.ListResourcesResponse) -> list[KubeCluster]:
    """Clusters in one ListResources page: static labels plus dynamic label results."""
    out = []
    for item in response.Resources:
        kind = item.WhichOneof("resource")
        if kind == "KubernetesServer":
            cluster = item.KubernetesServer.Spec.Cluster
        elif kind == "KubeCluster":
            cluster = item.KubeCluster
        else:
            continue
        labels = dict(cluster.Metadata.Labels)
        for key, dynamic in cluster.Spec.DynamicLabels.items():
            labels[key] = dynamic.Result
        if cluster.Metadata.Name:
            out.append(KubeCluster(cluster.Metadata.Name, labels))
    return out


def _timestamp(when: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when.astimezone(dt.UTC).replace(tzinfo=None))
    return stamp


def _certs(answer: pb.Certs) -> IssuedCerts:
    return IssuedCerts(
        tls_cert_pem=bytes(answer.TLS),
        ssh_cert=bytes(answer.SSH),
        tls_ca_certs_pem=tuple(bytes(c) for c in answer.TLSCACerts),
        ssh_ca_certs=tuple(bytes(c) for c in answer.SSHCACerts),
    )


# Seconds for the egress proxy to open a CONNECT tunnel.
TUNNEL_TIMEOUT = 15.0


class _TunnelledChannel(Channel):
    """A grpclib channel whose connection runs inside a CONNECT tunnel through the egress
    proxy. grpclib dials with ``loop.create_connection(host, port)``; this one hands it the
    tunnelled socket instead, and TLS (SNI, ALPN, the Host CA) is with Teleport as before."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        egress: EgressProxy,
        ssl: ssl.SSLContext,
        config: Configuration,
    ) -> None:
        super().__init__(host, port, ssl=ssl, config=config)
        self._egress = egress
        self._target = (host, port)

    async def _create_connection(self) -> H2Protocol:
        sock = await open_tunnel_async(self._egress, *self._target, timeout=TUNNEL_TIMEOUT)
        _, protocol = await self._loop.create_connection(
            self._protocol_factory,
            sock=sock,
            ssl=self._ssl,
            server_hostname=self._config.ssl_target_name_override,
        )
        return protocol


class AuthClient:
    """One authenticated connection to Auth; use as ``async with``.

    ``addr`` is the proxy's public web address (``proxy_server``).
    """

    def __init__(
        self,
        addr: str,
        *,
        cluster_name: str,
        host_ca_pem: tuple[bytes, ...],
        cert_pem: bytes | None,
        key_pem: bytes | None,
    ) -> None:
        self.addr = addr
        self._host, self._port = split_address(addr, 3025)
        self._ctx = auth_ssl_context(
            cluster_name=cluster_name,
            host_ca_pem=host_ca_pem,
            cert_pem=cert_pem,
            key_pem=key_pem,
        )
        self._server_name = auth_server_name(cluster_name)
        self._channel: Channel | None = None
        # Resolved once per client: the environment of a running agent does not change.
        try:
            self._egress = proxy_for(self._host, self._port)
        except EgressProxyError as exc:
            raise ProxyUnreachable(Operation.CONNECT_TO_AUTH, str(exc)) from None

    async def __aenter__(self) -> AuthClient:
        config = Configuration(ssl_target_name_override=self._server_name)
        if self._egress is None:
            self._channel = Channel(self._host, self._port, ssl=self._ctx, config=config)
        else:
            self._channel = _TunnelledChannel(
                self._host, self._port, egress=self._egress, ssl=self._ctx, config=config
            )
        self._auth = AuthServiceStub(self._channel)
        self._join = JoinServiceStub(self._channel)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    # -- calls ------------------------------------------------------------------------------

    async def generate_user_certs(
        self,
        *,
        username: str,
        expires: dt.datetime,
        tls_public_key: bytes,
        ssh_public_key: bytes,
        route_to_cluster: str = "",
        role_requests: tuple[str, ...] = (),
    ) -> IssuedCerts:
        request = pb.UserCertsRequest(
            Username=username,
            Expires=_timestamp(expires),
            RouteToCluster=route_to_cluster,
            RoleRequests=list(role_requests),
            UseRoleRequests=bool(role_requests),
            SSHPublicKey=ssh_public_key,
            TLSPublicKey=tls_public_key,
        )
        operation = Operation.ISSUE if role_requests else Operation.RENEW
        return _certs(await self._call(operation, self._auth.GenerateUserCerts, request))

    async def impersonable_roles(self, bot_role: str) -> tuple[str, ...]:
        role = await self._call(
            Operation.GET_ROLE, self._auth.GetRole, pb.GetRoleRequest(Name=bot_role)
        )
        return tuple(role.Spec.Allow.Impersonate.Roles)

    async def host_ca(self) -> bytes:
        answer = await self._call(
            Operation.GET_HOST_CA, self._auth.GetClusterCACert, empty_pb2.Empty()
        )
        return bytes(answer.TLSCA)

    async def list_kube_clusters(self) -> list[KubeCluster]:
        """Every visible Kubernetes cluster, all pages, de-duplicated by name."""
        by_name: dict[str, KubeCluster] = {}
        start_key = ""
        for _ in range(100_000):  # a bound, so a server that repeats a key cannot loop forever
            page = await self._call(
                Operation.LIST_CLUSTERS,
                self._auth.ListResources,
                pb.ListResourcesRequest(
                    ResourceType="kube_server",
                    Namespace="default",
                    Limit=PAGE_SIZE,
                    StartKey=start_key,
                ),
            )
            for cluster in kube_clusters_from_page(page):
                by_name.setdefault(cluster.name, cluster)
            if not page.NextKey or page.NextKey == start_key:
                break
            start_key = page.NextKey
        return [by_name[name] for name in sorted(by_name)]

    async def rejoin(
        self,
        *,
        token: str,
        id_token: str,
        tls_public_key: bytes,
        ssh_public_key: bytes,
        expires: dt.datetime,
    ) -> IssuedCerts:
        """Re-join over this authenticated connection: Auth keeps the bot instance."""
        request = types_pb2.RegisterUsingTokenRequest(
            Role="Bot",
            Token=token,
            PublicTLSKey=tls_public_key,
            PublicSSHKey=ssh_public_key,
            IDToken=id_token,
            Expires=_timestamp(expires),
        )
        return _certs(await self._call(Operation.REJOIN, self._join.RegisterUsingToken, request))

    # -- errors -----------------------------------------------------------------------------

    async def _call(self, operation: Operation, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=CALL_TIMEOUT)
        except GRPCError as exc:
            raise map_status(operation, exc.status, exc.message or "") from None
        except EgressProxyError as exc:
            raise ProxyUnreachable(operation, str(exc)) from None
        except ssl.SSLCertVerificationError as exc:
            raise UntrustedCertificate(
                operation,
                f"the Auth Service at {self.addr} presented a certificate that the cluster's "
                f"Host CA does not verify ({exc.verify_message}); is this the right cluster?",
            ) from None
        except ssl.SSLError as exc:
            raise map_tls_alert(operation, self.addr, str(exc.reason or exc)) from None
        except (ConnectionRefusedError, TimeoutError) as exc:
            raise ProxyUnreachable(
                operation, f"cannot reach {self.addr} ({type(exc).__name__}); is Teleport up?"
            ) from None
        except (StreamTerminatedError, ProtocolError, ConnectionError) as exc:
            # A handshake that the server ended after seeing the client certificate (TLS 1.3
            # reports the alert only on the first read) lands here.
            raise TeleportUnavailable(
                operation,
                f"the connection to {self.addr} was closed ({exc}); if this repeats, the bot "
                "identity may have expired or been revoked",
            ) from None
        except OSError as exc:
            raise ProxyUnreachable(
                operation, f"cannot reach {self.addr} ({exc.strerror or exc!r})"
            ) from None


def map_tls_alert(operation: Operation, addr: str, reason: str) -> TeleportError:
    """A TLS alert from Auth: an expired or unknown client certificate, or not TLS at all."""
    upper = reason.upper()
    if "EXPIRED" in upper:
        return IdentityExpired(
            operation, "Teleport refused the bot identity: it has expired. Join again"
        )
    if "UNKNOWN_CA" in upper or "BAD_CERTIFICATE" in upper or "CERTIFICATE_REQUIRED" in upper:
        return UntrustedCertificate(
            operation,
            f"{addr} did not accept the bot identity ({reason}): it was issued by another "
            "cluster or its CA was rotated. Join again",
        )
    if "NO_APPLICATION_PROTOCOL" in upper:
        return WrongAddress(
            operation,
            f"{addr} does not route to the Auth Service (ALPN refused): the proxy needs TLS "
            "routing (proxy_listener_mode: multiplex)",
        )
    return WrongAddress(operation, f"TLS with {addr} failed ({reason})")


def map_status(operation: Operation, status: Status, message: str) -> TeleportError:
    """A gRPC status from Teleport (TELEPORT.md §8) as the agent's error, with what to do:
    what the bot's own state explains first, then what the status means for this operation,
    then what it means for any."""
    if status is Status.PERMISSION_DENIED and (refused := _bot_refused(operation, message)):
        return refused
    if particular := _REFUSALS.get((operation, status)):
        return particular(operation, message)
    return _by_status(operation, status, message)


def _bot_refused(operation: Operation, message: str) -> TeleportError | None:
    """A permission denial that says the bot itself was deleted or locked."""
    lowered = message.lower()
    if lowered.strip() == "access denied":
        # Teleport's bare refusal of a certificate whose user no longer exists: the bot
        # was deleted (TELEPORT.md section 5, revocation). Every later renewal and output
        # issuance is refused the same way, so this is final.
        return BotDeleted(
            operation,
            "Teleport says: access denied. The bot no longer exists in Teleport (it was "
            "deleted, e.g. with tctl bots rm): the agent writes nothing more, and the "
            "secrets it wrote keep their credentials until those expire. To resume, create "
            "the bot again (tctl create -f with the bot from the chart's install notes; "
            "with the token join method also a new join token in the token Secret)",
        )
    if "generation mismatch" in lowered or "lock" in lowered:
        return BotLocked(
            operation,
            f"Teleport says: {message}. The bot is locked; an administrator must remove "
            "the lock (tctl get locks; tctl rm locks/<id>) or, with the token join "
            "method, put a new join token into the token Secret (the agent then joins as "
            "a new bot instance)",
        )
    return None


def _not_impersonable(operation: Operation, message: str) -> TeleportError:
    return RoleNotImpersonable(
        operation,
        f"Teleport says: {message}. The bot may not impersonate its roles: check the "
        "bot's spec.roles (tctl get bot/<name>) and that those roles exist",
    )


def _rejoin_rejected(operation: Operation, message: str) -> TeleportError:
    return JoinRejected(operation, f"Teleport rejected the re-join: {message}")


# What a status means for one operation in particular.
_REFUSALS: dict[tuple[Operation, Status], Callable[[Operation, str], TeleportError]] = {
    (Operation.ISSUE, Status.PERMISSION_DENIED): _not_impersonable,
    (Operation.REJOIN, Status.PERMISSION_DENIED): _rejoin_rejected,
    (Operation.REJOIN, Status.INVALID_ARGUMENT): _rejoin_rejected,
}


def _by_status(operation: Operation, status: Status, message: str) -> TeleportError:
    if status is Status.PERMISSION_DENIED:
        return TeleportError(operation, f"access denied: {message}")
    if status is Status.NOT_FOUND and "cluster name not found" in message.lower():
        return WrongAddress(
            operation, f"Teleport says: {message}. The identity is for another cluster"
        )
    if status in (Status.UNAVAILABLE, Status.RESOURCE_EXHAUSTED, Status.FAILED_PRECONDITION):
        return TeleportUnavailable(operation, f"Teleport is unavailable, retrying: {message}")
    if status is Status.UNAUTHENTICATED:
        return IdentityExpired(operation, f"Teleport did not accept the identity: {message}")
    return TeleportError(operation, f"{status.name}: {message}")
