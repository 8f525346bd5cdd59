"""The end-to-end tier's pieces: the agent run as its own process, the cluster secrets it
wrote read as Argo CD reads them, and its identity Secret's Role.

The Teleport stand-in is ``tests.harness.standin``. Every line the agent prints is kept in
``AGENT_OUTPUT``, so the tier can assert that no key material was ever logged.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kubernetes import client as k8s

ROOT = Path(__file__).resolve().parents[2]
# Every captured stdout/stderr of agent runs in this session.
AGENT_OUTPUT: list[str] = []


@dataclass
class AgentRun:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def agent_env(kubeconfig: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env.update(KUBECONFIG=str(kubeconfig), PYTHONUNBUFFERED="1", **extra)
    return env


def run_agent(args: list[str], *, kubeconfig: Path, timeout: float = 120, **env: str) -> AgentRun:
    """Run ``teleport-argocd-agent ARGS`` to completion; its output is kept for the key scan."""
    done = subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=ROOT,
        env=agent_env(kubeconfig, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    AGENT_OUTPUT.extend([done.stdout, done.stderr])
    return AgentRun(done.returncode, done.stdout, done.stderr)


class AgentDaemon:
    """``teleport-argocd-agent start`` as a process, JSON events on stderr."""

    def __init__(self, args: list[str], *, kubeconfig: Path, **env: str) -> None:
        self.lines: list[str] = []
        # Parsed once as they arrive: a poller that re-parsed every line each time would burn
        # CPU that the agent and its API server share (a 1,000-secret sync logs 1,000 lines).
        self._events: list[dict[str, Any]] = []
        self._partial = ""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "start", *args, "--log-format", "json"],
            cwd=ROOT,
            env=agent_env(kubeconfig, **env),
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        os.set_blocking(self.proc.stderr.fileno(), False)  # type: ignore[union-attr]

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        while chunk := self.proc.stderr.readline():
            # A non-blocking read can end inside a line the agent is still writing: keep the
            # start until the rest arrives.
            self._partial += chunk
            if not chunk.endswith("\n"):
                continue
            line, self._partial = self._partial, ""
            self.lines.append(line)
            AGENT_OUTPUT.append(line)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self._events.append(event)

    def events(self) -> list[dict[str, Any]]:
        """Every JSON event so far (a copy: callers may keep it while more arrive)."""
        self._pump()
        return list(self._events)

    def wait_for(self, message: str, count: int = 1, timeout: float = 90) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events() if str(e.get("message", "")).startswith(message)]
            if len(found) >= count:
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no {count}x {message!r}:\n" + "".join(self.lines[-30:]))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        time.sleep(0.1)
        self._pump()
        if self._partial:  # the last line, unterminated
            self.lines.append(self._partial)
            AGENT_OUTPUT.append(self._partial)
            self._partial = ""
        return code


@dataclass(frozen=True)
class ReadableSecret:
    """An Argo CD cluster secret that parsed the way Argo CD reads it."""

    uid: str
    server: str
    host_cas: list[x509.Certificate]
    certificate: x509.Certificate
    annotations: dict[str, str]


def _pem_certificates(b64: str, what: str) -> list[x509.Certificate]:
    pem = base64.b64decode(b64, validate=True)
    certs = x509.load_pem_x509_certificates(pem)
    assert certs, f"{what}: no certificate"
    return certs


def argocd_readable_secrets(api: k8s.ApiClient, namespace: str) -> dict[str, ReadableSecret]:
    """Every cluster secret in ``namespace``, each asserted whole as Argo CD reads it (only
    ``data``; ``config`` JSON with a ``tlsClientConfig`` whose ``caData``/``certData``/
    ``keyData`` are base64 of PEM, the key belonging to the certificate). Read as the admin."""
    found: dict[str, ReadableSecret] = {}
    for item in k8s.CoreV1Api(api).list_namespaced_secret(namespace).items:
        meta = item.metadata or k8s.V1ObjectMeta()
        if (meta.labels or {}).get("argocd.argoproj.io/secret-type") != "cluster":
            continue
        name = str(meta.name)
        data = {k: base64.b64decode(v).decode() for k, v in (item.data or {}).items()}
        assert data.get("server", "").startswith("https://"), (name, sorted(data))
        assert data.get("name"), name
        tls = json.loads(data["config"])["tlsClientConfig"]
        assert tls.get("insecure", False) is False, name
        host_cas = _pem_certificates(tls["caData"], f"{name} caData")
        (certificate,) = _pem_certificates(tls["certData"], f"{name} certData")
        # The key's own consistency checks cost ~50 ms per RSA key; that it pairs with the
        # certificate is what Argo CD needs, and is checked below.
        key = serialization.load_pem_private_key(
            base64.b64decode(tls["keyData"]), None, unsafe_skip_rsa_key_validation=True
        )
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        pem = serialization.Encoding.PEM
        assert key.public_key().public_bytes(pem, spki) == certificate.public_key().public_bytes(
            pem, spki
        ), f"{name}: keyData does not belong to certData"
        found[name] = ReadableSecret(
            str(meta.uid), data["server"], host_cas, certificate, dict(meta.annotations or {})
        )
    return found
