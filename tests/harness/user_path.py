"""The user's path on a real node, for the e2e tier and `make demo`.

A single-node Kubernetes (:mod:`tests.harness.node`: kubelet, containerd, runc, a CNI bridge) in
a network namespace of its own, with a local OCI registry that `make release` publishes the
chart and the image to. The Teleport stand-in and Argo CD run in the same namespace; the
stand-in puts the node's own API server behind Teleport as the clusters `alpha` and `beta`
(`environment: production`, which the guide's selector picks) and `gamma` (`staging`, left
out). The chart is installed as README tells users - `helm install` from the registry with the
guide's values - plus only what the sandbox forces (the proxy's address, its private CA, the
registry host), into a namespace that enforces the `restricted` Pod Security Standard. The
stand-in is seeded with the YAML the chart's NOTES print and the node's real
`/openid/v1/jwks`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client as k8s

from tests.harness.argocd import ArgoCD, argocd, config_map_manifest
from tests.harness.kube import HarnessError, binary, cluster_secret_data
from tests.harness.node import APISERVER_PORT, GATEWAY_IP, Node, node
from tests.harness.notes import teleport_resources as notes_resources
from tests.harness.standin import StandIn, standin_binary

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "chart" / "ci" / "guide-values.yaml"
TELEPORT_CLUSTER = str(yaml.safe_load(GUIDE.read_text())["clusterName"])
RELEASE = "teleport-argocd-agent"  # README's release name
NAMESPACE = "argocd"
FULLNAME = RELEASE  # a release name holding the chart's name is the objects' name
CONFIG = "/etc/teleport-argocd-agent/config.yaml"
CHART_VERSION = str(yaml.safe_load((ROOT / "chart" / "Chart.yaml").read_text())["version"])
APP_VERSION = str(yaml.safe_load((ROOT / "chart" / "Chart.yaml").read_text())["appVersion"])
JWKS_PLACEHOLDER = "'<paste the output of: kubectl get --raw /openid/v1/jwks>'"
CLUSTERS = {"alpha": "production", "beta": "production", "gamma": "staging"}
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
AGENT_SELECTOR = (
    f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/name=teleport-argocd-agent"
)

T = TypeVar("T")


class PathFailed(HarnessError):
    """A step of the user's path failed; the message holds the node's diagnostics."""


@dataclass
class Sandbox:
    node: Node
    standin: StandIn
    argo: ArgoCD | None
    workdir: Path
    helm_env: dict[str, str]
    values: Path  # the addresses the sandbox forces, as a values file
    timings: dict[str, float] = field(default_factory=dict)
    notes: str = ""

    def helm(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        """helm as a user runs it, on the node (inside its namespace); stdout and stderr."""
        cmd = self.node.in_netns([binary("HELM_BIN", "helm"), *args])
        done = subprocess.run(
            cmd, env=self.helm_env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            self.fail(
                f"helm {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
            )
        return done.stdout + done.stderr

    def fail(self, message: str) -> None:
        raise PathFailed(f"{message}\n{self.node.diagnostics(NAMESPACE)}")

    def wait(self, what: str, predicate: Callable[[], T | None], timeout: float = 120) -> T:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            time.sleep(0.2)
        raise PathFailed(
            f"timed out after {timeout:.0f}s waiting for {what}\n"
            + self.node.diagnostics(NAMESPACE)
        )

    def agent_pods(self, namespace: str = NAMESPACE, selector: str = AGENT_SELECTOR) -> list[Any]:
        with contextlib.closing(self.node.admin_client()) as api:
            pods = k8s.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector)
        return [p for p in pods.items if p.metadata and p.metadata.deletion_timestamp is None]

    def ready_pod(self, namespace: str = NAMESPACE, selector: str = AGENT_SELECTOR) -> Any:
        """The one live agent pod if it is Ready, else None."""
        pods = self.agent_pods(namespace, selector)
        if len(pods) != 1:
            return None
        for condition in pods[0].status.conditions or []:
            if condition.type == "Ready" and condition.status == "True":
                return pods[0]
        return None

    def secrets(self, namespace: str = NAMESPACE) -> list[tuple[str, dict[str, Any]]]:
        with contextlib.closing(self.node.admin_client()) as api:
            return cluster_secret_data(api, namespace)

    def events(self, reason: str, namespace: str = NAMESPACE) -> list[str]:
        with contextlib.closing(self.node.admin_client()) as api:
            items = k8s.CoreV1Api(api).list_namespaced_event(namespace).items
        return [f"{e.reason}: {e.message}" for e in items if e.reason == reason]

    def kubectl_command(self) -> list[str]:
        return [binary("KUBECTL_BIN", "kubectl"), f"--kubeconfig={self.node.admin_kubeconfig}"]

    def kubectl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """kubectl as the admin on the node, as a user types it."""
        cmd = self.node.in_netns([*self.kubectl_command(), *args])
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)

    def exec_agent(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`kubectl exec deploy/<name> -- teleport-argocd-agent ...`, as README says."""
        return self.kubectl(
            "--namespace",
            NAMESPACE,
            "exec",
            f"deploy/{FULLNAME}",
            "--",
            "teleport-argocd-agent",
            *args,
        )

    def install_args(self) -> list[str]:
        """README's `helm install`, word for word apart from the addresses (the registry, and
        the values file the sandbox adds)."""
        chart = f"oci://{self.node.registry}/charts/teleport-argocd-agent"
        return [
            RELEASE,
            chart,
            "--version",
            CHART_VERSION,
            "--namespace",
            NAMESPACE,
            "--values",
            str(GUIDE),
            "--values",
            str(self.values),
        ]

    def install(self) -> str:
        """The Teleport administrator's part (the NOTES of a dry run, so the agent's first join
        meets its token), then `helm install`; waits for the first secret and the pod's Ready.
        Returns helm's output."""
        self.notes = self.helm("install", *self.install_args(), "--dry-run").split("NOTES:", 1)[1]
        self.standin.create(teleport_resources(self.notes, self.node))
        started = time.monotonic()
        out = self.helm("install", *self.install_args())
        self.timings["helm install"] = time.monotonic() - started
        self.wait("the first cluster secret", self.secrets, timeout=180)
        self.timings["first secret"] = time.monotonic() - started
        self.wait("the agent's pod to turn Ready", self.ready_pod, timeout=180)
        self.timings["pod Ready"] = time.monotonic() - started
        self._installed = started
        return out

    def deploy_guestbook(self) -> list[str]:
        """An ApplicationSet (cluster generator on the agent's secrets) deploying a ConfigMap to
        every selected cluster; waits until each Application is Synced. Returns their names."""
        assert self.argo is not None
        assert self.argo.repo is not None
        self.argo.repo.commit(
            {"guestbook/cm.yaml": config_map_manifest("guestbook", {"hello": "node"})}
        )
        self.argo.cluster_generator_set(
            "guestbook",
            selector={"app.kubernetes.io/managed-by": "teleport-argocd-agent"},
            path="guestbook",
            # One namespace per cluster: `alpha` and `beta` are views of the same API server,
            # and two Applications managing one object would take it from each other.
            namespace="guestbook-{{metadata.labels.teleport-argocd-agent/cluster}}",
        )
        names = []
        for _, data in self.secrets():
            name = f"guestbook-{data['name']}"
            self.argo.wait_generated_and_synced("guestbook", name, timeout=180)
            names.append(name)
        self.timings["Applications Synced"] = time.monotonic() - self._installed
        return names


def target(name: str, labels: dict[str, str], n: Node) -> dict[str, Any]:
    """The node's own API server behind the stand-in as Kubernetes cluster ``name``."""
    return {
        "kind": "standin_kube_cluster",
        "version": "v1",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "servers": 1,
            "upstream": {
                "server": f"https://127.0.0.1:{APISERVER_PORT}",
                "ca_file": str(n.ca_path),
                "client_cert_file": str(n.admin_cert_path),
                "client_key_file": str(n.admin_key_path),
            },
        },
    }


def teleport_resources(notes: str, n: Node) -> str:
    """What the NOTES tell the Teleport administrator to `tctl create`, the node's JWKS pasted
    where they say."""
    return notes_resources(notes).replace(JWKS_PLACEHOLDER, f"'{n.jwks()}'")


def prepare_namespace(n: Node, namespace: str, proxy_ca: Path) -> None:
    """A namespace enforcing the `restricted` Pod Security Standard, with the ConfigMap holding
    the proxy's private CA (the chart's teleportProxyCA)."""
    n.kubectl("create", "namespace", namespace)
    n.kubectl("label", "namespace", namespace, *(f"{k}={v}" for k, v in RESTRICTED.items()))
    n.kubectl(
        "--namespace",
        namespace,
        "create",
        "configmap",
        "teleport-proxy-ca",
        f"--from-file=ca.crt={proxy_ca}",
    )
    n.wait_service_account(namespace)


def agent_pid(pod_uid: str) -> int:
    """The node's PID of the agent in a pod. Signals sent from inside the pod to its PID 1 are
    ignored unless it handles them (SIGSTOP never is): tests signal the agent from the node."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cgroup = (entry / "cgroup").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if f"pod{pod_uid}" in cgroup and b"teleport-argocd-agent\0start" in cmdline:
            return int(entry.name)
    raise HarnessError(f"no agent process in pod {pod_uid}")


def container_memory(pod_uid: str, container_id: str) -> tuple[int, int]:
    """(peak usage, limit) in bytes of a container's memory cgroup (cgroup v1, cgroupfs
    driver: kubepods/<qos>/pod<uid>/<container id>)."""
    found = list(Path("/sys/fs/cgroup/memory/kubepods").glob(f"**/pod{pod_uid}/{container_id}"))
    if len(found) != 1:
        raise HarnessError(f"no memory cgroup for container {container_id} of pod {pod_uid}")
    peak = int((found[0] / "memory.max_usage_in_bytes").read_text())
    return peak, int((found[0] / "memory.limit_in_bytes").read_text())


@contextlib.contextmanager
def sandbox(
    workdir: Path, *, clusters: dict[str, str] | None = None, argo_cd: bool = True
) -> Iterator[Sandbox]:
    """The node, its registry holding `make release`'s chart and image, the stand-in (with
    ``clusters``: name -> environment label, default :data:`CLUSTERS`) and Argo CD (unless
    ``argo_cd`` is false); the chart not installed yet."""
    # The image first, outside the node's namespace: a build downloads its wheels from the
    # package index, and `make release` inside the namespace then finds it cached.
    image = subprocess.run(
        ["make", "--no-print-directory", "image"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("MAKE")},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if image.returncode != 0:
        raise PathFailed(f"make image failed:\n{image.stdout}{image.stderr}")
    # Published by ID: the tag is shared by every checkout on the machine, and a later edit of
    # an input would make `make release` build anew inside the namespace, without the index.
    reference = image.stdout.strip().splitlines()[-1]
    inspect = ["inspect", "--type", "image", "--format", "{{.FromImageID}}", reference]
    image_id = subprocess.run(
        [str(ROOT / "tools" / "buildah.sh"), *inspect],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with node() as n:
        started = time.monotonic()
        registry = n.start_registry()
        helm_home = workdir / "helm"
        helm_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MAKE")},
            **{f"HELM_{k}_HOME": str(helm_home / k.lower()) for k in ("CACHE", "CONFIG", "DATA")},
            "KUBECONFIG": str(n.admin_kubeconfig),
            # The registry's certificate comes from the node's test CA.
            "SSL_CERT_FILE": str(n.ca_path),
        }
        release = subprocess.run(
            n.in_netns(
                [
                    "make",
                    "--no-print-directory",
                    "release",
                    f"REGISTRY={registry}",
                    f"REGISTRY_CA={n.ca_path}",
                    f"IMAGE_REF={image_id}",
                ]
            ),
            cwd=ROOT,
            env=helm_env,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        if release.returncode != 0:
            raise PathFailed(f"make release failed:\n{release.stdout}{release.stderr}")
        n.timings["release"] = time.monotonic() - started
        standin = StandIn(
            standin_binary(),
            workdir / "teleport",
            TELEPORT_CLUSTER,
            listen=f"{GATEWAY_IP}:0",
            network=n,
        )
        clusters = CLUSTERS if clusters is None else clusters
        standin.start([target(name, {"environment": env}, n) for name, env in clusters.items()])
        try:
            prepare_namespace(n, NAMESPACE, standin.web_ca_path)
            with contextlib.ExitStack() as stack:
                argo = (
                    stack.enter_context(
                        argocd(n, workdir / "argocd", namespace=NAMESPACE, network=n)
                    )
                    if argo_cd
                    else None
                )
                forced = workdir / "sandbox-values.yaml"
                forced.write_text(
                    yaml.safe_dump(
                        {
                            "teleportProxyAddress": standin.proxy_addr,
                            "teleportProxyCA": {"configMapName": "teleport-proxy-ca"},
                            "image": {
                                "repository": f"{registry}/teleport-argocd-agent/"
                                "teleport-argocd-agent"
                            },
                        }
                    )
                )
                yield Sandbox(n, standin, argo, workdir, helm_env, forced)
        finally:
            standin.stop()
