"""The end-to-end tier's pieces: the Teleport stand-in as a process, target API servers
registered in it as Kubernetes clusters, and the agent run as its own process.

The stand-in is built from ``tests/standin`` with the machine's Go toolchain (or taken from
``TELEPORT_STANDIN_BIN``) and seeded with tctl-style YAML. Every line the agent prints is
kept in ``AGENT_OUTPUT``, so the tier can assert that no key material was ever logged.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kubernetes import client as k8s

from tests.harness.kube import ControlPlane, HarnessError, Process

ROOT = Path(__file__).resolve().parents[2]
# Every captured stdout/stderr of agent runs in this session.
AGENT_OUTPUT: list[str] = []


def standin_binary(cache: Path) -> str:
    """The stand-in binary: ``STANDIN_BIN`` (exported by make), ``TELEPORT_STANDIN_BIN``, or a
    fresh ``go build``."""
    if path := os.environ.get("STANDIN_BIN") or os.environ.get("TELEPORT_STANDIN_BIN"):
        return path
    out = cache / "teleport-standin"
    subprocess.run(
        ["go", "build", "-o", str(out), "./cmd/teleport-standin"],
        cwd=ROOT / "tests" / "standin",
        check=True,
        capture_output=True,
    )
    return str(out)


def kube_cluster_yaml(name: str, labels: dict[str, str], plane: ControlPlane) -> dict[str, Any]:
    """A stand-in Kubernetes cluster in front of a real API server (admin credentials)."""
    return {
        "kind": "standin_kube_cluster",
        "version": "v1",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "servers": 2,  # two kube services carry it: the listing must de-duplicate
            "upstream": {
                "server": plane.url,
                "ca_file": str(plane.ca_path),
                "client_cert_file": str(plane.admin_cert_path),
                "client_key_file": str(plane.admin_key_path),
            },
        },
    }


class Network(Protocol):
    """Where a server runs: ``command`` wraps its command line (e.g. into a network namespace),
    ``reach`` maps a port it listens on to one this process can connect to."""

    def command(self, args: list[str]) -> list[str]: ...

    def reach(self, port: int) -> int: ...


@dataclass
class StandIn:
    """A running stand-in; ``admin`` calls its test interface.

    ``listen`` sets the proxy's public address (default: a loopback port); with ``network`` the
    stand-in runs there (a test node's namespace) and its admin interface is reached through it.
    """

    binary: str
    workdir: Path
    cluster_name: str = "root"
    ready: dict[str, Any] = field(default_factory=dict)
    process: Process | None = None
    listen: str = ""
    network: Network | None = None
    _admin_addr: str = ""
    # More command-line flags, e.g. ["--l7-load-balancer"].
    flags: list[str] = field(default_factory=list)

    def start(self, resources: list[dict[str, Any]]) -> StandIn:
        self.workdir.mkdir(parents=True, exist_ok=True)
        seed = self.workdir / "resources.yaml"
        seed.write_text(yaml.safe_dump_all(resources))
        state = self.workdir / "state"
        self.process = Process(
            "teleport-standin",
            [
                self.binary,
                "--config",
                str(seed),
                "--state-dir",
                str(state),
                "--cluster-name",
                self.cluster_name,
                *(["--listen", self.listen] if self.listen else []),
                *self.flags,
            ],
            self.workdir / "standin.log",
        )
        if self.network is not None:
            self.process.args = self.network.command(self.process.args)
        self.process.start()
        deadline = time.monotonic() + 30
        while not (state / "ready.json").exists():
            if not self.process.running() or time.monotonic() > deadline:
                raise HarnessError("the stand-in did not start:\n" + self.process.tail())
            time.sleep(0.1)
        time.sleep(0.1)
        self.ready = json.loads((state / "ready.json").read_text())
        self._admin_addr = str(self.ready["admin_addr"])
        if self.network is not None:
            port = self._admin_addr.rpartition(":")[2]
            self._admin_addr = f"127.0.0.1:{self.network.reach(int(port))}"
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    @property
    def proxy(self) -> str:
        return str(self.ready["proxy_addr"])

    @property
    def web_ca(self) -> str:
        return str(self.workdir / "state" / "web-ca.pem")

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        data = None
        headers = {}
        if isinstance(body, str):
            data = body.encode()
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            f"http://{self._admin_addr}{path}", data=data, method=method, headers=headers
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read() or b"null")

    def create(self, *resources: dict[str, Any]) -> None:
        self.admin("POST", "/v1/resources", yaml.safe_dump_all(resources))

    def create_yaml(self, text: str) -> None:
        self.admin("POST", "/v1/resources", text)

    def instances(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.admin("GET", "/v1/bot-instances")
        return result


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


IDENTITY_SECRET = "agent-identity"


def grant_identity_secret(
    admin: k8s.ApiClient, namespace: str, *, service_account: str = "agent"
) -> None:
    """The chart's identity Role for the token method, bound to ``service_account``: the one
    identity Secret by name (get, update, patch), plus create."""
    rbac = k8s.RbacAuthorizationV1Api(admin)
    rbac.create_namespaced_role(
        namespace,
        k8s.V1Role(
            metadata=k8s.V1ObjectMeta(name="identity"),
            rules=[
                k8s.V1PolicyRule(
                    api_groups=[""],
                    resources=["secrets"],
                    resource_names=[IDENTITY_SECRET],
                    verbs=["get", "update", "patch"],
                ),
                k8s.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=["create"]),
            ],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        k8s.V1RoleBinding(
            metadata=k8s.V1ObjectMeta(name="identity"),
            role_ref=k8s.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="identity"
            ),
            subjects=[
                k8s.RbacV1Subject(kind="ServiceAccount", name=service_account, namespace=namespace)
            ],
        ),
    )
