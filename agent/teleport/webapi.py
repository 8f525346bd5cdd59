"""The Teleport proxy's public web API: ``/webapi/find`` and the bot join messages.

Only the message formats live here so far (pure functions): the HTTP calls come with the
Teleport client, which needs a real Teleport to be proven against.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from typing import Any

__all__ = ["IssuedCerts", "ProxySettings", "parse_certs", "parse_find_response", "register_request"]


@dataclass(frozen=True)
class ProxySettings:
    """How clients reach the cluster through the proxy."""

    cluster_name: str
    # host:port of the proxy's public web address (also the Kubernetes address with TLS routing).
    web_public_addr: str
    tls_routing: bool
    # host:port of the separate Kubernetes listener when TLS routing is off ("" if none).
    kube_public_addr: str = ""
    server_version: str = ""
    signature_algorithm_suite: str = ""


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


@dataclass(frozen=True)
class IssuedCerts:
    """The certificates a join or renewal returns (PEM / SSH wire text, decoded)."""

    tls_cert_pem: bytes
    ssh_cert: bytes
    tls_ca_certs_pem: tuple[bytes, ...]
    ssh_ca_certs: tuple[bytes, ...]


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
