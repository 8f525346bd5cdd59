"""A real etcd + kube-apiserver on loopback, for tests, benchmarks and the demo.

The control plane has its own throw-away PKI, RBAC authorization, service-account token
signing (so the TokenRequest API works and ``/openid/v1/jwks`` is served), the
PodSecurity admission plugin and ValidatingAdmissionPolicy (the chart's policy is enforced).
There is no controller manager: tests create what a controller would (for example a
namespace's ``default`` ServiceAccount) themselves, and no token controller fills in
service-account-token Secrets.

Binaries come from the environment (``ETCD_BIN``, ``KUBE_APISERVER_BIN``), which ``make``
fills from the versioned tool cache.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml
from kubernetes import client as k8s

from tests.harness.pki import CertificateAuthority, rsa_signing_key_pem, write_private

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
_START_TIMEOUT = 60.0
_PR_SET_PDEATHSIG = 1


class HarnessError(RuntimeError):
    """The test control plane could not be started."""


# The admission plugins every test API server runs. ValidatingAdmissionPolicy is on by default
# since 1.30; named so that the chart's policy is known to be enforced, dry runs included.
ADMISSION_PLUGINS = (
    "PodSecurity",
    "NamespaceLifecycle",
    "ServiceAccount",
    "ValidatingAdmissionPolicy",
)


@dataclass(frozen=True)
class ApiServerPki:
    """An API server's throw-away PKI: its CA, its serving pair, an admin's client pair
    (``system:masters``) and the service-account signing key pair."""

    ca: CertificateAuthority
    ca_path: Path
    serving: tuple[Path, Path]
    admin: tuple[Path, Path]
    sa_key_path: Path
    sa_pub_path: Path


def write_apiserver_pki(
    pki: Path,
    *,
    ca_name: str,
    admin_name: str,
    dns_names: tuple[str, ...],
    ip_addresses: tuple[str, ...],
) -> ApiServerPki:
    """Make the PKI of an API server serving ``dns_names`` and ``ip_addresses`` in ``pki``."""
    pki.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority(ca_name)
    ca_path = pki / "ca.crt"
    ca_path.write_bytes(ca.cert_pem)
    serving = ca.issue(
        "kube-apiserver", dns_names=dns_names, ip_addresses=ip_addresses, server=True
    ).write(pki, "apiserver")
    admin = ca.issue(admin_name, organizations=("system:masters",), client=True).write(pki, "admin")
    private, public = rsa_signing_key_pem()
    sa_key_path = pki / "sa.key"
    write_private(sa_key_path, private)
    sa_pub_path = pki / "sa.pub"
    sa_pub_path.write_bytes(public)
    return ApiServerPki(ca, ca_path, serving, admin, sa_key_path, sa_pub_path)


def apiserver_args(
    pki: ApiServerPki,
    *,
    etcd_url: str,
    bind: str,
    advertise: str,
    port: int,
    service_range: str,
    authorization: str = "RBAC",
    admission: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
) -> list[str]:
    """The kube-apiserver command line every test API server shares (token signing, RBAC,
    :data:`ADMISSION_PLUGINS` and ``admission``), plus ``extra`` flags."""
    serving_cert, serving_key = pki.serving
    return [
        binary("KUBE_APISERVER_BIN", "kube-apiserver"),
        f"--etcd-servers={etcd_url}",
        f"--bind-address={bind}",
        f"--advertise-address={advertise}",
        f"--secure-port={port}",
        f"--cert-dir={serving_cert.parent}",
        f"--tls-cert-file={serving_cert}",
        f"--tls-private-key-file={serving_key}",
        f"--client-ca-file={pki.ca_path}",
        f"--authorization-mode={authorization}",
        "--anonymous-auth=false",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki.sa_pub_path}",
        f"--service-account-signing-key-file={pki.sa_key_path}",
        f"--api-audiences={SERVICE_ACCOUNT_ISSUER}",
        f"--service-cluster-ip-range={service_range}",
        "--enable-admission-plugins=" + ",".join((*admission, *ADMISSION_PLUGINS)),
        "--profiling=false",
        "--endpoint-reconciler-type=none",
        *extra,
        "--v=1",
    ]


def kubeconfig_text(server: str, ca_path: Path, user: dict[str, str], name: str) -> str:
    """A kubeconfig for one user of one API server."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": server, "certificate-authority": str(ca_path)}}
        ],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }
    return yaml.safe_dump(doc)


class AdminAccess:
    """Clients of an API server at ``url`` as its admin (or as a bearer token's owner)."""

    url: str
    ca_path: Path
    admin_cert_path: Path
    admin_key_path: Path

    def configuration(self, *, token: str | None = None) -> k8s.Configuration:
        cfg = k8s.Configuration()
        cfg.host = self.url
        cfg.ssl_ca_cert = str(self.ca_path)
        cfg.verify_ssl = True
        if token is None:
            cfg.cert_file = str(self.admin_cert_path)
            cfg.key_file = str(self.admin_key_path)
        else:
            cfg.api_key = {"authorization": f"Bearer {token}"}
        return cfg

    def admin_client(self) -> k8s.ApiClient:
        return k8s.ApiClient(self.configuration())

    def admin_tls(self) -> ssl.SSLContext:
        """TLS as the admin, verifying the API server against its CA."""
        ctx = ssl.create_default_context(cafile=str(self.ca_path))
        ctx.load_cert_chain(str(self.admin_cert_path), str(self.admin_key_path))
        return ctx

    def apiserver_ready(self, ctx: ssl.SSLContext) -> bool:
        """One look at ``/readyz`` (``ctx``: :meth:`admin_tls`)."""
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2, context=ctx) as r:  # noqa: S310
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def jwks(self) -> str:
        """The service-account signing keys (``kubectl get --raw /openid/v1/jwks``): what a
        Teleport ``static_jwks`` join token trusts."""
        url = f"{self.url}/openid/v1/jwks"
        with urllib.request.urlopen(url, timeout=10, context=self.admin_tls()) as response:  # noqa: S310
            return str(response.read().decode())

    @staticmethod
    def user(token: str | None, cert: Path, key: Path) -> dict[str, str]:
        """A kubeconfig user: the bearer ``token``, else the client pair."""
        if token is None:
            return {"client-certificate": str(cert), "client-key": str(key)}
        return {"token": token}


def binary(env_var: str, name: str) -> str:
    """Path of a required tool binary, or a clear error saying how to get it."""
    path = os.environ.get(env_var) or shutil.which(name)
    if not path or not os.access(path, os.X_OK):
        raise HarnessError(
            f"{name} not found: set {env_var} or run the tests through `make test`, "
            f"which builds {name} into the tool cache."
        )
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    # Children get SIGKILL if the test process dies, even by SIGKILL, so no server outlives it.
    # The signal fires when the *thread* that started the child ends: start servers only from
    # a thread that outlives them (the main thread, in tests).
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Process:
    """A child process whose output goes to a log file kept for error messages."""

    name: str
    args: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self, env: dict[str, str] | None = None) -> None:
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - needed for PDEATHSIG, no threads yet here
            start_new_session=True,
        )

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class ControlPlane(AdminAccess):
    """A running etcd + kube-apiserver pair."""

    workdir: Path
    url: str = ""
    ca_path: Path = field(default_factory=Path)
    admin_cert_path: Path = field(default_factory=Path)
    admin_key_path: Path = field(default_factory=Path)
    etcd: Process | None = None
    apiserver: Process | None = None
    _ca: CertificateAuthority | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        started = time.monotonic()
        self._write_pki()
        for attempt in range(3):  # a free port can be taken between probe and bind
            try:
                self._start_etcd()
                self._start_apiserver()
                break
            except _PortTaken:
                self.stop()
                if attempt == 2:
                    raise HarnessError(
                        "could not bind loopback ports for etcd/kube-apiserver"
                    ) from None
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        for proc in (self.apiserver, self.etcd):
            if proc is not None:
                proc.stop()

    def stop_apiserver(self) -> None:
        """Stop only the API server (fault tests); ``restart_apiserver`` brings it back."""
        assert self.apiserver is not None
        self.apiserver.stop()

    def restart_apiserver(self) -> None:
        assert self.apiserver is not None
        self.apiserver.start()
        self._wait_ready(self.apiserver)

    # -- clients ---------------------------------------------------------------------------

    def kubeconfig(self, path: Path, *, token: str | None = None, name: str = "test") -> Path:
        """Write a kubeconfig for the admin (or for ``token``) and return its path."""
        user = self.user(token, self.admin_cert_path, self.admin_key_path)
        # A kubeconfig may hold a token: readable by its owner only.
        return write_private(path, kubeconfig_text(self.url, self.ca_path, user, name))

    # -- internals -------------------------------------------------------------------------

    def _write_pki(self) -> None:
        self._pki = write_apiserver_pki(
            self.workdir / "pki",
            ca_name="kube-test-ca",
            admin_name="test-admin",
            dns_names=("localhost", "kubernetes", "kubernetes.default.svc"),
            ip_addresses=("127.0.0.1",),
        )
        self._ca = self._pki.ca
        self.ca_path = self._pki.ca_path
        self.admin_cert_path, self.admin_key_path = self._pki.admin

    def _start_etcd(self) -> None:
        client_port, peer_port = free_port(), free_port()
        data = Path(tempfile.mkdtemp(prefix="etcd-", dir=fast_tmp()))
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        self.etcd = Process(
            "etcd",
            [
                binary("ETCD_BIN", "etcd"),
                "--name=test",
                f"--data-dir={data}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=test=http://127.0.0.1:{peer_port}",
                "--log-level=warn",
                "--quota-backend-bytes=4294967296",
            ],
            self.workdir / "etcd.log",
        )
        self._etcd_data = data
        self.etcd.start(env={**os.environ, "ETCD_UNSUPPORTED_ARCH": ""})
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if not self.etcd.running():
                self._raise_exit(self.etcd)
            try:
                with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=1) as r:  # noqa: S310
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        raise HarnessError(f"etcd did not become healthy:\n{self.etcd.tail()}")

    def _start_apiserver(self) -> None:
        port = free_port()
        self.url = f"https://127.0.0.1:{port}"
        self.apiserver = Process(
            "kube-apiserver",
            apiserver_args(
                self._pki,
                etcd_url=self.etcd_url,
                bind="127.0.0.1",
                advertise="127.0.0.1",
                port=port,
                service_range="10.96.0.0/24",
                extra=("--enable-priority-and-fairness=false",),
            ),
            self.workdir / "kube-apiserver.log",
        )
        self.apiserver.start()
        self._wait_ready(self.apiserver)

    def _wait_ready(self, proc: Process) -> None:
        ctx = self.admin_tls()
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if not proc.running():
                self._raise_exit(proc)
            if self.apiserver_ready(ctx):
                return
            time.sleep(0.1)
        raise HarnessError(f"{proc.name} did not become ready:\n{proc.tail()}")

    @staticmethod
    def _raise_exit(proc: Process) -> None:
        tail = proc.tail()
        if "address already in use" in tail:
            raise _PortTaken(proc.name)
        raise HarnessError(f"{proc.name} exited during start-up:\n{tail}")


class _PortTaken(HarnessError):
    pass


def fast_tmp() -> str | None:
    """tmpfs for etcd's data, if there is one: etcd fsyncs on every write, and on tmpfs a
    1,000-secret benchmark is not an fsync benchmark (nor a throw-away cluster slow)."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the body, SIGTERM (e.g. from a CI timeout) raises KeyboardInterrupt, so the
    cleanup around it runs instead of the process dying outright - unless something already
    handles SIGTERM (an outer fixture, pytest's own), which is then left alone."""
    own = signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None)
    if own:
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        if own:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def control_plane(workdir: Path | None = None) -> Iterator[ControlPlane]:
    """Start a control plane and always stop it, however the body ends."""
    own_dir = workdir is None
    root = Path(tempfile.mkdtemp(prefix="kube-test-")) if workdir is None else workdir
    plane = ControlPlane(root)
    with sigterm_interrupts():
        try:
            plane.start()
            yield plane
        finally:
            plane.stop()
            etcd_data = getattr(plane, "_etcd_data", None)
            if etcd_data is not None:
                shutil.rmtree(etcd_data, ignore_errors=True)
            if own_dir:
                shutil.rmtree(root, ignore_errors=True)


# -- helpers for tests ---------------------------------------------------------------------


def unique_namespace(
    api: k8s.ApiClient, *, prefix: str = "t", labels: dict[str, str] | None = None
) -> str:
    """Create a fresh namespace (with the ``default`` ServiceAccount a controller would add)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name, labels=labels)))
    core.create_namespaced_service_account(
        name, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="default"))
    )
    return name


def service_account_token(
    api: k8s.ApiClient,
    namespace: str,
    name: str,
    *,
    audiences: list[str] | None = None,
    expiration_seconds: int = 3600,
    create: bool = True,
) -> str:
    """Token for a ServiceAccount from the TokenRequest API (creating the account first)."""
    core = k8s.CoreV1Api(api)
    if create:
        core.create_namespaced_service_account(
            namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name=name))
        )
    request = k8s.AuthenticationV1TokenRequest(
        spec=k8s.V1TokenRequestSpec(
            audiences=audiences or [SERVICE_ACCOUNT_ISSUER],
            expiration_seconds=expiration_seconds,
        )
    )
    response = core.create_namespaced_service_account_token(name, namespace, request)
    if response.status is None:
        raise HarnessError(f"TokenRequest for {namespace}/{name} returned no token")
    return str(response.status.token)


def grant_secret_verbs(
    api: k8s.ApiClient,
    namespace: str,
    verbs: list[str],
    *,
    service_account: str,
    service_account_namespace: str,
    name: str = "agent",
) -> None:
    """A Role in ``namespace`` with ``verbs`` on secrets, bound to one ServiceAccount."""
    rbac = k8s.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(
        namespace,
        k8s.V1Role(
            metadata=k8s.V1ObjectMeta(name=name),
            rules=[k8s.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=verbs)],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        k8s.V1RoleBinding(
            metadata=k8s.V1ObjectMeta(name=name),
            role_ref=k8s.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=name),
            subjects=[
                k8s.RbacV1Subject(
                    kind="ServiceAccount",
                    name=service_account,
                    namespace=service_account_namespace,
                )
            ],
        ),
    )


def pod_bound_token(
    api: k8s.ApiClient,
    namespace: str,
    service_account: str = "agent",
    *,
    audiences: list[str],
    seconds: int = 600,
    bind_pod: bool = True,
) -> str:
    """The token the kubelet projects for the kubernetes join method: a TokenRequest token of
    an existing ServiceAccount for ``audiences`` (the Teleport cluster's name), bound to a Pod
    created for it here (no kubelet runs it: it only has to exist). 10 minutes by default, as
    the chart projects it; Teleport's ``static_jwks`` join refuses more than 30."""
    core = k8s.CoreV1Api(api)
    bound = None
    if bind_pod:
        pod = core.create_namespaced_pod(
            namespace,
            k8s.V1Pod(
                metadata=k8s.V1ObjectMeta(name=f"{service_account}-{uuid.uuid4().hex[:6]}"),
                spec=k8s.V1PodSpec(
                    service_account_name=service_account,
                    automount_service_account_token=False,
                    containers=[k8s.V1Container(name="agent", image="example.invalid/agent")],
                ),
            ),
        )
        assert pod.metadata is not None
        bound = k8s.V1BoundObjectReference(
            api_version="v1", kind="Pod", name=pod.metadata.name, uid=pod.metadata.uid
        )
    spec = k8s.V1TokenRequestSpec(
        audiences=audiences, expiration_seconds=seconds, bound_object_ref=bound
    )
    answer = core.create_namespaced_service_account_token(
        service_account, namespace, k8s.AuthenticationV1TokenRequest(spec=spec)
    )
    if answer.status is None:
        raise HarnessError(f"TokenRequest for {namespace}/{service_account} returned no token")
    return str(answer.status.token)


def cluster_secret_data(api: k8s.ApiClient, namespace: str) -> list[tuple[str, dict[str, Any]]]:
    """Every Argo CD cluster secret in ``namespace``: (name, decoded data with ``config`` parsed
    from JSON). Read as the admin: the agent itself can never read secrets."""
    found = []
    for item in k8s.CoreV1Api(api).list_namespaced_secret(namespace).items:
        meta = item.metadata or k8s.V1ObjectMeta()
        if (meta.labels or {}).get("argocd.argoproj.io/secret-type") != "cluster":
            continue
        data: dict[str, Any] = {
            k: base64.b64decode(v).decode() for k, v in (item.data or {}).items()
        }
        data["config"] = json.loads(data["config"])
        found.append((str(meta.name), data))
    return found


def config_map_data(plane: ControlPlane, namespace: str, name: str) -> dict[str, str] | None:
    """The data of a ConfigMap on ``plane`` (read as its admin), or None when there is none:
    what a deployment left there."""
    api = plane.admin_client()
    try:
        found = k8s.CoreV1Api(api).read_namespaced_config_map(name, namespace)
        return dict(found.data or {})
    except k8s.ApiException as err:
        if err.status == 404:
            return None
        raise
    finally:
        api.close()  # type: ignore[no-untyped-call]


def agent_namespace(api: k8s.ApiClient, prefix: str, verbs: list[str]) -> str:
    """A fresh namespace whose ServiceAccount ``agent`` holds ``verbs`` on its secrets."""
    namespace = unique_namespace(api, prefix=prefix)
    grant_secret_verbs(
        api, namespace, verbs, service_account="agent", service_account_namespace=namespace
    )
    return namespace


def wait_for_admission_policy(plane: ControlPlane, namespace: str, service_account: str) -> None:
    """Wait until a ValidatingAdmissionPolicy denies the ServiceAccount's secret writes: the API
    server compiles a new policy in the background, a second or two after it was created."""
    admin = plane.admin_client()
    token = service_account_token(admin, namespace, service_account, create=False)
    admin.close()  # type: ignore[no-untyped-call]
    client = k8s.ApiClient(plane.configuration(token=token))
    probe = k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name="admission-policy-probe"), string_data={"probe": "x"}
    )
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            try:
                k8s.CoreV1Api(client).create_namespaced_secret(namespace, probe, dry_run="All")
            except k8s.ApiException as exc:
                if "ValidatingAdmissionPolicy" in str(exc.body):
                    return
            time.sleep(0.2)
    finally:
        client.close()  # type: ignore[no-untyped-call]
    raise HarnessError(f"no admission policy was enforced for {namespace}:{service_account}")
