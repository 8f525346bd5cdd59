"""Real Argo CD on loopback: application controller, repo-server and ApplicationSet controller.

The three components run as processes of the one multi-call binary built from Argo CD's Go module
(``ARGOCD_BIN``, filled by ``make`` from the tool cache), against a management API server (a
:class:`~tests.harness.kube.ControlPlane`), with Debian's ``redis-server`` (``REDIS_BIN``) as their
cache. The CRDs and base ConfigMaps/Secret come from the module's own ``manifests/`` in the Go
module cache, so they always match the binary. Applications take their manifests from a git
repository on disk (``file://``): no git server is involved.

Argo CD reads cluster secrets from its namespace on the management API server; tests write them
there (by hand, or through the agent) and assert on what Argo CD does with them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.harness.kube import ControlPlane, HarnessError, Process, binary, free_port
from tests.harness.procfs import status_kib

ROOT = Path(__file__).resolve().parents[2]
ARGOCD_MODULE = "github.com/argoproj/argo-cd/v3"
GROUP, VERSION = "argoproj.io", "v1alpha1"
CLUSTER_SECRET_LABEL = "argocd.argoproj.io/secret-type"
_START_TIMEOUT = 60.0
# The components Argo CD's multi-call binary becomes, chosen by the name it is started under.
_COMPONENTS = (
    "argocd-application-controller",
    "argocd-repo-server",
    "argocd-applicationset-controller",
)

T = TypeVar("T")


class ManagementAPI(Protocol):
    """What Argo CD needs of the API server it runs against (a ControlPlane, or a test node)."""

    def admin_client(self) -> k8s.ApiClient: ...

    def kubeconfig(self, path: Path, *, token: str | None = None, name: str = "test") -> Path: ...


class Network(Protocol):
    """Where Argo CD's processes run: ``command`` wraps a command line (e.g. into a network
    namespace), ``reach`` maps a port they listen on to one this process can connect to."""

    def command(self, args: list[str]) -> list[str]: ...

    def reach(self, port: int) -> int: ...


class _Loopback:
    def command(self, args: list[str]) -> list[str]:
        return args

    def reach(self, port: int) -> int:
        return port


def tool_versions() -> dict[str, str]:
    """The pins of ``tools/versions.env`` (plain ``NAME=value`` lines)."""
    pins = {}
    for line in (ROOT / "tools" / "versions.env").read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            pins[name.strip()] = value.strip()
    return pins


def module_dir() -> Path:
    """Argo CD's module directory in the Go module cache (downloaded if it is missing).

    Asked of ``go`` in ``tools/argocd``, the module that builds the binary, so the manifests are
    those of the version the binary was built from.
    """
    pins = tool_versions()
    env = {**os.environ, "GOTOOLCHAIN": pins["ARGOCD_GO_TOOLCHAIN"]}
    try:
        out = subprocess.run(
            ["go", "mod", "download", "-json", ARGOCD_MODULE],
            cwd=ROOT / "tools" / "argocd",
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        ).stdout
    except (OSError, subprocess.SubprocessError) as err:
        detail = getattr(err, "stderr", "") or str(err)
        raise HarnessError(f"could not locate Argo CD's Go module: {detail}") from err
    info = json.loads(out)
    if info.get("Version") != f"v{pins['ARGOCD_VERSION']}":
        raise HarnessError(
            f"tools/argocd/go.mod requires Argo CD {info.get('Version')}, but tools/versions.env "
            f"pins ARGOCD_VERSION={pins['ARGOCD_VERSION']}: make them equal."
        )
    return Path(info["Dir"])


def _load_yaml(path: Path) -> dict[str, Any]:
    # The ApplicationSet CRD is 1.5 MB of YAML: libyaml parses it in a fraction of the time.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    doc = yaml.load(path.read_text(), Loader=loader)  # noqa: S506 - a safe loader
    if not isinstance(doc, dict):
        raise HarnessError(f"{path} is not one YAML object")
    return doc


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def tls_client_config(plane: ControlPlane) -> dict[str, Any]:
    """An Argo CD cluster ``config`` reaching ``plane`` directly with its admin certificate."""
    return {
        "tlsClientConfig": {
            "insecure": False,
            "caData": _b64(plane.ca_path.read_bytes()),
            "certData": _b64(plane.admin_cert_path.read_bytes()),
            "keyData": _b64(plane.admin_key_path.read_bytes()),
        }
    }


def config_map_manifest(name: str, data: Mapping[str, str]) -> str:
    """A ConfigMap as YAML, the smallest object Argo CD syncs and reports Healthy."""
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": dict(data)}
    # JSON, which is YAML too, quotes every string: PyYAML leaves a value such as 574e25 bare
    # (a string to YAML 1.1), and Argo CD's YAML reader takes that for a number.
    return json.dumps(doc, indent=2) + "\n"


# -- git repository --------------------------------------------------------------------------


class GitRepository:
    """A git repository on disk that Argo CD reads through a ``file://`` URL."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self._git("init", "--quiet", "--initial-branch=main")

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def commit(self, files: Mapping[str, str], message: str = "test manifests") -> str:
        """Write ``files`` (path relative to the repository -> text), commit, return the SHA."""
        for relative, text in files.items():
            target = self.path / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        self._git("add", "--all")
        self._git("commit", "--quiet", "--allow-empty", "-m", message)
        return self._git("rev-parse", "HEAD").strip()

    def _git(self, *args: str) -> str:
        # Fixed identity and no signing, so neither the user's nor the system's git config matters.
        return subprocess.run(
            [
                "git",
                "-c",
                "user.name=teleport-argocd-agent tests",
                "-c",
                "user.email=tests@teleport-argocd-agent.invalid",
                "-c",
                "commit.gpgsign=false",
                *args,
            ],
            cwd=self.path,
            env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull},
            capture_output=True,
            text=True,
            check=True,
        ).stdout


# -- Argo CD -----------------------------------------------------------------------------------


@dataclass
class ArgoCD:
    """Argo CD's controllers and repo-server running against ``plane`` in ``namespace``."""

    plane: ManagementAPI
    workdir: Path
    namespace: str = "argocd"
    network: Network = field(default_factory=_Loopback)
    processes: dict[str, Process] = field(default_factory=dict)
    repo: GitRepository | None = None
    startup_seconds: float = 0.0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        started = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.repo = GitRepository(self.workdir / "repo")
        module = module_dir()
        self._api = self.plane.admin_client()
        crds = self._install_manifests(module)
        env = self._environment(module)
        # The API server takes seconds to establish the large ApplicationSet CRD: start what does
        # not need the CRDs meanwhile.
        redis_port = self._start_redis(env)
        repo_port = self._start_repo_server(env, redis_port)
        self._wait_established(crds)
        self._start_controllers(env, redis_port, repo_port)
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        for proc in reversed(list(self.processes.values())):
            proc.stop()
        api = getattr(self, "_api", None)
        if api is not None:
            api.close()

    # -- objects ---------------------------------------------------------------------------

    def create_project(
        self,
        name: str,
        *,
        destinations: list[dict[str, str]],
        cluster_resources: list[dict[str, str]] | None = None,
        source_repos: list[str] | None = None,
    ) -> dict[str, Any]:
        """An AppProject: where its applications may deploy and which cluster-scoped kinds."""
        spec: dict[str, Any] = {
            "sourceRepos": source_repos or ["*"],
            "destinations": destinations,
            "clusterResourceWhitelist": cluster_resources or [],
        }
        return self._create("appprojects", "AppProject", name, spec)

    def create_application(
        self,
        name: str,
        *,
        path: str,
        namespace: str,
        server: str | None = None,
        cluster: str | None = None,
        project: str = "default",
        revision: str = "HEAD",
        automated: bool = True,
        labels: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """An Application deploying ``path`` of the test repository to the cluster given by its
        ``server`` URL or its ``cluster`` name, into ``namespace`` (created by the sync)."""
        if (server is None) == (cluster is None):
            raise ValueError("give exactly one of server= or cluster=")
        destination = {"namespace": namespace}
        destination.update({"server": server} if server is not None else {"name": str(cluster)})
        spec = self.application_template(path, destination, revision, automated)
        return self._create(
            "applications", "Application", name, {"project": project, **spec}, labels=labels
        )

    def application_template(
        self,
        path: str,
        destination: Mapping[str, str],
        revision: str = "HEAD",
        automated: bool = True,
    ) -> dict[str, Any]:
        """The source/destination/sync part of an Application spec (also for ApplicationSets)."""
        assert self.repo is not None
        spec: dict[str, Any] = {
            "source": {"repoURL": self.repo.url, "path": path, "targetRevision": revision},
            "destination": dict(destination),
            "syncPolicy": {"syncOptions": ["CreateNamespace=true"]},
        }
        if automated:
            spec["syncPolicy"]["automated"] = {"prune": True, "selfHeal": True}
        return spec

    def create_application_set(self, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        return self._create("applicationsets", "ApplicationSet", name, dict(spec))

    def cluster_generator_set(
        self,
        name: str,
        *,
        selector: Mapping[str, str],
        path: str,
        namespace: str,
        project: str = "default",
    ) -> dict[str, Any]:
        """An ApplicationSet with a cluster generator: one Application per cluster secret whose
        labels match ``selector``, named ``<name>-<cluster name>``."""
        template = self.application_template(path, {"server": "{{server}}", "namespace": namespace})
        return self.create_application_set(
            name,
            {
                "generators": [{"clusters": {"selector": {"matchLabels": dict(selector)}}}],
                # Otherwise the generated Applications get Argo CD's resources finalizer, whose
                # foreground deletion waits for a garbage collector the target API servers here
                # do not run: an Application whose cluster leaves the selector would never go.
                "syncPolicy": {"preserveResourcesOnDeletion": True},
                "template": {
                    "metadata": {"name": f"{name}-{{{{name}}}}"},
                    "spec": {"project": project, **template},
                },
            },
        )

    def write_cluster_secret(
        self,
        name: str,
        *,
        server: str,
        config: Mapping[str, Any] | str,
        cluster_name: str | None = None,
        labels: Mapping[str, str] | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        """Create or replace an Argo CD cluster secret; a ``str`` config is written verbatim
        (for configs Argo CD cannot parse)."""
        data = {
            "name": cluster_name or name,
            "server": server,
            "config": config if isinstance(config, str) else json.dumps(config),
            **(extra or {}),
        }
        body = k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(
                name=name,
                namespace=self.namespace,
                labels={**(labels or {}), CLUSTER_SECRET_LABEL: "cluster"},
            ),
            type="Opaque",
            string_data=data,
        )
        core = k8s.CoreV1Api(self._api)
        try:
            core.create_namespaced_secret(self.namespace, body)
        except ApiException as err:
            if err.status != 409:
                raise
            core.replace_namespaced_secret(name, self.namespace, body)

    def delete_cluster_secret(self, name: str) -> None:
        with contextlib.suppress(ApiException):
            k8s.CoreV1Api(self._api).delete_namespaced_secret(name, self.namespace)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        obj = k8s.CustomObjectsApi(self._api).get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, name
        )
        return _object(obj)

    def delete(self, plural: str, name: str) -> None:
        with contextlib.suppress(ApiException):
            k8s.CustomObjectsApi(self._api).delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name
            )

    def application_names(self) -> list[str]:
        items = _object(
            k8s.CustomObjectsApi(self._api).list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "applications"
            )
        )["items"]
        return sorted(item["metadata"]["name"] for item in items)

    def refresh_application_set(self, name: str) -> None:
        """Make the ApplicationSet controller reconcile ``name`` now (any change to it does)."""
        k8s.CustomObjectsApi(self._api).patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            "applicationsets",
            name,
            {"metadata": {"annotations": {"tests/refreshed": uuid.uuid4().hex}}},
        )

    def refresh_application(self, name: str) -> None:
        """Ask the application controller to compare ``name`` with git and the cluster now."""
        k8s.CustomObjectsApi(self._api).patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            "applications",
            name,
            {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}},
        )

    # -- waiting ---------------------------------------------------------------------------

    def wait_synced(self, name: str, timeout: float = 90.0) -> dict[str, Any]:
        """Wait until Application ``name`` is Synced and Healthy and its last sync succeeded."""

        def synced() -> dict[str, Any] | None:
            app = self._get_or_none("applications", name)
            status = (app or {}).get("status", {})
            phase = status.get("operationState", {}).get("phase", "Succeeded")
            if (
                status.get("sync", {}).get("status") == "Synced"
                and status.get("health", {}).get("status") == "Healthy"
                and phase == "Succeeded"
            ):
                return app
            return None

        return self.wait_for(
            synced, f"Application {name} to be Synced and Healthy", timeout, ("applications", name)
        )

    def wait_generated_and_synced(
        self, appset: str, name: str, timeout: float = 90.0
    ) -> dict[str, Any]:
        """Wait for ApplicationSet ``appset`` to generate Application ``name`` and for it to sync.

        The ApplicationSet controller reacts to a new cluster secret at once, but validates the
        generated Application against a cluster cache of its own that may not hold the secret
        yet; it then gives up ("error getting cluster by server") and retries only after 3
        minutes. The secret is in place by then, so this asks for the retry every 10 s.
        """
        deadline = time.monotonic() + timeout
        refresh = time.monotonic() + 10
        while name not in self.application_names():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{name} not generated\n{self.report(('applicationsets', appset))}"
                )
            if time.monotonic() > refresh:
                self.refresh_application_set(appset)
                refresh = time.monotonic() + 10
            time.sleep(0.5)
        return self.wait_synced(name, timeout=max(deadline - time.monotonic(), 30))

    def wait_application_condition(
        self, name: str, message: str, timeout: float = 60.0
    ) -> dict[str, Any]:
        """Wait until Application ``name`` has a condition whose message contains ``message``
        (how Argo CD reports what it refuses to deploy); return the condition."""

        def found() -> dict[str, Any] | None:
            app = self._get_or_none("applications", name) or {}
            for cond in app.get("status", {}).get("conditions", []):
                if message in cond.get("message", ""):
                    return dict(cond)
            return None

        return self.wait_for(
            found, f"Application {name} condition {message!r}", timeout, ("applications", name)
        )

    def wait_application_set_condition(
        self,
        name: str,
        condition: str,
        status: str = "True",
        *,
        message: str = "",
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """Wait until ApplicationSet ``name`` has ``condition`` at ``status`` (and its message
        contains ``message``); return the condition."""

        def found() -> dict[str, Any] | None:
            appset = self._get_or_none("applicationsets", name) or {}
            for cond in appset.get("status", {}).get("conditions", []):
                if (
                    cond.get("type") == condition
                    and cond.get("status") == status
                    and message in cond.get("message", "")
                ):
                    return dict(cond)
            return None

        return self.wait_for(
            found,
            f"ApplicationSet {name} condition {condition}={status} {message!r}",
            timeout,
            ("applicationsets", name),
        )

    def wait_for(
        self,
        check: Callable[[], T | None],
        what: str,
        timeout: float,
        dump: tuple[str, str] | None = None,
    ) -> T:
        """Poll ``check`` until it returns a value; on timeout raise with the object's status and
        the tail of every component's log."""
        deadline = time.monotonic() + timeout
        while True:
            for proc in self.processes.values():
                if not proc.running():
                    raise AssertionError(
                        f"{proc.name} exited while waiting for {what}\n{self.report()}"
                    )
            value = check()
            if value is not None:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f}s waiting for {what}\n{self.report(dump)}"
                )
            time.sleep(0.25)

    def report(self, dump: tuple[str, str] | None = None) -> str:
        """The status of one object (if given) and the log tail of every component."""
        parts = []
        if dump is not None:
            obj = self._get_or_none(*dump)
            status = yaml.safe_dump((obj or {}).get("status", {}), sort_keys=False)
            parts.append(f"--- {dump[0]}/{dump[1]} status:\n{status if obj else '(not found)'}")
        for proc in reversed(list(self.processes.values())):
            parts.append(f"--- {proc.name} log ({proc.log_path}), last lines:\n{proc.tail(30)}")
        return "\n".join(parts)

    def rss_bytes(self, component: str) -> int:
        """Resident memory of one running component (``VmRSS``)."""
        popen = self.processes[component].popen
        assert popen is not None
        return status_kib(popen.pid, "VmRSS") * 1024

    # -- internals -------------------------------------------------------------------------

    def _create(
        self,
        plural: str,
        kind: str,
        name: str,
        spec: dict[str, Any],
        labels: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "metadata": {"name": name, "namespace": self.namespace, "labels": dict(labels or {})},
            "spec": spec,
        }
        obj = k8s.CustomObjectsApi(self._api).create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, body
        )
        return _object(obj)

    def _get_or_none(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            return self.get(plural, name)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def _install_manifests(self, module: Path) -> list[str]:
        """Argo CD's CRDs and base configuration from the module; returns the CRDs' names."""
        ext = k8s.ApiextensionsV1Api(self._api)
        crds = []
        for path in sorted((module / "manifests" / "crds").glob("*-crd.yaml")):
            doc = _load_yaml(path)
            crds.append(str(doc["metadata"]["name"]))
            with contextlib.suppress(_AlreadyExists):
                _created(ext.create_custom_resource_definition, doc)
        core = k8s.CoreV1Api(self._api)
        with contextlib.suppress(_AlreadyExists):
            _created(core.create_namespace, {"metadata": {"name": self.namespace}})
        for path in sorted((module / "manifests" / "base" / "config").glob("argocd-*.yaml")):
            doc = _load_yaml(path)
            if doc["kind"] == "Secret":
                # Argo CD's API server generates this key on first start; it is not run here, and
                # the ApplicationSet controller will not serve its webhook without one.
                doc["stringData"] = {"server.secretkey": secrets.token_urlsafe(32)}
            create = (
                core.create_namespaced_secret
                if doc["kind"] == "Secret"
                else core.create_namespaced_config_map
            )
            with contextlib.suppress(_AlreadyExists):
                _created(create, doc, self.namespace)
        return crds

    def _wait_established(self, names: list[str]) -> None:
        """Wait for the CRDs, then add the ``default`` project (which Argo CD's API server would
        create; it is not run here)."""
        ext = k8s.ApiextensionsV1Api(self._api)
        deadline = time.monotonic() + _START_TIMEOUT
        while not all(self._established(ext, name) for name in names):
            if time.monotonic() > deadline:
                raise HarnessError(f"Argo CD's CRDs were not established: {names}")
            time.sleep(0.1)
        try:
            self.create_project(
                "default",
                destinations=[{"server": "*", "name": "*", "namespace": "*"}],
                cluster_resources=[{"group": "*", "kind": "*"}],
            )
        except ApiException as err:
            if err.status != 409:
                raise

    @staticmethod
    def _established(ext: k8s.ApiextensionsV1Api, name: str) -> bool:
        resp: Any = ext.read_custom_resource_definition(name, _preload_content=False)
        conditions = (json.loads(resp.data).get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    def _environment(self, module: Path) -> dict[str, str]:
        """Environment of every component: the binary under each component's name and Argo CD's
        git signature wrapper on PATH, and a HOME/TMPDIR of their own."""
        argocd = binary("ARGOCD_BIN", "argocd")
        bin_dir = self.workdir / "bin"
        bin_dir.mkdir(exist_ok=True)
        for component in _COMPONENTS:
            link = bin_dir / component
            link.unlink(missing_ok=True)
            link.symlink_to(argocd)
        # The repo-server runs `git-verify-wrapper.sh <revision>` for every manifest generation.
        # Module cache files are read-only and not executable, so run it through sh.
        wrapper = bin_dir / "git-verify-wrapper.sh"
        wrapper.write_text(f'#!/bin/sh\nexec /bin/sh "{module}/hack/git-verify-wrapper.sh" "$@"\n')
        wrapper.chmod(0o755)
        home, tmp = self.workdir / "home", self.workdir / "tmp"
        home.mkdir(exist_ok=True)
        tmp.mkdir(exist_ok=True)
        kubeconfig = self.plane.kubeconfig(self.workdir / "kubeconfig", name="management")
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("ARGOCD_", "REDIS_", "KUBECONFIG"))
        }
        env.update(
            PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            HOME=str(home),
            TMPDIR=str(tmp),
            # controller-runtime (the ApplicationSet controller) reads only KUBECONFIG.
            KUBECONFIG=str(kubeconfig),
            # No GnuPG keyring is set up: signature verification is not under test.
            ARGOCD_GPG_ENABLED="false",
            ARGOCD_GNUPGHOME=str(self.workdir / "gnupg"),
            GIT_CONFIG_NOSYSTEM="1",
        )
        self._kubeconfig = kubeconfig
        self._bin_dir = bin_dir
        return env

    def _process(self, name: str, args: list[str], env: dict[str, str]) -> Process:
        proc = Process(name, self.network.command(args), self.workdir / f"{name}.log")
        self.processes[name] = proc
        proc.start(env=env)
        return proc

    def _start_redis(self, env: dict[str, str]) -> int:
        port = free_port()
        data = self.workdir / "redis"
        data.mkdir(exist_ok=True)
        proc = self._process(
            "redis-server",
            [
                binary("REDIS_BIN", "redis-server"),
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(data),
            ],
            env,
        )
        reached = self.network.reach(port)
        self._wait(proc, lambda: _redis_pong(reached))
        return port

    def _start_repo_server(self, env: dict[str, str], redis_port: int) -> int:
        port = free_port()
        proc = self._process(
            "argocd-repo-server",
            [
                str(self._bin_dir / "argocd-repo-server"),
                "--address=127.0.0.1",
                f"--port={port}",
                "--metrics-address=127.0.0.1",
                f"--metrics-port={free_port()}",
                f"--redis=127.0.0.1:{redis_port}",
                # Plain gRPC on loopback; without an empty client CA path it refuses to start,
                # looking for the CA file of its in-cluster mTLS setup.
                "--disable-tls",
                "--client-ca-path=",
                "--logformat=text",
            ],
            env,
        )
        reached = self.network.reach(port)
        self._wait(proc, lambda: _accepts(reached))
        return port

    def _start_controllers(self, env: dict[str, str], redis_port: int, repo_port: int) -> None:
        common = [
            f"--kubeconfig={self._kubeconfig}",
            f"--namespace={self.namespace}",
            "--repo-server-plaintext",
            "--logformat=text",
        ]
        metrics = free_port()
        controller = self._process(
            "argocd-application-controller",
            [
                str(self._bin_dir / "argocd-application-controller"),
                *common,
                f"--repo-server=127.0.0.1:{repo_port}",
                f"--redis=127.0.0.1:{redis_port}",
                f"--metrics-port={metrics}",
                # A test suite's handful of applications needs few workers.
                "--status-processors=4",
                "--operation-processors=2",
            ],
            env,
        )
        appset_metrics = free_port()
        appset = self._process(
            "argocd-applicationset-controller",
            [
                str(self._bin_dir / "argocd-applicationset-controller"),
                *common,
                f"--argocd-repo-server=127.0.0.1:{repo_port}",
                f"--metrics-addr=127.0.0.1:{appset_metrics}",
                f"--probe-addr=127.0.0.1:{free_port()}",
                f"--webhook-addr=127.0.0.1:{free_port()}",
            ],
            env,
        )
        metrics, appset_metrics = self.network.reach(metrics), self.network.reach(appset_metrics)
        self._wait(controller, lambda: _http_ok(f"http://127.0.0.1:{metrics}/healthz"))
        # It registers no health checks: metrics are served once its manager has started.
        self._wait(appset, lambda: _http_ok(f"http://127.0.0.1:{appset_metrics}/metrics"))

    def _wait(self, proc: Process, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while not ready():
            if not proc.running():
                raise HarnessError(f"{proc.name} exited during start-up:\n{proc.tail()}")
            if time.monotonic() > deadline:
                raise HarnessError(f"{proc.name} did not become ready:\n{proc.tail()}")
            time.sleep(0.1)


def _object(value: object) -> dict[str, Any]:
    """The custom-objects API answers with plain JSON objects; say so to the type checker."""
    if not isinstance(value, dict):
        raise HarnessError(f"expected a JSON object from the API server, got {type(value)}")
    return value


class _AlreadyExists(Exception):
    pass


def _created(create: Callable[..., Any], body: dict[str, Any], *args: str) -> None:
    """Call a client ``create_*`` with a plain dict, without decoding the answer into models
    (slow for the large CRDs); an existing object raises ``_AlreadyExists``."""
    try:
        create(*args, body, _preload_content=False)
    except ApiException as err:
        if err.status == 409:
            raise _AlreadyExists from err
        raise


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _redis_pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback URL we built
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def argocd(plane: ManagementAPI, workdir: Path | None = None, **kwargs: Any) -> Iterator[ArgoCD]:
    """Start Argo CD against ``plane`` and always stop it, however the body ends."""
    own_dir = workdir is None
    root = Path(tempfile.mkdtemp(prefix="argocd-test-")) if workdir is None else workdir
    instance = ArgoCD(plane, root, **kwargs)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()
        if own_dir:
            shutil.rmtree(root, ignore_errors=True)
