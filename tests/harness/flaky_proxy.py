"""A loopback HTTPS proxy in front of a real API server that drops every Nth request.

Intermittent transport faults (a load balancer resetting connections, a flaky network) look to
a client like a connection closed before any answer. This proxy makes them on a schedule, so a
test can say exactly how they alternate with answers: it terminates TLS with its own test
certificate, reads each HTTP/1.1 request, and either forwards it to the upstream API server
(over TLS verified against the upstream's CA, with the client's own headers, so the API server
authenticates and authorizes the client as usual) or, for every ``drop_every``-th request,
closes the client's connection without a byte of answer. Requests are counted in arrival order
across all connections.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

from tests.harness.pki import CertificateAuthority

# Headers that belong to one hop, not to the request (RFC 9110 §7.6.1).
_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
    }
)


class DroppingProxy:
    """``https://127.0.0.1:<port>`` forwarding to ``upstream`` (``https://host:port``);
    ``ca_path`` is the CA clients must trust for the proxy's own certificate."""

    def __init__(self, upstream: str, upstream_ca: Path, workdir: Path, *, drop_every: int) -> None:
        if drop_every < 2:
            raise ValueError("drop_every must be at least 2, or no request would get through")
        host, _, port = upstream.removeprefix("https://").rpartition(":")
        self._upstream = (host, int(port))
        self._upstream_tls = ssl.create_default_context(cafile=str(upstream_ca))
        self.drop_every = drop_every
        self.requests = 0
        self.dropped = 0
        self._lock = threading.Lock()
        ca = CertificateAuthority("dropping-proxy-ca")
        self.ca_path = workdir / "proxy-ca.crt"
        self.ca_path.write_bytes(ca.cert_pem)
        cert, key = ca.issue("proxy", ip_addresses=("127.0.0.1",), server=True).write(
            workdir, "proxy"
        )
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> DroppingProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def _drop_this_one(self) -> bool:
        with self._lock:
            self.requests += 1
            drop = self.requests % self.drop_every == 0
            self.dropped += drop
            return drop

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self
        local = threading.local()  # one upstream connection per proxy thread, kept alive

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy._drop_this_one():
                    # Reset, not a clean close: the client sees the connection drop mid-request.
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.close_connection = True
                    self.connection.close()
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                status, reason, answer_headers, answer = proxy._send_upstream(
                    local, self.command, self.path, body, headers
                )
                self.send_response(status, reason)
                for name, value in answer_headers:
                    if name.lower() not in _HOP_HEADERS | {"content-length"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def _send_upstream(
        self,
        local: threading.local,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        for fresh in (False, True):
            conn: http.client.HTTPSConnection | None = getattr(local, "conn", None)
            if conn is None or fresh:
                conn = http.client.HTTPSConnection(
                    *self._upstream, context=self._upstream_tls, timeout=30
                )
                local.conn = conn
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                return response.status, response.reason, response.getheaders(), response.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                if fresh:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover


@contextlib.contextmanager
def dropping_proxy(
    upstream: str, upstream_ca: Path, workdir: Path, *, drop_every: int
) -> Iterator[DroppingProxy]:
    """Start a DroppingProxy and always stop it."""
    proxy = DroppingProxy(upstream, upstream_ca, workdir, drop_every=drop_every).start()
    try:
        yield proxy
    finally:
        proxy.stop()
