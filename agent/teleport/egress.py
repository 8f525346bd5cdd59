"""Egress through an HTTP proxy: ``HTTPS_PROXY`` / ``NO_PROXY`` for every connection to Teleport.

Clusters that may reach the internet only through an egress proxy set ``HTTPS_PROXY`` on the
pod. Every connection the agent makes to Teleport (the web API, gRPC to Auth through the proxy
port, ``check``'s ``GET /version``) is TLS end to end, so through a proxy it becomes an HTTP
``CONNECT`` tunnel to the same host and port, and TLS (SNI, ALPN, verification) runs inside it
exactly as without the proxy: the egress proxy sees only the target's name and port.

The variables mean what they mean for curl and Python: ``HTTPS_PROXY`` (or ``https_proxy``) is
``[http://][user:password@]host[:port]``; ``NO_PROXY`` (or ``no_proxy``) is a comma-separated list
of host names (``example.com`` also matches its subdomains, ``.example.com`` only them), IP
addresses, CIDR ranges, any of them with ``:port``, or ``*``. Only an ``http://`` proxy is
supported: TLS to the proxy itself or SOCKS are refused at start with a message.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = [
    "EgressProxy",
    "EgressProxyError",
    "connect_request",
    "open_tunnel",
    "open_tunnel_async",
    "proxy_for",
]

# The CONNECT answer is a status line and a few headers; anything longer is not a proxy.
_MAX_RESPONSE_HEAD = 16 * 1024


class EgressProxyError(Exception):
    """The egress proxy is misconfigured, unreachable or refused the tunnel; the message says
    which proxy, what it answered and what to check."""


@dataclass(frozen=True)
class EgressProxy:
    host: str
    port: int
    # "Basic ..." for a proxy URL with credentials; never logged.
    authorization: str | None = None

    def __str__(self) -> str:
        return f"http://{self.host}:{self.port}"


def _env(environ: Mapping[str, str], name: str) -> str:
    return (environ.get(name) or environ.get(name.lower()) or "").strip()


def _parse_proxy(value: str) -> EgressProxy:
    url = urlsplit(value if "://" in value else f"http://{value}")
    if url.scheme != "http":
        raise EgressProxyError(
            f"HTTPS_PROXY has the scheme {url.scheme!r}: only an http:// proxy (HTTP CONNECT) is "
            "supported. Set HTTPS_PROXY to http://<proxy host>:<port>"
        )
    try:
        port = url.port or 80
    except ValueError:
        port = 0
    if not url.hostname or not port:
        raise EgressProxyError(
            "HTTPS_PROXY is not a proxy address: set it to http://<proxy host>:<port>"
        )
    authorization = None
    if url.username is not None:
        pair = f"{unquote(url.username)}:{unquote(url.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode()
    return EgressProxy(url.hostname, port, authorization)


def _bypassed(host: str, port: int, no_proxy: str) -> bool:
    host = host.strip("[]").lower().rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    return any(_matches(raw.strip().lower(), host, address, port) for raw in no_proxy.split(","))


def _matches(
    entry: str,
    host: str,
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
    port: int,
) -> bool:
    """Whether one NO_PROXY entry covers ``host:port``."""
    if not entry:
        return False
    if entry == "*":
        return True
    entry_port = None
    if entry.startswith("["):  # [v6]:port
        bracket = entry.index("]") if "]" in entry else len(entry)
        entry, rest = entry[1:bracket], entry[bracket + 1 :]
        entry_port = rest.removeprefix(":") or None
    elif entry.count(":") == 1:  # name:port or v4:port (a bare v6 address has several)
        entry, entry_port = entry.split(":")
    if entry_port is not None and entry_port != str(port):
        return False
    if address is not None:
        try:
            return address in ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return False
    entry = entry.rstrip(".")
    if entry.startswith("."):
        return host.endswith(entry)
    return host == entry or host.endswith("." + entry)


def proxy_for(host: str, port: int, environ: Mapping[str, str] | None = None) -> EgressProxy | None:
    """The egress proxy a connection to ``host:port`` goes through, or None for a direct one."""
    env = os.environ if environ is None else environ
    value = _env(env, "HTTPS_PROXY")
    if not value or _bypassed(host, port, _env(env, "NO_PROXY")):
        return None
    return _parse_proxy(value)


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connect_request(proxy: EgressProxy, host: str, port: int) -> bytes:
    target = _authority(host, port)
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if proxy.authorization:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _longer_head(head: bytes, chunk: bytes, proxy: EgressProxy, host: str, port: int) -> bytes:
    """The answer's head read so far, one more byte received: a closed connection (no byte) or
    a head beyond any proxy's is an error, not a reason to wait or to read on."""
    if not chunk or len(head) > _MAX_RESPONSE_HEAD:
        raise EgressProxyError(
            f"the egress proxy {proxy} (HTTPS_PROXY) closed the connection during CONNECT to "
            f"{_authority(host, port)}; check HTTPS_PROXY"
        )
    return head + chunk


def _check_answer(head: bytes, proxy: EgressProxy, host: str, port: int) -> None:
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise EgressProxyError(
            f"the egress proxy {proxy} (HTTPS_PROXY) did not answer CONNECT like an HTTP proxy "
            f"({status_line[:80]!r}); check HTTPS_PROXY"
        )
    if parts[1] != "200":
        hint = (
            "its credentials in HTTPS_PROXY (http://user:password@host:port) are missing or wrong"
            if parts[1] == "407"
            else f"it must allow CONNECT to {_authority(host, port)}"
        )
        raise EgressProxyError(
            f"the egress proxy {proxy} (HTTPS_PROXY) refused the tunnel to "
            f"{_authority(host, port)}: {status_line[len(parts[0]) + 1 :]}; {hint}, or add the "
            "Teleport proxy to NO_PROXY if it is reachable directly"
        )


def _unreachable(proxy: EgressProxy, exc: OSError) -> EgressProxyError:
    return EgressProxyError(
        f"cannot reach the egress proxy {proxy} (HTTPS_PROXY): "
        f"{'timed out' if isinstance(exc, TimeoutError) else exc.strerror or type(exc).__name__}"
        "; check HTTPS_PROXY and NO_PROXY"
    )


def open_tunnel(proxy: EgressProxy, host: str, port: int, *, timeout: float) -> socket.socket:
    """A connected socket to ``host:port`` through ``proxy`` (blocking), ready for TLS."""
    try:
        sock = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    except OSError as exc:
        raise _unreachable(proxy, exc) from None
    try:
        sock.sendall(connect_request(proxy, host, port))
        head = b""
        # Byte by byte up to the blank line: nothing of the tunnelled stream is read here.
        while not head.endswith(b"\r\n\r\n"):
            head = _longer_head(head, sock.recv(1), proxy, host, port)
        _check_answer(head, proxy, host, port)
    except OSError as exc:
        sock.close()
        raise _unreachable(proxy, exc) from None
    except EgressProxyError:
        sock.close()
        raise
    return sock


async def open_tunnel_async(
    proxy: EgressProxy, host: str, port: int, *, timeout: float
) -> socket.socket:
    """``open_tunnel`` for an event loop: the socket is non-blocking, for ``create_connection``."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(proxy.host, proxy.port, type=socket.SOCK_STREAM)
            family, kind, proto, _, address = infos[0]
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, address)
                await loop.sock_sendall(sock, connect_request(proxy, host, port))
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    head = _longer_head(head, await loop.sock_recv(sock, 1), proxy, host, port)
                _check_answer(head, proxy, host, port)
            except BaseException:
                sock.close()
                raise
    except TimeoutError:
        raise EgressProxyError(
            f"the egress proxy {proxy} (HTTPS_PROXY) did not answer CONNECT to "
            f"{_authority(host, port)} within {timeout:g} s; check HTTPS_PROXY"
        ) from None
    except OSError as exc:
        raise _unreachable(proxy, exc) from None
    return sock
