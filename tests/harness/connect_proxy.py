"""A small HTTP CONNECT proxy on loopback, standing in for a cluster's egress proxy.

It answers ``CONNECT host:port`` by dialling the target and piping bytes both ways, records every
target it was asked for, and can require ``Proxy-Authorization`` (answering 407 without it) or
refuse every tunnel (403), as egress proxies with allow lists do.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class ConnectProxy:
    """Start with ``running()``; ``url`` is what HTTPS_PROXY is set to."""

    credentials: tuple[str, str] | None = None
    refuse: bool = False
    targets: list[str] = field(default_factory=list)
    # The client's first bytes in each tunnel: a TLS ClientHello, whose ALPN list is in clear.
    first_bytes: list[bytes] = field(default_factory=list)
    tunnels_opened: int = 0
    port: int = 0

    @property
    def url(self) -> str:
        if self.credentials:
            user, password = self.credentials
            return f"http://{user}:{password}@127.0.0.1:{self.port}"
        return f"http://127.0.0.1:{self.port}"

    def _answer(self, conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                return
            head += chunk
        lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        pairs = (line.partition(":") for line in lines[1:])
        headers = {k.strip().lower(): v.strip() for k, _, v in pairs}
        self.targets.append(target)
        if method != "CONNECT":
            conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        if self.credentials:
            expected = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
            if headers.get("proxy-authorization") != expected:
                conn.sendall(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'Proxy-Authenticate: Basic realm="egress"\r\nContent-Length: 0\r\n\r\n'
                )
                return
        if self.refuse:
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        host, _, port = target.rpartition(":")
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except OSError:
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        self.tunnels_opened += 1
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        with upstream:
            first = conn.recv(65536)
            if not first:
                return
            self.first_bytes.append(first)
            upstream.sendall(first)
            _pipe(conn, upstream)

    @contextlib.contextmanager
    def running(self) -> Iterator[ConnectProxy]:
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._answer(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        with Server(("127.0.0.1", 0), Handler) as server:
            self.port = server.server_address[1]
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            try:
                yield self
            finally:
                server.shutdown()
                thread.join(timeout=5)


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""

    def copy(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    other = threading.Thread(target=copy, args=(b, a), daemon=True)
    other.start()
    copy(a, b)
    other.join(timeout=30)
