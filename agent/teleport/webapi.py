"""The Teleport proxy's public web API (TELEPORT.md §2): find, the bot join, the Host CA.

JSON over HTTPS with the standard library. TLS verification is always on: the system trust
store, plus the PEM file of ``proxy_ca_path`` for a proxy whose web certificate comes from a
private CA. There is no option to skip verification. Message formats are pure functions;
``WebClient`` does the I/O and maps every failure to ``agent.teleport.errors``.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import socket
import ssl
from typing import Any

from agent.teleport.egress import EgressProxy, EgressProxyError, open_tunnel, proxy_for
from agent.teleport.errors import (
    JoinRejected,
    Operation,
    ProxyUnreachable,
    TeleportError,
    TeleportUnavailable,
    UntrustedCertificate,
    WrongAddress,
)
from agent.teleport.model import IssuedCerts, ProxySettings, split_address, split_pem_certificates

__all__ = [
    "WebClient",
    "parse_certs",
    "parse_find_response",
    "register_request",
    "web_ssl_context",
]


def _first(*values: Any) -> str:
    for value in values:
        if isinstance(value, str) and value:
            return value
    return ""


def parse_find_response(payload: dict[str, Any], *, dialed_addr: str) -> ProxySettings:
    """Build ProxySettings from ``/webapi/find``; ``dialed_addr`` fills in what it omits.

    Raises ValueError when the answer names no cluster: every secret name, server URL and
    certificate request depends on it, and ``str(None)`` would quietly make it "None"."""
    cluster_name = payload.get("cluster_name")
    if not isinstance(cluster_name, str) or not cluster_name:
        raise ValueError("the Teleport answer to /webapi/find has no cluster_name")
    proxy = payload.get("proxy") or {}
    kube = proxy.get("kube") or {}
    ssh = proxy.get("ssh") or {}
    auth = payload.get("auth") or {}
    web_addr = _first(ssh.get("public_addr"), dialed_addr)
    kube_addr = _first(kube.get("public_addr"))
    if not kube_addr and kube.get("listen_addr"):
        # A listen address has no usable host; pair its port with the proxy's host.
        port = str(kube["listen_addr"]).rpartition(":")[2]
        kube_addr = f"{web_addr.rpartition(':')[0]}:{port}"
    return ProxySettings(
        cluster_name=cluster_name,
        web_public_addr=web_addr,
        tls_routing=bool(proxy.get("tls_routing_enabled", False)),
        kube_public_addr=kube_addr,
        server_version=str(payload.get("server_version", "")),
        signature_algorithm_suite=str(auth.get("signature_algorithm_suite", "") or ""),
    )


# -- join (POST /webapi/host/credentials) -------------------------------------------------


def register_request(
    *,
    token: str,
    public_tls_key_pem: bytes,
    public_ssh_key: bytes,
    expires: dt.datetime,
    id_token: str | None = None,
) -> dict[str, Any]:
    """The JSON body of a bot join: byte fields are standard base64, as Go encodes []byte."""
    body: dict[str, Any] = {
        "token": token,
        "role": "Bot",
        "public_tls_key": base64.b64encode(public_tls_key_pem).decode(),
        "public_ssh_key": base64.b64encode(public_ssh_key).decode(),
        "expires": expires.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
    }
    if id_token is not None:
        body["id_token"] = id_token
    return body


def parse_certs(payload: dict[str, Any]) -> IssuedCerts:
    """Decode a ``Certs`` JSON answer; a missing TLS certificate is an error, not an empty one."""

    def decode(value: Any, field: str) -> bytes:
        if not isinstance(value, str) or not value:
            raise ValueError(f"the Teleport answer has no {field}")
        return base64.b64decode(value, validate=True)

    return IssuedCerts(
        tls_cert_pem=decode(payload.get("tls"), "tls certificate"),
        ssh_cert=decode(payload.get("ssh"), "ssh certificate"),
        tls_ca_certs_pem=tuple(
            decode(c, "tls_ca_certs entry") for c in payload.get("tls_ca_certs") or []
        ),
        ssh_ca_certs=tuple(
            decode(c, "ssh_ca_certs entry") for c in payload.get("ssh_ca_certs") or []
        ),
    )


# -- the HTTP client ------------------------------------------------------------------------


def web_ssl_context(ca_path: str | None = None) -> ssl.SSLContext:
    """System trust plus an optional private CA; hostname checks and verification always on."""
    ctx = ssl.create_default_context()
    if ca_path:
        try:
            ctx.load_verify_locations(cafile=ca_path)
        except (OSError, ssl.SSLError) as exc:
            raise UntrustedCertificate(
                Operation.LOAD_CA,
                f"cannot read proxy_ca_path {ca_path}: {exc}; it must be a PEM file",
            ) from None
    # Anything but the auth ALPN value reaches the web API on a TLS-routing proxy.
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _error_message(raw: bytes) -> str:
    """The message of a Teleport JSON error body (``{"error": {"message": ...}}`` or flat)."""
    try:
        data = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace").strip()[:300]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for key in ("message", "error"):
            if isinstance(data.get(key), str):
                return str(data[key])
    return str(data)[:300]


# The ALPN a Teleport proxy selects on its web port and a TLS-terminating balancer does not.
REVERSE_TUNNEL_ALPN = "teleport-reversetunnel"


class _TunnelledHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to the Teleport proxy inside a CONNECT tunnel through the egress proxy; TLS (SNI,
    verification) is with the Teleport proxy, as on a direct connection."""

    def __init__(
        self, host: str, port: int, *, proxy: EgressProxy, timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._egress = proxy
        self._tls = context

    def connect(self) -> None:
        raw = open_tunnel(self._egress, self.host, self.port, timeout=self.timeout or 15.0)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


class WebClient:
    """Calls to the proxy's web API at ``addr`` (host:port), through the egress proxy that
    ``HTTPS_PROXY``/``NO_PROXY`` name, if any."""

    def __init__(self, addr: str, *, ca_path: str | None = None, timeout: float = 15.0) -> None:
        self.addr = addr
        self._host, self._port = split_address(addr)
        self._ca_path = ca_path
        self._timeout = timeout

    def find(self) -> ProxySettings:
        status, body = self._request("GET", "/webapi/find", operation=Operation.PING)
        if status != 200:
            raise WrongAddress(
                Operation.PING,
                f"{self.addr} answered /webapi/find with HTTP {status}: it is not a Teleport "
                "proxy. Check proxy_server (the proxy's public web address, e.g. "
                "teleport.example.com:443)",
            )
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or "proxy" not in payload:
            raise WrongAddress(
                Operation.PING,
                f"{self.addr} did not answer like a Teleport proxy; check proxy_server",
            )
        return parse_find_response(payload, dialed_addr=self.addr)

    def register(self, body: dict[str, Any]) -> IssuedCerts:
        """``POST /webapi/host/credentials``: a join that always starts a new bot instance."""
        status, raw = self._request(
            "POST",
            "/webapi/host/credentials",
            operation=Operation.JOIN,
            body=json.dumps(body).encode(),
        )
        if status == 200:
            try:
                return parse_certs(json.loads(raw))
            except ValueError as exc:
                raise WrongAddress(
                    Operation.JOIN, f"unexpected join answer from {self.addr}: {exc}"
                ) from None
        message = _error_message(raw)
        # Teleport answers a JWT that fails validation with 500 (an untyped error), so a 500
        # here is a rejection too; only the statuses of an overloaded proxy are retryable.
        if status in (400, 401, 403, 404, 500):
            raise JoinRejected(
                Operation.JOIN,
                f"Teleport rejected the join: {message}. Check onboarding.token, the token's "
                "bot_name and join_method, and (kubernetes) its allow rules and JWKS",
            )
        if status in (429, 502, 503, 504):
            raise TeleportUnavailable(Operation.JOIN, f"Teleport is busy or unavailable: {message}")
        raise TeleportError(Operation.JOIN, f"HTTP {status}: {message}")

    def host_ca(self) -> tuple[bytes, ...]:
        """The Host CA certificates (PEM) that sign the Auth Service's certificate."""
        status, raw = self._request(
            "GET", "/webapi/auth/export?type=tls-host", operation=Operation.EXPORT_HOST_CA
        )
        certs = split_pem_certificates(raw) if status == 200 else ()
        if not certs:
            raise WrongAddress(
                Operation.EXPORT_HOST_CA, f"{self.addr} did not return the Host CA (HTTP {status})"
            )
        return certs

    def tls_terminated_before_proxy(self) -> str | None:
        """The test handshake of TELEPORT.md section 1a: TLS to the web address offering only
        the ALPN ``teleport-reversetunnel``, which a Teleport proxy selects. What answered
        instead (no protocol, another one, a "no application protocol" alert) means a load
        balancer terminates TLS in front of it; returned as a phrase, or None when the proxy
        itself answered. Nothing is sent inside the connection."""
        context = web_ssl_context(self._ca_path)
        context.set_alpn_protocols([REVERSE_TUNNEL_ALPN])
        try:
            egress = proxy_for(self._host, self._port)
            raw = (
                socket.create_connection((self._host, self._port), timeout=self._timeout)
                if egress is None
                else open_tunnel(egress, self._host, self._port, timeout=self._timeout)
            )
            with raw, context.wrap_socket(raw, server_hostname=self._host) as tls:
                selected = tls.selected_alpn_protocol()
        except ssl.SSLError as exc:
            if "NO_APPLICATION_PROTOCOL" in str(exc.reason or exc).upper():
                return "a 'no application protocol' alert"
            return None  # not this question; the request that follows reports it
        except (OSError, EgressProxyError):
            return None
        if selected == REVERSE_TUNNEL_ALPN:
            return None
        return f"the protocol {selected!r}" if selected else "no application protocol"

    def _request(
        self, method: str, path: str, *, operation: Operation, body: bytes | None = None
    ) -> tuple[int, bytes]:
        try:
            egress = proxy_for(self._host, self._port)
        except EgressProxyError as exc:
            raise ProxyUnreachable(operation, str(exc)) from None
        context = web_ssl_context(self._ca_path)
        conn: http.client.HTTPSConnection
        if egress is None:
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=context
            )
        else:
            conn = _TunnelledHTTPSConnection(
                self._host, self._port, proxy=egress, timeout=self._timeout, context=context
            )
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except EgressProxyError as exc:
            raise ProxyUnreachable(operation, str(exc)) from None
        except ssl.SSLCertVerificationError as exc:
            raise UntrustedCertificate(
                operation,
                f"the certificate of {self.addr} is not trusted ({exc.verify_message}). If "
                "the proxy uses a private CA, set proxy_ca_path (chart value "
                "teleportProxyCA) to that CA's PEM file; verification is never skipped",
            ) from None
        except ssl.SSLError as exc:
            raise WrongAddress(
                operation,
                f"TLS with {self.addr} failed ({exc.reason or exc}): is this the proxy's "
                "HTTPS address? Check proxy_server",
            ) from None
        except socket.gaierror as exc:
            raise ProxyUnreachable(
                operation, f"cannot resolve {self._host} ({exc.strerror}); check proxy_server"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise ProxyUnreachable(
                operation,
                f"cannot reach {self.addr} ({getattr(exc, 'strerror', None) or exc!r}); check "
                "proxy_server and that the proxy is up",
            ) from None
        finally:
            conn.close()
