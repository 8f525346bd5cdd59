"""The Teleport stand-in as a test fixture: a process on loopback random ports, seeded with
tctl-style YAML, driven through its admin interface, torn down without leftovers.

The stand-in (``tests/standin``, README there) speaks Teleport v18's protocol as TELEPORT.md
records it. ``make`` builds it into the tool cache and exports ``STANDIN_BIN``; without that,
``tools/install.sh teleport-standin`` builds (or finds) the cached binary.

Besides the fixture, this module has small protocol helpers the stand-in's own rule tests use
(a web API join, a role-impersonated certificate over the proxy's auth route, the Kubernetes
route's URL and TLS context). They follow TELEPORT.md directly and are independent of the
agent's client, which is tested against the stand-in elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf.timestamp_pb2 import Timestamp
from grpclib.client import Channel
from grpclib.config import Configuration

from agent.teleport.proto import authservice_grpc, authservice_pb2
from tests.harness.kube import ControlPlane, HarnessError, Process
from tests.harness.pki import KeyPair

ROOT = Path(__file__).resolve().parents[2]
_START_TIMEOUT = 30.0

__all__ = [
    "KUBE_SERVER_NAME",
    "AdminError",
    "IssuedIdentity",
    "KubeResponse",
    "Network",
    "StandIn",
    "b64url",
    "bot_doc",
    "kube_cluster_doc",
    "kube_request",
    "kubernetes_token_doc",
    "output_identity",
    "renew_bot",
    "role_doc",
    "standin",
    "standin_binary",
    "standin_factory",
    "token_doc",
    "web_join",
]


class AdminError(RuntimeError):
    """The admin interface refused a request; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"stand-in admin API answered {status}: {message}")
        self.status = status
        self.message = message


def standin_binary() -> str:
    """Path of the stand-in binary: ``STANDIN_BIN`` (set by ``make``), else the cached build."""
    for var in ("STANDIN_BIN", "TELEPORT_STANDIN_BIN"):
        path = os.environ.get(var)
        if path and os.access(path, os.X_OK):
            return path
    try:
        done = subprocess.run(
            [str(ROOT / "tools" / "install.sh"), "teleport-standin"],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise HarnessError(
            "the Teleport stand-in could not be built: run the tests through `make test` "
            f"(it sets STANDIN_BIN), or check Go is installed.\n{detail}"
        ) from exc
    return done.stdout.strip()


# -- resources ---------------------------------------------------------------------------------


def role_doc(
    name: str,
    *,
    kubernetes_labels: Mapping[str, str | Sequence[str]] | None = None,
    kubernetes_groups: Sequence[str] = (),
    kubernetes_users: Sequence[str] = (),
) -> dict[str, Any]:
    """A ``role`` v7 document as ``tctl create`` reads it."""
    allow: dict[str, Any] = {}
    if kubernetes_labels is not None:
        allow["kubernetes_labels"] = {
            k: v if isinstance(v, str) else list(v) for k, v in kubernetes_labels.items()
        }
    if kubernetes_groups:
        allow["kubernetes_groups"] = list(kubernetes_groups)
    if kubernetes_users:
        allow["kubernetes_users"] = list(kubernetes_users)
    return {"kind": "role", "version": "v7", "metadata": {"name": name}, "spec": {"allow": allow}}


def bot_doc(name: str, roles: Sequence[str]) -> dict[str, Any]:
    """A ``bot`` v1 document; the stand-in adds its role ``bot-<name>``."""
    return {
        "kind": "bot",
        "version": "v1",
        "metadata": {"name": name},
        "spec": {"roles": list(roles)},
    }


def token_doc(name: str, bot: str) -> dict[str, Any]:
    """A single-use ``token`` join token for a bot."""
    return {
        "kind": "token",
        "version": "v2",
        "metadata": {"name": name},
        "spec": {"roles": ["Bot"], "bot_name": bot, "join_method": "token"},
    }


def kubernetes_token_doc(
    name: str, bot: str, *, jwks: str, service_accounts: Sequence[str]
) -> dict[str, Any]:
    """A ``kubernetes`` join token of type ``static_jwks``; accounts as ``namespace:name``."""
    return {
        "kind": "token",
        "version": "v2",
        "metadata": {"name": name},
        "spec": {
            "roles": ["Bot"],
            "bot_name": bot,
            "join_method": "kubernetes",
            "kubernetes": {
                "type": "static_jwks",
                "static_jwks": {"jwks": jwks},
                "allow": [{"service_account": sa} for sa in service_accounts],
            },
        },
    }


def kube_cluster_doc(
    name: str,
    plane: ControlPlane,
    *,
    labels: Mapping[str, str] | None = None,
    dynamic_labels: Mapping[str, str] | None = None,
    servers: int = 1,
) -> dict[str, Any]:
    """The stand-in's own kind: a Kubernetes cluster in front of a real API server, reached
    with the control plane's admin certificate. ``dynamic_labels`` maps key to result."""
    spec: dict[str, Any] = {
        "servers": servers,
        "upstream": {
            "server": plane.url,
            "ca_file": str(plane.ca_path),
            "client_cert_file": str(plane.admin_cert_path),
            "client_key_file": str(plane.admin_key_path),
        },
    }
    if dynamic_labels:
        spec["dynamic_labels"] = {
            k: {"period": "1m", "command": ["echo", v], "result": v}
            for k, v in dynamic_labels.items()
        }
    return {
        "kind": "standin_kube_cluster",
        "version": "v1",
        "metadata": {"name": name, "labels": dict(labels or {})},
        "spec": spec,
    }


def _yaml(resources: str | Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> str:
    if isinstance(resources, str):
        return resources
    if isinstance(resources, Mapping):
        return yaml.safe_dump(dict(resources))
    return yaml.safe_dump_all([dict(r) for r in resources])


# -- the process -------------------------------------------------------------------------------


class Network(Protocol):
    """Where a server runs: ``command`` wraps its command line (e.g. into a network namespace),
    ``reach`` maps a port it listens on to one this process can connect to."""

    def command(self, args: list[str]) -> list[str]: ...

    def reach(self, port: int) -> int: ...


@dataclass
class StandIn:
    """A stand-in process. ``start`` blocks until ``ready.json`` is written.

    ``binary`` empty means :func:`standin_binary`. ``listen`` is the proxy's public address;
    with ``network`` the stand-in runs there (a test node's namespace) and its admin interface
    is reached through it. ``flags`` are more command-line flags (``--l7-load-balancer``).
    """

    binary: str
    workdir: Path
    cluster_name: str = "root"
    suite: str = "legacy"
    tls_routing: bool = True
    auth_port: bool = False
    listen: str = "127.0.0.1:0"
    network: Network | None = None
    flags: list[str] = field(default_factory=list)
    ready: dict[str, Any] = field(default_factory=dict)
    process: Process | None = None
    _admin_addr: str = ""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, resources: str | Sequence[Mapping[str, Any]] = ()) -> StandIn:
        self.workdir.mkdir(parents=True, exist_ok=True)
        seed = self.workdir / "resources.yaml"
        seed.write_text(_yaml(resources))
        state = self.workdir / "state"
        self.binary = self.binary or standin_binary()
        args = [
            self.binary,
            f"--config={seed}",
            f"--state-dir={state}",
            f"--cluster-name={self.cluster_name}",
            f"--suite={self.suite}",
            f"--listen={self.listen}",
            "--admin-listen=127.0.0.1:0",
        ]
        if self.auth_port:
            args.append("--auth-listen=127.0.0.1:0")
        if not self.tls_routing:
            args += ["--no-tls-routing", "--kube-listen=127.0.0.1:0"]
        args += self.flags
        if self.network is not None:
            args = self.network.command(args)
        self.process = Process("teleport-standin", args, self.workdir / "standin.log")
        self.process.start()
        ready = state / "ready.json"
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if ready.exists():
                with contextlib.suppress(ValueError):
                    self.ready = json.loads(ready.read_text())
                    break
            if not self.process.running() or time.monotonic() > deadline:
                self.stop()
                raise HarnessError(f"the Teleport stand-in did not start:\n{self.process.tail()}")
            time.sleep(0.05)
        self._admin_addr = str(self.ready["admin_addr"])
        if self.network is not None:
            port = self._admin_addr.rpartition(":")[2]
            self._admin_addr = f"127.0.0.1:{self.network.reach(int(port))}"
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def log_tail(self, lines: int = 40) -> str:
        return self.process.tail(lines) if self.process is not None else ""

    # -- addresses and CAs -------------------------------------------------------------------

    @property
    def proxy_addr(self) -> str:
        """The web public address (``host:port``): ``proxy_server`` for the agent."""
        return str(self.ready["proxy_addr"])

    @property
    def auth_addr(self) -> str:
        """The direct Auth port (only with ``auth_port=True``)."""
        return str(self.ready.get("auth_addr", ""))

    @property
    def kube_addr(self) -> str:
        """The Kubernetes port without TLS routing."""
        return str(self.ready.get("kube_addr", ""))

    @property
    def admin_url(self) -> str:
        return f"http://{self._admin_addr}"

    @property
    def web_ca_path(self) -> Path:
        """CA of the web certificate (the tests' stand-in for a public CA)."""
        return Path(self.ready["web_ca"])

    @property
    def host_ca_path(self) -> Path:
        """The Host CA (both certificates during a rotation); rewritten when it rotates."""
        return Path(self.ready["host_ca"])

    @property
    def user_ca_path(self) -> Path:
        return Path(self.ready["user_ca"])

    # -- admin interface ---------------------------------------------------------------------

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        """Call the admin API; a string body is sent as is (YAML), anything else as JSON."""
        data: bytes | None = None
        headers: dict[str, str] = {}
        if isinstance(body, str):
            data = body.encode()
            headers["Content-Type"] = "application/yaml"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(  # noqa: S310 - the loopback admin URL
            self.admin_url + path, data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            with contextlib.suppress(ValueError):
                detail = str(json.loads(detail).get("error", detail))
            raise AdminError(exc.code, detail) from None
        return json.loads(raw) if raw else None

    def create(self, *resources: Mapping[str, Any] | str | Sequence[Mapping[str, Any]]) -> None:
        """Create or replace resources (``tctl create -f`` semantics): documents, lists of them
        or YAML text, sent as one multi-document YAML."""
        self.admin("POST", "/v1/resources", "\n---\n".join(_yaml(r) for r in resources))

    def delete(self, kind: str, name: str) -> None:
        self.admin("DELETE", f"/v1/resources/{kind}/{name}")

    def add_cluster(self, name: str, plane: ControlPlane, **kwargs: Any) -> None:
        self.create([kube_cluster_doc(name, plane, **kwargs)])

    def remove_cluster(self, name: str) -> None:
        self.delete("standin_kube_cluster", name)

    def relabel(
        self,
        name: str,
        *,
        labels: Mapping[str, str] | None = None,
        dynamic_labels: Mapping[str, str] | None = None,
    ) -> None:
        body: dict[str, Any] = {}
        if labels is not None:
            body["labels"] = dict(labels)
        if dynamic_labels is not None:
            body["dynamic_labels"] = {
                k: {"period": 60_000_000_000, "command": ["echo", v], "result": v}
                for k, v in dynamic_labels.items()
            }
        self.admin("PUT", f"/v1/clusters/{name}/labels", body)

    def instances(self) -> list[dict[str, Any]]:
        """Bot instances: ``id``, ``bot_name``, ``generation``, ``locked``, ``join_method``."""
        result: list[dict[str, Any]] = self.admin("GET", "/v1/bot-instances")
        return result

    def lock(self, instance_id: str, message: str = "") -> None:
        self.admin("POST", f"/v1/bot-instances/{instance_id}/lock", {"message": message})

    def unlock(self, instance_id: str) -> None:
        self.admin("POST", f"/v1/bot-instances/{instance_id}/unlock")

    def fail_next(self, target: str, kind: str, *, count: int = 1, message: str = "") -> None:
        """Make the next ``count`` calls to ``target`` fail. ``target``: a gRPC full method
        (``/proto.AuthService/GenerateUserCerts``), a web path (``/webapi/find``) or ``kube``;
        ``kind``: an error kind (``AccessDenied``) or gRPC code name (``UNAVAILABLE``)."""
        self.admin(
            "POST",
            "/v1/faults",
            {"target": target, "kind": kind, "count": count, "message": message},
        )

    def clear_faults(self) -> None:
        self.admin("DELETE", "/v1/faults")

    def rotate_host_ca(self, phase: str) -> None:
        """``start``: a new Host CA signs, old and new are trusted and returned;
        ``complete``: only the new one is left."""
        self.admin("POST", "/v1/host-ca/rotate", {"phase": phase})

    def stop_listening(self) -> None:
        """Close every port and open connection, as if Teleport were down."""
        self.admin("POST", "/v1/listener/stop")

    def start_listening(self) -> None:
        self.admin("POST", "/v1/listener/start")

    def request_log(self, tail: int | None = None) -> list[dict[str, Any]]:
        """Every request: ``route``, ``method``, ``identity``, ``bot_instance``, ``result``."""
        path = "/v1/log" if tail is None else f"/v1/log?tail={tail}"
        result: list[dict[str, Any]] = self.admin("GET", path)
        return result


@contextlib.contextmanager
def standin(
    resources: str | Sequence[Mapping[str, Any]] = (),
    *,
    workdir: Path | None = None,
    **options: Any,
) -> Iterator[StandIn]:
    """Start a stand-in and always stop it; a temporary ``workdir`` is removed afterwards."""
    own = workdir is None
    root = Path(tempfile.mkdtemp(prefix="standin-")) if workdir is None else workdir
    server = StandIn(options.pop("binary", ""), root, **options)
    try:
        server.start(resources)
        yield server
    finally:
        server.stop()
        if own:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def standin_factory(tmp_path: Path) -> Iterator[Any]:
    """Factory fixture: ``standin_factory(resources, **options)`` starts a stand-in that is
    stopped when the test ends. Import it into an e2e test module to use it."""
    started: list[StandIn] = []

    def make(resources: str | Sequence[Mapping[str, Any]] = (), **options: Any) -> StandIn:
        binary = options.pop("binary", "")
        server = StandIn(binary, tmp_path / f"standin-{len(started)}", **options)
        started.append(server)
        return server.start(resources)

    yield make
    for server in started:
        server.stop()


# -- protocol helpers (TELEPORT.md §2, §6, §7) -------------------------------------------------


@dataclass(frozen=True)
class IssuedIdentity(KeyPair):
    """A key and the certificate Teleport issued for it, with the Host CAs it answered."""

    tls_ca_pems: list[bytes]

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


def _new_key() -> tuple[ec.EllipticCurvePrivateKey, bytes, bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tls_pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ssh_pub = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return key, key_pem, tls_pub, ssh_pub


def _web_context(server: StandIn) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.web_ca_path))


def web_join(
    server: StandIn,
    token: str,
    *,
    id_token: str = "",
    ttl: dt.timedelta = dt.timedelta(hours=1),
) -> IssuedIdentity:
    """Join through ``POST /webapi/host/credentials``. Raises ``urllib.error.HTTPError`` with
    the status of §2 when the stand-in refuses."""
    _, key_pem, tls_pub, ssh_pub = _new_key()
    body = {
        "token": token,
        "role": "Bot",
        "public_tls_key": base64.b64encode(tls_pub).decode(),
        "public_ssh_key": base64.b64encode(ssh_pub + b"\n").decode(),
        "id_token": id_token,
        "expires": (dt.datetime.now(dt.UTC) + ttl).isoformat().replace("+00:00", "Z"),
    }
    request = urllib.request.Request(
        f"https://{server.proxy_addr}/webapi/host/credentials",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10, context=_web_context(server)) as r:  # noqa: S310
        certs = json.loads(r.read())
    return IssuedIdentity(
        base64.b64decode(certs["tls"]),
        key_pem,
        [base64.b64decode(c) for c in certs["tls_ca_certs"]],
    )


def _auth_context(server: StandIn, identity: IssuedIdentity, workdir: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(server.host_ca_path))
    cert, key = identity.write(workdir, "auth-client")
    ctx.load_cert_chain(str(cert), str(key))
    hex_name = server.cluster_name.encode().hex()
    ctx.set_alpn_protocols([f"teleport-auth@{hex_name}.teleport.cluster.local", "h2"])
    return ctx


def output_identity(
    server: StandIn,
    bot: IssuedIdentity,
    roles: Sequence[str],
    *,
    workdir: Path,
    ttl: dt.timedelta = dt.timedelta(hours=1),
) -> IssuedIdentity:
    """The role-impersonated output identity of §6, asked over the proxy's auth route."""
    return _user_certs(server, bot, roles, workdir=workdir, ttl=ttl)


def renew_bot(
    server: StandIn,
    bot: IssuedIdentity,
    *,
    workdir: Path,
    ttl: dt.timedelta = dt.timedelta(hours=1),
) -> IssuedIdentity:
    """A renewal of a bot identity (§5): ``GenerateUserCerts`` for itself, no role requests.
    Presenting an identity older than the newest one is a generation mismatch: Teleport
    refuses (``grpclib.exceptions.GRPCError``) and locks the bot instance."""
    return _user_certs(server, bot, (), workdir=workdir, ttl=ttl)


def _user_certs(
    server: StandIn,
    bot: IssuedIdentity,
    roles: Sequence[str],
    *,
    workdir: Path,
    ttl: dt.timedelta,
) -> IssuedIdentity:
    _, key_pem, tls_pub, ssh_pub = _new_key()
    host, port = server.proxy_addr.rsplit(":", 1)
    username = bot.certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    expires = Timestamp()
    expires.FromDatetime(dt.datetime.now(dt.UTC) + ttl)
    request = authservice_pb2.UserCertsRequest(
        Username=str(username),
        Expires=expires,
        RouteToCluster=server.cluster_name,
        RoleRequests=list(roles),
        UseRoleRequests=bool(roles),
        SSHPublicKey=ssh_pub,
        TLSPublicKey=tls_pub,
    )
    server_name = f"{server.cluster_name.encode().hex()}.teleport.cluster.local"

    async def call() -> Any:
        channel = Channel(
            host,
            int(port),
            ssl=_auth_context(server, bot, workdir),
            config=Configuration(ssl_target_name_override=server_name),
        )
        try:
            return await authservice_grpc.AuthServiceStub(channel).GenerateUserCerts(
                request, timeout=10
            )
        finally:
            channel.close()

    certs = asyncio.run(call())
    return IssuedIdentity(bytes(certs.TLS), key_pem, [bytes(c) for c in certs.TLSCACerts])


def b64url(name: str) -> str:
    """URL-safe base64 without padding, as the Kubernetes route's path uses (§7)."""
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


KUBE_SERVER_NAME = "kube-teleport-proxy-alpn.teleport.cluster.local"


@dataclass(frozen=True)
class KubeResponse:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def kube_request(
    server: StandIn,
    kube_cluster: str,
    api_path: str,
    *,
    identity: IssuedIdentity | None,
    workdir: Path,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    ca_path: Path | None = None,
    teleport_cluster: str | None = None,
    first_line: bool = False,
) -> KubeResponse:
    """One request on the Kubernetes route (§7): SNI ``kube-teleport-proxy-alpn.
    teleport.cluster.local`` (the host is an IP), the Host CA (or ``ca_path``) verified,
    ``identity`` as the client certificate. TLS failures raise ``ssl.SSLError``/``OSError``.
    ``first_line`` returns as soon as one line of the body arrived (watches stream)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(ca_path or server.host_ca_path))
    if identity is not None:
        cert, key = identity.write(workdir, "kube-client")
        ctx.load_cert_chain(str(cert), str(key))
    addr = server.proxy_addr if server.tls_routing else server.kube_addr
    host, port = addr.rsplit(":", 1)
    cluster = teleport_cluster or server.cluster_name
    path = f"/v1/teleport/{b64url(cluster)}/{b64url(kube_cluster)}{api_path}"
    raw = socket.create_connection((host, int(port)), timeout=10)
    try:
        tls = ctx.wrap_socket(raw, server_hostname=KUBE_SERVER_NAME)
    except BaseException:
        raw.close()
        raise
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.sock = tls
    try:
        conn.request(method, path, headers=dict(headers or {}))
        response = conn.getresponse()
        if first_line:
            return KubeResponse(response.status, response.readline())
        return KubeResponse(response.status, response.read())
    finally:
        conn.close()
