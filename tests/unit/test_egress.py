"""HTTPS_PROXY / NO_PROXY: which connections to Teleport go through the egress proxy, and the
CONNECT exchange (the real tunnels are in tests/e2e/test_agent_e2e.py)."""

from __future__ import annotations

import socket
import threading

import pytest

from agent.teleport.egress import (
    EgressProxy,
    EgressProxyError,
    connect_request,
    open_tunnel,
    proxy_for,
)

PROXY = "http://egress.corp:3128"


def test_no_variable_means_direct():
    assert proxy_for("teleport.example.com", 443, {}) is None


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "https_proxy"])
def test_https_proxy_in_either_case(name):
    assert proxy_for("teleport.example.com", 443, {name: PROXY}) == EgressProxy("egress.corp", 3128)


def test_a_proxy_without_scheme_or_port_is_http_on_port_80():
    assert proxy_for("t.example.com", 443, {"HTTPS_PROXY": "egress.corp"}) == EgressProxy(
        "egress.corp", 80
    )


def test_credentials_become_a_basic_proxy_authorization_and_are_not_shown():
    proxy = proxy_for("t.example.com", 443, {"HTTPS_PROXY": "http://me:p%40ss@egress.corp:3128"})
    assert proxy is not None
    assert proxy.authorization == "Basic bWU6cEBzcw=="  # me:p@ss
    assert "p@ss" not in str(proxy)
    assert "pss" not in repr(str(proxy))
    request = connect_request(proxy, "t.example.com", 443).decode()
    assert request.startswith("CONNECT t.example.com:443 HTTP/1.1\r\nHost: t.example.com:443\r\n")
    assert "Proxy-Authorization: Basic bWU6cEBzcw==\r\n\r\n" in request


def test_ipv6_targets_are_bracketed():
    request = connect_request(EgressProxy("p", 1), "2001:db8::1", 443).decode()
    assert request.startswith("CONNECT [2001:db8::1]:443 HTTP/1.1")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("https://egress.corp:3128", "only an http:// proxy"),
        ("socks5://egress.corp:1080", "only an http:// proxy"),
        ("http://:3128", "not a proxy address"),
        ("http://egress.corp:99999", "not a proxy address"),
    ],
)
def test_unsupported_proxies_are_refused_with_what_to_write(value, message):
    with pytest.raises(EgressProxyError, match=message):
        proxy_for("t.example.com", 443, {"HTTPS_PROXY": value})


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "bypassed"),
    [
        ("*", "teleport.example.com", 443, True),
        ("example.com", "example.com", 443, True),
        ("example.com", "teleport.example.com", 443, True),
        ("example.com", "badexample.com", 443, False),
        (".example.com", "teleport.example.com", 443, True),
        (".example.com", "example.com", 443, False),
        ("teleport.example.com:443", "teleport.example.com", 443, True),
        ("teleport.example.com:3080", "teleport.example.com", 443, False),
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "192.168.1.1", 443, False),
        ("10.0.0.1", "10.0.0.1", 443, True),
        ("127.0.0.1:6443", "127.0.0.1", 443, False),
        ("127.0.0.1:6443", "127.0.0.1", 6443, True),
        ("::1", "::1", 443, True),
        ("[::1]:443", "::1", 443, True),
        ("fd00::/8", "fd00::5", 443, True),
        (" other.com , EXAMPLE.COM ", "teleport.example.com", 443, True),
        ("example.com.", "teleport.example.com", 443, True),
        ("", "teleport.example.com", 443, False),
    ],
)
def test_no_proxy(no_proxy, host, port, bypassed):
    for name in ("NO_PROXY", "no_proxy"):
        found = proxy_for(host, port, {"HTTPS_PROXY": PROXY, name: no_proxy})
        assert (found is None) is bypassed, (name, no_proxy, host, port)


def _one_shot_proxy(answer: bytes) -> tuple[int, list[bytes]]:
    """A listener that reads one CONNECT head and answers ``answer``."""
    server = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn, server:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(1024)
            seen.append(head)
            if answer:  # else: hang up without an answer
                conn.sendall(answer)
                conn.recv(1024)  # the client's first tunnelled bytes, or its close

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1], seen


def test_tunnel_is_ready_after_a_200_and_reads_nothing_beyond_the_answer():
    port, seen = _one_shot_proxy(b"HTTP/1.1 200 Connection established\r\nVia: x\r\n\r\n")
    with open_tunnel(EgressProxy("127.0.0.1", port), "t.example.com", 443, timeout=5) as sock:
        sock.sendall(b"hello")
    assert seen == [connect_request(EgressProxy("127.0.0.1", port), "t.example.com", 443)]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", "credentials in HTTPS_PROXY"),
        (b"HTTP/1.1 403 Forbidden\r\n\r\n", "must allow CONNECT to t.example.com:443"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "did not answer CONNECT like an HTTP proxy"),
        (b"", "closed the connection during CONNECT"),
    ],
)
def test_refusals_say_which_proxy_and_what_to_check(answer, message):
    port, _ = _one_shot_proxy(answer)
    with pytest.raises(EgressProxyError, match=message) as refused:
        open_tunnel(EgressProxy("127.0.0.1", port), "t.example.com", 443, timeout=5)
    assert f"http://127.0.0.1:{port} (HTTPS_PROXY)" in str(refused.value)


def test_an_unreachable_proxy_is_named():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    with pytest.raises(EgressProxyError, match=r"cannot reach the egress proxy .* HTTPS_PROXY"):
        open_tunnel(EgressProxy("127.0.0.1", port), "t.example.com", 443, timeout=5)
