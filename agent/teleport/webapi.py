"""The Teleport proxy's public web API: what ``/webapi/find`` says about the cluster.

Only the parsing of the answer lives here so far; it is pure and feeds the secret renderer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ProxySettings", "parse_find_response"]


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
    """Build ProxySettings from ``/webapi/find``; ``dialed_addr`` fills in what it omits."""
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
        cluster_name=str(payload.get("cluster_name", "")),
        web_public_addr=web_addr,
        tls_routing=bool(proxy.get("tls_routing_enabled", False)),
        kube_public_addr=kube_addr,
        server_version=str(payload.get("server_version", "")),
        signature_algorithm_suite=str(auth.get("signature_algorithm_suite", "") or ""),
    )
