"""The last step of ``check``: a written secret's own credential put to use.

It uses nothing but what a written secret holds (server URL, serverName, caData,
certData, keyData) for a real ``GET /version`` through the Teleport proxy: the same request
Argo CD makes first. A secret whose credential expired, whose bot was locked or whose CA was
rotated fails here although the agent itself may be fine.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

from agent.teleport.egress import EgressProxyError, open_tunnel, proxy_for
from agent.teleport.keys import pem_file

__all__ = ["probe_secret"]


def _secret_strings(secret: dict[str, Any]) -> dict[str, str]:
    return {
        k: base64.b64decode(v).decode("utf-8", "replace")
        for k, v in (secret.get("data") or {}).items()
    }


def probe_secret(secret: dict[str, Any], *, timeout: float = 15.0) -> tuple[bool, str]:
    """``GET /version`` through the proxy with the secret's own credential."""
    data = _secret_strings(secret)
    try:
        server = data["server"]
        tls = json.loads(data["config"])["tlsClientConfig"]
        ca = base64.b64decode(tls["caData"])
        cert = base64.b64decode(tls["certData"])
        key = base64.b64decode(tls["keyData"])
    except (KeyError, ValueError, TypeError) as exc:
        return False, f"the secret is not a valid Argo CD cluster secret ({exc!r})"
    url = urlsplit(server)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_verify_locations(cadata=ca.decode())
        with pem_file(cert) as cert_path, pem_file(key) as key_path:
            ctx.load_cert_chain(cert_path, key_path)
    except (ssl.SSLError, ValueError) as exc:
        return False, f"caData/certData/keyData do not load ({exc})"
    server_name = str(tls.get("serverName") or url.hostname or "")
    host, port = url.hostname or "", url.port or 443
    try:
        # Through the egress proxy (HTTPS_PROXY) when the agent's own connections use it.
        egress = proxy_for(host, port)
        connection = (
            socket.create_connection((host, port), timeout=timeout)
            if egress is None
            else open_tunnel(egress, host, port, timeout=timeout)
        )
        with (
            connection as raw,
            ctx.wrap_socket(raw, server_hostname=server_name) as sock,
        ):
            request = (
                f"GET {url.path.rstrip('/')}/version HTTP/1.1\r\nHost: {url.netloc}\r\n"
                "Accept: application/json\r\nConnection: close\r\n\r\n"
            )
            sock.sendall(request.encode())
            response = http.client.HTTPResponse(sock)
            response.begin()
            body = response.read()
            status = response.status
    except EgressProxyError as exc:
        return False, str(exc)
    except ssl.SSLCertVerificationError as exc:
        return False, (
            f"the proxy's certificate does not verify against caData ({exc.verify_message}): "
            "the Host CA was rotated; the agent rewrites the secret at its next renewal"
        )
    except ssl.SSLError as exc:
        reason = str(exc.reason or exc)
        return False, f"the proxy refused the secret's certificate ({reason}): expired or revoked"
    except OSError as exc:
        return False, f"cannot reach {url.netloc} ({exc.strerror or exc!r})"
    if status == 200:
        try:
            version = json.loads(body).get("gitVersion", "?")
        except ValueError:
            version = "?"
        return True, f"GET /version: 200, Kubernetes {version}"
    message = body.decode("utf-8", "replace").strip().replace("\n", " ")[:200]
    if status in (401, 403):
        hint = "the credential is refused (bot locked, expired, or the role lost this cluster)"
    elif status == 404:
        hint = "the cluster is not visible to the credential's roles, or gone"
    else:
        hint = "unexpected answer"
    return False, f"GET /version: {status}: {hint}: {message}"
