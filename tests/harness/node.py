"""A real single-node Kubernetes inside a network namespace of its own: the chart's pod runs here.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, the kubelet and containerd (with
Debian's runc and CNI plugins) all run inside one network namespace the fixture creates (every
process is started under ``nsenter --net``; the mount namespace is kept, so the cgroup mounts stay
visible). Inside it: ``lo`` with the ``kubernetes`` Service address (10.96.0.1, where the
API server listens on :443, so the kubelet-injected ``KUBERNETES_SERVICE_HOST`` works without
kube-proxy) and a CNI bridge whose gateway address (10.244.0.1) is where pods reach every other
server a test starts inside the namespace. No traffic leaves it: the test process reaches the
API server (or any port in the namespace) through :meth:`Node.forward`, a loopback port whose
connections are opened from inside the namespace.

Only one node runs on a machine at a time (the kubelet's ports inside the namespace are fixed,
but its cgroups ``/sys/fs/cgroup/*/kubepods`` are not): a lock file guards it. Everything a node
leaves on the machine is recorded in a state file before it is made, so a run that was killed
(SIGKILL, no teardown) is cleaned up by the next one: processes by PID, the containers of its
pods by cgroup, containerd's shims by the socket they were given, mounts under its directory,
the namespace, ``/var/log/containers`` links and the pods' cgroups.

Binaries come from the environment (``make`` fills it from the tool cache): ``ETCD_BIN``,
``KUBE_APISERVER_BIN``, ``KUBE_CONTROLLER_MANAGER_BIN``, ``KUBE_SCHEDULER_BIN``, ``KUBELET_BIN``,
``KUBECTL_BIN``, ``CONTAINERD_BIN``, ``RUNC_BIN``, ``CNI_PLUGINS_BIN`` (the plugin directory) and
``PAUSE_IMAGE_BIN`` (the sandbox image's OCI archive, built by ``tools/install.sh pause-image``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import selectors
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml
from kubernetes import client as k8s

from tests.harness.kube import (
    AdminAccess,
    HarnessError,
    Process,
    apiserver_args,
    binary,
    fast_tmp,
    kubeconfig_text,
    sigterm_interrupts,
    write_apiserver_pki,
)
from tests.harness.pki import CertificateAuthority

NETNS = "teleport-argocd-agent-node"
STATE_DIR = Path("/run/teleport-argocd-agent/node")
SERVICE_IP = "10.96.0.1"  # the `kubernetes` Service: first address of the service range
SERVICE_RANGE = "10.96.0.0/24"
POD_SUBNET = "10.244.0.0/24"
GATEWAY_IP = "10.244.0.1"  # the CNI bridge's address: where pods reach the test's servers
BRIDGE = "tad0"
CNI_NETWORK = "teleport-argocd-agent-node"
# The kubelet refuses a loopback --node-ip but takes --hostname-override=<IP> as the node's
# InternalIP as it is: the API server reaches the kubelet (exec, logs) on the namespace's lo.
NODE_NAME = "127.0.0.1"
APISERVER_PORT = 443
ETCD_PORT = 2379
KUBELET_PORT = 10250
REGISTRY_PORT = 5000
_INSIDE_URL = f"https://127.0.0.1:{APISERVER_PORT}"  # the API server, from inside the namespace
_START_TIMEOUT = 90.0
_CLONE_NEWNET = 0x40000000
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_POD_LOG_LINKS = Path("/var/log/containers")
_SHIM_SOCKET_DIR = Path("/run/containerd/s")
_CNI_RESULTS = Path("/var/lib/cni/results")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL("libc.so.6", use_errno=True)


def _setns(path: Path) -> None:
    """Move the calling thread (only it) into the network namespace at ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc().setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _run(args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise HarnessError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


# -- leftovers: recorded before they exist, removed by PID, cgroup, socket and mount ---------------


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _kill(pid: int, expect: str) -> None:
    # A PID from a state file may have been reused: only a process still running the recorded
    # program is killed.
    cmd = _cmdline(pid)
    if cmd and expect in " ".join(cmd):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _shims(socket_path: str) -> list[tuple[int, list[str]]]:
    """containerd shims started by the containerd listening on ``socket_path``: they outlive a
    killed containerd (they are reparented), and are found by the address they were given."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        cmd = _cmdline(int(entry.name))
        if cmd and "containerd-shim" in cmd[0] and socket_path in cmd:
            found.append((int(entry.name), cmd))
    return found


def _shim_socket(cmd: list[str]) -> Path | None:
    # containerd 1.6 puts a shim's ttrpc socket at /run/containerd/s/<sha256 of
    # address/namespace/id>, whatever its own state directory: the one file it leaves outside.
    args = dict(zip(cmd[1::2], cmd[2::2], strict=False))
    try:
        joined = os.path.join(args["-address"], args["-namespace"], args["-id"])
    except KeyError:
        return None
    return _SHIM_SOCKET_DIR / hashlib.sha256(joined.encode()).hexdigest()


def _pod_cgroups() -> list[Path]:
    """The kubelet's pod cgroups in every hierarchy, deepest first (one node per machine: every
    ``kubepods`` tree is this node's)."""
    found: list[Path] = []
    for hierarchy in _CGROUP_ROOT.iterdir():
        root = hierarchy / "kubepods"
        if root.is_dir():
            found.extend(p for p in root.rglob("*") if p.is_dir())
            found.append(root)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _kill_pod_processes() -> None:
    for _ in range(50):
        pids: set[int] = set()
        for group in _pod_cgroups():
            procs = group / "cgroup.procs"
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in procs.read_text().split())
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def pod_netns(since: float) -> list[Path]:
    """The pods' network namespaces containerd made (``/run/netns/cni-*``; containerd 1.6 has no
    setting to put them elsewhere) since ``since``: with one node per machine, they are the
    node's."""
    root = Path("/run/netns")
    if not root.is_dir():
        return []
    found = []
    for path in root.glob("cni-*"):
        with contextlib.suppress(OSError):
            if path.lstat().st_mtime >= since:
                found.append(path)
    return found


def _remove_cni_results(since: float) -> None:
    # The CNI library caches each attachment's result in /var/lib/cni/results (not settable in
    # containerd 1.6): this network's, and the loopback ones made while the node ran.
    results = _CNI_RESULTS
    if not results.is_dir():
        return
    for path in results.iterdir():
        with contextlib.suppress(OSError):
            if path.name.startswith(f"{CNI_NETWORK}-") or (
                path.name.startswith("cni-loopback-") and path.lstat().st_mtime >= since
            ):
                path.unlink()
    for directory in (results, results.parent):
        with contextlib.suppress(OSError):
            directory.rmdir()  # only if empty: nothing else uses it


def _remove_netns(path: Path) -> None:
    if _libc().umount2(str(path).encode(), 2) != 0:  # MNT_DETACH
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise HarnessError(f"cannot unmount {path}: {os.strerror(err)}")
    path.unlink(missing_ok=True)


def _unmount_under(root: Path) -> None:
    prefix = str(root) + "/"
    for _ in range(5):
        mounts = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                mounts.append(point)
        if not mounts:
            return
        for point in sorted(mounts, key=len, reverse=True):
            if _libc().umount2(point.encode(), 2) != 0:  # MNT_DETACH
                err = ctypes.get_errno()
                if err not in (errno.EINVAL, errno.ENOENT):
                    raise HarnessError(f"cannot unmount {point}: {os.strerror(err)}")


def sweep(state_file: Path) -> None:
    """Remove everything the node recorded in ``state_file``, whether it stopped or was killed."""
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return
    workdir = Path(state["workdir"])
    for pid, program in state.get("pids", []):
        _kill(pid, program)
    shim_sockets = []
    for pid, cmd in _shims(state["containerd_socket"]):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        shim_sockets.append(_shim_socket(cmd))
    _kill_pod_processes()
    for path in shim_sockets:
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink()
    _unmount_under(workdir)
    started = state.get("started", time.time())
    for path in pod_netns(started):
        _remove_netns(path)
    _remove_cni_results(started)
    for group in _pod_cgroups():
        with contextlib.suppress(OSError):
            group.rmdir()
    if _POD_LOG_LINKS.is_dir():
        for link in _POD_LOG_LINKS.iterdir():
            with contextlib.suppress(OSError):
                if link.is_symlink() and os.readlink(link).startswith(str(workdir) + "/"):
                    link.unlink()
    netns = Path("/run/netns") / state["netns"]
    if netns.exists():
        _run(["ip", "netns", "delete", state["netns"]], check=False)
    shutil.rmtree(workdir, ignore_errors=True)
    for extra in state.get("extra_dirs", []):
        shutil.rmtree(extra, ignore_errors=True)
    state_file.unlink(missing_ok=True)


# -- the node ---------------------------------------------------------------------------------


@dataclass
class Node(AdminAccess):
    """A running single-node cluster; see the module docstring."""

    workdir: Path
    netns_path: Path = field(default_factory=Path)
    processes: dict[str, Process] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    _state: dict[str, Any] = field(default_factory=dict)
    _state_file: Path = field(default_factory=Path)
    _forwarders: list[_Forwarder] = field(default_factory=list)
    _ca: CertificateAuthority | None = None
    url: str = ""  # the API server, as the test process reaches it (a forwarded loopback port)
    registry: str = ""  # host:port of the local OCI registry, once started

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        started = time.monotonic()
        self._state_file = STATE_DIR / "state.json"
        self.pki = self.workdir / "pki"
        self.containerd_socket = self.workdir / "containerd" / "containerd.sock"
        self._state = {
            "workdir": str(self.workdir),
            "netns": NETNS,
            "containerd_socket": str(self.containerd_socket),
            "pids": [],
            "extra_dirs": [],
            # Pod network namespaces made from now on are this node's (a second early for the
            # file times' resolution).
            "started": time.time() - 1,
        }
        self._save_state()
        self._write_pki()
        self._make_netns()
        self._start_control_plane()
        self._start_containerd()
        self._start_kubelet()
        self.wait_node_ready()
        self.timings["node_ready"] = time.monotonic() - started

    def stop(self) -> None:
        for forwarder in self._forwarders:
            forwarder.close()
        self._forwarders.clear()
        # The kubelet first, so it restarts nothing while the rest goes.
        for name in ("kubelet", "kube-scheduler", "kube-controller-manager"):
            if name in self.processes:
                self.processes[name].stop()
        sweep(self._state_file)
        for proc in self.processes.values():
            proc.stop()

    # -- what tests use ----------------------------------------------------------------------

    def in_netns(self, args: list[str]) -> list[str]:
        """``args`` as a command that runs inside the node's network namespace."""
        return ["nsenter", f"--net={self.netns_path}", "--", *args]

    def forward(self, port: int, host: str = "127.0.0.1") -> int:
        """A loopback port of the test process whose connections reach ``host:port`` inside the
        namespace."""
        forwarder = _Forwarder(self.netns_path, (host, port))
        self._forwarders.append(forwarder)
        return forwarder.port

    def start_process(
        self, name: str, args: list[str], env: dict[str, str] | None = None
    ) -> Process:
        """Start a server inside the namespace (recorded for teardown, its log in the workdir)."""
        proc = Process(name, self.in_netns(args), self.workdir / "logs" / f"{name}.log")
        proc.start(env=env)
        assert proc.popen is not None
        self._state["pids"].append([proc.popen.pid, args[0]])
        self._save_state()
        self.processes[name] = proc
        return proc

    @property
    def admin_kubeconfig(self) -> Path:
        """The admin's kubeconfig for tools run inside the namespace (:meth:`in_netns`)."""
        return self.workdir / "admin.kubeconfig"

    def kubeconfig(self, path: Path, *, token: str | None = None, name: str = "node") -> Path:
        """A kubeconfig for a process inside the namespace: the admin's, or ``token``'s."""
        user = self.user(token, self.admin_cert_path, self.admin_key_path)
        path.write_text(kubeconfig_text(_INSIDE_URL, self.ca_path, user, name))
        return path

    # Argo CD's harness runs its processes where :meth:`command` says, and reaches their ports
    # through :meth:`reach`.
    def command(self, args: list[str]) -> list[str]:
        return self.in_netns(args)

    def reach(self, port: int) -> int:
        return self.forward(port)

    def kubectl(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        """``kubectl`` as the admin, run inside the namespace; returns its standard output."""
        cmd = self.in_netns(
            [binary("KUBECTL_BIN", "kubectl"), f"--kubeconfig={self.admin_kubeconfig}", *args]
        )
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise HarnessError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def import_image(self, archive: Path, name: str) -> None:
        """Load an OCI archive into containerd's ``k8s.io`` namespace under ``name``."""
        ctr = shutil.which("ctr") or "/usr/bin/ctr"
        _run(
            [
                ctr,
                f"--address={self.containerd_socket}",
                "--namespace=k8s.io",
                "images",
                "import",
                "--no-unpack",
                f"--index-name={name}",
                str(archive),
            ]
        )

    def start_registry(self) -> str:
        """A local OCI registry (Debian's docker-registry, CNCF distribution) on the bridge
        address, with TLS from the node's CA, which containerd trusts for it. Returns its
        ``host:port``; tools pushing to it trust :attr:`ca_path` (helm: ``SSL_CERT_FILE``)."""
        assert self._ca is not None
        host = f"{GATEWAY_IP}:{REGISTRY_PORT}"
        cert, key = self._ca.issue("registry", ip_addresses=(GATEWAY_IP,), server=True).write(
            self.pki, "registry"
        )
        config = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.workdir / "registry")}},
            "http": {"addr": host, "tls": {"certificate": str(cert), "key": str(key)}},
        }
        path = self.workdir / "registry.yaml"
        path.write_text(yaml.safe_dump(config))
        # containerd reads a registry's hosts.toml at every pull: trust the node's CA for it.
        hosts = self.workdir / "containerd" / "certs.d" / host
        hosts.mkdir(parents=True)
        (hosts / "hosts.toml").write_text(
            f'server = "https://{host}"\n\n[host."https://{host}"]\n'
            f'  capabilities = ["pull", "resolve"]\n  ca = "{self.ca_path}"\n'
        )
        proc = self.start_process(
            "registry", [binary("REGISTRY_BIN", "docker-registry"), "serve", str(path)]
        )
        ctx = ssl.create_default_context(cafile=str(self.ca_path))
        # Verified as the pods see it: the certificate names the bridge address.
        port = self.forward(REGISTRY_PORT, GATEWAY_IP)
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            self._check_alive()
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=2)
                with ctx.wrap_socket(sock, server_hostname=GATEWAY_IP) as tls:
                    tls.sendall(f"GET /v2/ HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
                    if b" 200 " in tls.recv(64):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise HarnessError(f"the registry did not start:\n{proc.tail()}")
            time.sleep(0.1)
        self.registry = host
        return host

    def wait_node_ready(self, timeout: float = _START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            self._check_alive()
            out = self.kubectl(
                "get",
                "node",
                NODE_NAME,
                "-o",
                'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
                check=False,
            )
            if out.strip() == "True":
                return
            last = out
            time.sleep(0.5)
        raise HarnessError(f"node not Ready ({last!r}):\n{self.diagnostics()}")

    def wait_service_account(self, namespace: str, name: str = "default") -> None:
        """The controller manager creates each namespace's ``default`` ServiceAccount (and a
        pod is refused until it exists)."""
        deadline = time.monotonic() + 60
        with contextlib.closing(self.admin_client()) as api:
            core = k8s.CoreV1Api(api)
            while time.monotonic() < deadline:
                try:
                    core.read_namespaced_service_account(name, namespace)
                    return
                except k8s.ApiException as exc:
                    if exc.status != 404:
                        raise
                time.sleep(0.2)
        raise HarnessError(f"no ServiceAccount {namespace}/{name}:\n{self.diagnostics()}")

    def diagnostics(self, namespace: str | None = None, lines: int = 30) -> str:
        """What a failure shows: the namespace's pods and events, each pod's logs (the agent's
        among them), and the tails of the kubelet's and containerd's logs."""
        parts = []
        if namespace is not None:
            for what in (
                ["get", "pods", "-o", "wide"],
                ["get", "events", "--sort-by=.lastTimestamp"],
            ):
                out = self.kubectl("-n", namespace, *what, check=False, timeout=20)
                parts.append(f"--- kubectl -n {namespace} {' '.join(what)}\n{out}")
            pods = self.kubectl(
                "-n", namespace, "get", "pods", "-o", "name", check=False, timeout=20
            ).split()
            for pod in pods:
                for previous in ("", "--previous"):
                    args = ["-n", namespace, "logs", pod, "--all-containers", f"--tail={lines}"]
                    out = self.kubectl(*args, *([previous] if previous else []), check=False)
                    if out:
                        parts.append(f"--- logs {pod} {previous}\n{out}")
        for name in ("kubelet", "containerd"):
            if name in self.processes:
                parts.append(f"--- {name} (last {lines} lines)\n{self.processes[name].tail(lines)}")
        return "\n".join(parts)

    # -- internals -------------------------------------------------------------------------

    def _save_state(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._state))
        tmp.replace(self._state_file)

    def _check_alive(self) -> None:
        for proc in self.processes.values():
            if not proc.running():
                raise HarnessError(f"{proc.name} exited:\n{proc.tail()}")

    def _write_pki(self) -> None:
        (self.workdir / "logs").mkdir()
        # The API server's own PKI as every test API server has it, for the names pods use too.
        self._pki = write_apiserver_pki(
            self.pki,
            ca_name="node-test-ca",
            admin_name="node-admin",
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ip_addresses=("127.0.0.1", SERVICE_IP, GATEWAY_IP),
        )
        ca = self._ca = self._pki.ca
        self.ca_path = self._pki.ca_path
        self.admin_cert_path, self.admin_key_path = self._pki.admin

        def issue(stem: str, cn: str, **kwargs: Any) -> tuple[Path, Path]:
            return ca.issue(cn, **kwargs).write(self.pki, stem)

        # What a node adds: the kubelet's pairs, and the components' identities.
        self.kubelet_client = issue(
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            organizations=("system:masters",),
            client=True,
        )
        self.kubelet_serving = issue(
            "kubelet-serving", NODE_NAME, ip_addresses=("127.0.0.1",), server=True
        )
        identities = {
            "kubelet": (f"system:node:{NODE_NAME}", ("system:nodes",)),
            "kube-controller-manager": ("system:kube-controller-manager", ()),
            "kube-scheduler": ("system:kube-scheduler", ()),
            "admin": ("node-admin", ("system:masters",)),
        }
        for name, (cn, orgs) in identities.items():
            cert, key = (
                (self.admin_cert_path, self.admin_key_path)
                if name == "admin"
                else issue(name, cn, organizations=orgs, client=True)
            )
            user = self.user(None, cert, key)
            path = self.workdir / f"{name}.kubeconfig"
            path.write_text(kubeconfig_text(_INSIDE_URL, self.ca_path, user, "node"))

    def _make_netns(self) -> None:
        _run(["ip", "netns", "add", NETNS])
        self.netns_path = Path("/run/netns") / NETNS

        def ip(*args: str) -> None:
            _run(["ip", "-n", NETNS, *args])

        ip("link", "set", "lo", "up")
        ip("addr", "add", f"{SERVICE_IP}/32", "dev", "lo")
        # The bridge the CNI plugin attaches pods to, made now so its gateway address exists
        # before the first pod: servers bind to it from the start.
        ip("link", "add", BRIDGE, "type", "bridge")
        ip("addr", "add", f"{GATEWAY_IP}/24", "dev", BRIDGE)
        ip("link", "set", BRIDGE, "up")

    def _start_control_plane(self) -> None:
        # etcd fsyncs every write: on tmpfs it costs nothing (a throw-away cluster).
        etcd_data = Path(tempfile.mkdtemp(prefix="node-etcd-", dir=fast_tmp()))
        self._state["extra_dirs"].append(str(etcd_data))
        self._save_state()
        etcd_url = f"http://127.0.0.1:{ETCD_PORT}"
        self.start_process(
            "etcd",
            [
                binary("ETCD_BIN", "etcd"),
                "--name=node",
                f"--data-dir={etcd_data}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                "--listen-peer-urls=http://127.0.0.1:2380",
                "--initial-advertise-peer-urls=http://127.0.0.1:2380",
                "--initial-cluster=node=http://127.0.0.1:2380",
                "--log-level=warn",
            ],
        )
        kubelet_cert, kubelet_key = self.kubelet_client
        self.start_process(
            "kube-apiserver",
            apiserver_args(
                self._pki,
                etcd_url=etcd_url,
                # Every address of the namespace: 10.96.0.1:443 (the `kubernetes` Service) for
                # pods, the bridge for the node, loopback for the components.
                bind="0.0.0.0",  # noqa: S104 - inside the node's own namespace
                advertise=GATEWAY_IP,
                port=APISERVER_PORT,
                service_range=SERVICE_RANGE,
                authorization="Node,RBAC",
                admission=("NodeRestriction",),
                extra=(
                    f"--kubelet-client-certificate={kubelet_cert}",
                    f"--kubelet-client-key={kubelet_key}",
                    f"--kubelet-certificate-authority={self.ca_path}",
                    "--kubelet-preferred-address-types=InternalIP",
                ),
            ),
        )
        self.url = f"https://127.0.0.1:{self.forward(APISERVER_PORT)}"
        self._wait_apiserver()
        self.start_process(
            "kube-controller-manager",
            [
                binary("KUBE_CONTROLLER_MANAGER_BIN", "kube-controller-manager"),
                f"--kubeconfig={self.workdir / 'kube-controller-manager.kubeconfig'}",
                "--use-service-account-credentials",
                f"--root-ca-file={self.ca_path}",
                f"--service-account-private-key-file={self._pki.sa_key_path}",
                f"--service-cluster-ip-range={SERVICE_RANGE}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--cert-dir={self.workdir / 'kube-controller-manager'}",
                f"--flex-volume-plugin-dir={self.workdir / 'volume-plugins'}",
                "--v=1",
            ],
        )
        self.start_process(
            "kube-scheduler",
            [
                binary("KUBE_SCHEDULER_BIN", "kube-scheduler"),
                f"--kubeconfig={self.workdir / 'kube-scheduler.kubeconfig'}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--cert-dir={self.workdir / 'kube-scheduler'}",
                "--v=1",
            ],
        )

    def _wait_apiserver(self) -> None:
        ctx = self.admin_tls()
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            self._check_alive()
            if self.apiserver_ready(ctx):
                return
            time.sleep(0.1)
        raise HarnessError(f"kube-apiserver not ready:\n{self.processes['kube-apiserver'].tail()}")

    def _start_containerd(self) -> None:
        base = self.workdir / "containerd"
        cni_conf = self.workdir / "cni" / "net.d"
        cni_conf.mkdir(parents=True)
        pause_archive = Path(_pause_archive())
        self.pause_image = (pause_archive.parent / "name").read_text().strip()
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = f"""version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{self.containerd_socket}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{base}/opt"
[{cri}]
  sandbox_image = "{self.pause_image}"
  # The machine's capability bounding set lacks CAP_SYS_RESOURCE: runc cannot lower a
  # sandbox's oom_score_adj to -998 (the pod sandbox would never start).
  restrict_oom_score_adj = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{binary("RUNC_BIN", "runc")}"
        Root = "{base}/runc"
  [{cri}.cni]
    bin_dir = "{os.environ.get("CNI_PLUGINS_BIN", "/usr/lib/cni")}"
    conf_dir = "{cni_conf}"
  [{cri}.registry]
    config_path = "{base}/certs.d"
"""
        base.mkdir(exist_ok=True)
        (base / "certs.d").mkdir()
        (base / "config.toml").write_text(config)
        cni = {
            "cniVersion": "0.4.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_SUBNET, "gateway": GATEWAY_IP}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.workdir / "cni" / "ipam"),
                    },
                }
            ],
        }
        (cni_conf / "10-node.conflist").write_text(json.dumps(cni, indent=2))
        self.start_process(
            "containerd",
            [binary("CONTAINERD_BIN", "containerd"), f"--config={base / 'config.toml'}"],
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while not self.containerd_socket.exists():
            self._check_alive()
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"containerd did not start:\n{self.processes['containerd'].tail()}"
                )
            time.sleep(0.05)
        self.import_image(pause_archive, self.pause_image)

    def _start_kubelet(self) -> None:
        root = self.workdir / "kubelet"
        root.mkdir()
        cert, key = self.kubelet_serving
        endpoint = f"unix://{self.containerd_socket}"
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": "127.0.0.1",
            "port": KUBELET_PORT,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.ca_path)},
            },
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(cert),
            "tlsPrivateKeyFile": str(key),
            "containerRuntimeEndpoint": endpoint,
            "imageServiceEndpoint": endpoint,
            "cgroupDriver": "cgroupfs",
            # This machine kind runs cgroup v1 (hybrid); the kubelet refuses it unless told.
            "failCgroupV1": False,
            "failSwapOn": False,
            # The kubelet's own -999 is out of reach without CAP_SYS_RESOURCE, as for runc.
            "oomScoreAdj": 0,
            # `podLogsDir`, not `podLogsDirectory` (silently ignored).
            "podLogsDir": str(self.workdir / "pod-logs"),
            "volumePluginDir": str(self.workdir / "volume-plugins"),
            # Imported images (pause, the agent) can never be pulled again: never collect them,
            # never evict for a nearly full disk.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "1Mi",
                "nodefs.available": "1%",
                "nodefs.inodesFree": "1%",
                "imagefs.available": "1%",
            },
            "nodeStatusUpdateFrequency": "5s",
            "syncFrequency": "10s",
            "rotateCertificates": False,
            "serializeImagePulls": False,
        }
        (root / "config.yaml").write_text(yaml.safe_dump(config))
        self.start_process(
            "kubelet",
            [
                binary("KUBELET_BIN", "kubelet"),
                f"--config={root / 'config.yaml'}",
                f"--kubeconfig={self.workdir / 'kubelet.kubeconfig'}",
                f"--root-dir={root}",
                f"--cert-dir={root / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                "--v=1",
            ],
        )


def _pause_archive() -> str:
    path = os.environ.get("PAUSE_IMAGE_BIN", "")
    if not path or not Path(path).is_file():
        raise HarnessError(
            "the pause image archive was not found: set PAUSE_IMAGE_BIN or run the tests through "
            "`make`, which builds it (tools/install.sh pause-image)."
        )
    return path


class _Forwarder:
    """A loopback listener whose connections are relayed to an address inside a namespace.

    Each connection gets a thread that moves itself into the namespace (setns affects only the
    calling thread) before it connects, then copies bytes both ways until either side closes.
    """

    def __init__(self, netns: Path, target: tuple[str, int]) -> None:
        self._netns, self._target = netns, target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name=f"forward-{self.port}").start()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        try:
            _setns(self._netns)
            upstream = socket.create_connection(self._target, timeout=10)
        except OSError:
            conn.close()
            return
        upstream.settimeout(None)
        with conn, upstream, selectors.DefaultSelector() as sel:
            sel.register(conn, selectors.EVENT_READ, upstream)
            sel.register(upstream, selectors.EVENT_READ, conn)
            while not self._closed.is_set():
                for key, _ in sel.select(timeout=1):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = src.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    try:
                        key.data.sendall(data)
                    except OSError:
                        return


@contextlib.contextmanager
def node(workdir: Path | None = None) -> Iterator[Node]:
    """Start the node and always tear it down; waits while another node runs on the machine."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    lock: IO[str] = (STATE_DIR / "lock").open("w")
    # Held by this process only: a killed run's lock goes with it, and its leftovers are swept
    # here before anything starts.
    fcntl.flock(lock, fcntl.LOCK_EX)
    sweep(STATE_DIR / "state.json")
    root = Path(tempfile.mkdtemp(prefix="node-", dir=workdir or "/var/tmp"))
    instance = Node(root)
    try:
        with sigterm_interrupts():
            try:
                instance.start()
                yield instance
            finally:
                instance.stop()
    finally:
        lock.close()


def pause_pod(n: Node, namespace: str, name: str = "pause") -> dict[str, Any]:
    """A Pod running the sandbox image itself, admitted by the `restricted` Pod Security
    Standard: the smallest real container the node can run without a registry."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65535,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "pause",
                    "image": n.pause_image,
                    "imagePullPolicy": "Never",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def main() -> None:
    """`python -m tests.harness.node`: a node to try things on (and to kill in tests): prints its
    admin kubeconfig (use it with `nsenter --net=/run/netns/<name>`), runs a pause Pod in a
    restricted namespace, and waits until it is stopped."""
    with node() as n:
        n.kubectl("create", "namespace", "demo")
        n.kubectl("label", "namespace", "demo", "pod-security.kubernetes.io/enforce=restricted")
        n.wait_service_account("demo")
        manifest = n.workdir / "pause.json"
        manifest.write_text(json.dumps(pause_pod(n, "demo")))
        n.kubectl("apply", "-f", str(manifest))
        n.kubectl("-n", "demo", "wait", "--for=condition=Ready", "pod/pause", "--timeout=120s")
        print(f"node up in {n.timings['node_ready']:.1f}s", flush=True)
        print(f"netns {n.netns_path} kubeconfig {n.admin_kubeconfig}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
