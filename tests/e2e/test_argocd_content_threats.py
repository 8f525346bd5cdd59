"""What the content of a secret under the agent's name makes real Argo CD do, and that the
chart's admission policy keeps the agent's token from writing it.

The agent's ServiceAccount gets what the chart grants it in Argo CD's namespace (create and patch
on secrets). Without the policy (RBAC only, the chart's `admissionPolicy.enabled: false`), a
secret under the agent's name and owner label is enough for an attacker holding that token:

* a cluster secret whose config holds ``execProviderConfig`` is a command Argo CD's application
  controller runs, as soon as an ApplicationSet cluster generator selecting on its labels (as
  users set it up for the agent's ``secret_labels``) makes an Application for it;
* a repository secret's ``proxy`` is where the repo-server sends its git requests.

With the policy the same requests are refused. Each wait is bounded (2 minutes).
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from agent.argocd import cluster_hash, owner_id
from tests.harness.argocd import ArgoCD, config_map_manifest, tls_client_config
from tests.harness.kube import (
    ControlPlane,
    unique_namespace,
)
from tests.harness.policy import agent_account

pytestmark = pytest.mark.timeout(600)

WAIT = 120.0


class AgentToken:
    """The agent's ServiceAccount as the chart sets it up (token join method): create and patch
    on secrets in Argo CD's namespace, its identity Secret's Role in its own, and (``policy``)
    the chart's admission policy in front of it."""

    def __init__(
        self, kube: ControlPlane, admin: k8s.ApiClient, argo: ArgoCD, workdir: Path, *, policy: bool
    ) -> None:
        self.argo = argo
        self.namespace = unique_namespace(admin, prefix="threat")
        token = agent_account(
            kube,
            admin,
            workdir,
            namespace=self.namespace,
            secret_namespace=argo.namespace,
            policy_proxy="teleport.example.com:443" if policy else None,
        )
        self.api = k8s.ApiClient(kube.configuration(token=token))
        self.core = k8s.CoreV1Api(self.api)

    def secret(self, cluster: str, secret_type: str, data: dict[str, str], **labels: str) -> Any:
        """A secret under the agent's own name and labels; only its content is the attacker's."""
        body = {
            "metadata": {
                "name": f"teleport.argocd-cluster.{cluster_hash('root', cluster)}",
                "labels": {
                    "argocd.argoproj.io/secret-type": secret_type,
                    "app.kubernetes.io/managed-by": "teleport-argocd-agent",
                    "teleport-argocd-agent/owner": owner_id(f"{self.namespace}/agent", "argo-cd"),
                    **labels,
                },
            },
            "type": "Opaque",
            "stringData": data,
        }
        return self.core.create_namespaced_secret(self.argo.namespace, body)

    def close(self) -> None:
        self.api.close()


@pytest.fixture
def tokens(
    kube: ControlPlane, admin_api: k8s.ApiClient, argo: ArgoCD, tmp_path: Path
) -> Iterator[Any]:
    made: list[AgentToken] = []

    def make(*, policy: bool) -> AgentToken:
        workdir = tmp_path / f"policy-{len(made)}"
        workdir.mkdir()
        made.append(AgentToken(kube, admin_api, argo, workdir, policy=policy))
        return made[-1]

    yield make
    for token in made:
        token.close()


def _denied_by_policy(call: Any, rule: str) -> None:
    with pytest.raises(ApiException) as denied:
        call()
    assert denied.value.status == 403, denied.value.body
    assert "ValidatingAdmissionPolicy" in str(denied.value.body), denied.value.body
    assert rule in str(denied.value.body), denied.value.body


def _exec_config(target: ControlPlane, marker: Path) -> str:
    return json.dumps(
        {
            "execProviderConfig": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": "/bin/sh",
                "args": ["-c", f"echo ran > {marker}; exit 1"],
            },
            "tlsClientConfig": {
                "insecure": False,
                "caData": base64.b64encode(target.ca_path.read_bytes()).decode(),
            },
        }
    )


def test_exec_provider_in_a_cluster_secret_runs_in_argocd_unless_the_policy_refuses_it(
    tokens: Any, argo: ArgoCD, target: ControlPlane, admin_api: k8s.ApiClient, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:6]
    marker = tmp_path / f"exec-{run}"
    assert argo.repo is not None
    argo.repo.commit({f"threat-{run}/cm.yaml": config_map_manifest("threat", {"x": run})})
    unguarded = tokens(policy=False)
    name = f"threat-{run}"
    secret = unguarded.secret(
        name,
        "cluster",
        {"name": name, "server": target.url, "config": _exec_config(target, marker)},
        team=f"threat-{run}",
    )
    argo.cluster_generator_set(
        name, selector={"team": f"threat-{run}"}, path=f"threat-{run}", namespace=f"threat-{run}"
    )
    try:
        argo.wait_for(
            lambda: marker.read_text() if marker.exists() else None,
            "Argo CD to run the cluster secret's exec provider",
            WAIT,
            ("applicationsets", name),
        )
    finally:
        argo.delete("applicationsets", name)
        k8s.CoreV1Api(admin_api).delete_namespaced_secret(secret.metadata.name, argo.namespace)
    assert marker.read_text() == "ran\n"

    guarded = tokens(policy=True)
    other = tmp_path / f"exec-{run}-guarded"
    _denied_by_policy(
        lambda: guarded.secret(
            f"guarded-{run}",
            "cluster",
            {
                "name": name,
                "server": "https://teleport.example.com:443/v1/teleport/cm9vdA/eA",
                "config": _exec_config(target, other),
            },
        ),
        "data.config must be the agent's canonical form",
    )
    assert not other.exists()


class ProxyListener:
    """A loopback TCP listener that records the first line each connection sends."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    self.lines.append(conn.recv(4096).decode(errors="replace").split("\r\n")[0])
                except OSError:
                    continue

    def close(self) -> None:
        self.sock.close()


def test_repository_secret_proxy_carries_argocd_git_requests_unless_the_policy_refuses_it(
    tokens: Any, argo: ArgoCD, target: ControlPlane, admin_api: k8s.ApiClient
) -> None:
    run = uuid.uuid4().hex[:6]
    # A cluster Argo CD can reach, so it goes on to ask the repo-server for the manifests.
    argo.write_cluster_secret(f"target-{run}", server=target.url, config=tls_client_config(target))
    url = f"https://git.threat-{run}.invalid/deployments.git"
    listener = ProxyListener()
    unguarded = tokens(policy=False)
    repository = {
        "type": "git",
        "url": url,
        "proxy": f"http://127.0.0.1:{listener.port}",
        "insecure": "true",
    }
    secret = unguarded.secret(f"repo-{run}", "repository", repository)
    custom = k8s.CustomObjectsApi(admin_api)
    app = f"threat-repo-{run}"
    custom.create_namespaced_custom_object(
        "argoproj.io",
        "v1alpha1",
        argo.namespace,
        "applications",
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": app},
            "spec": {
                "project": "default",
                "source": {"repoURL": url, "path": ".", "targetRevision": "HEAD"},
                "destination": {"server": target.url, "namespace": f"threat-{run}"},
            },
        },
    )
    try:
        line = argo.wait_for(
            lambda: next((x for x in listener.lines if f"git.threat-{run}.invalid" in x), None),
            "the repo-server to connect through the repository secret's proxy",
            WAIT,
            ("applications", app),
        )
    finally:
        argo.delete("applications", app)
        argo.delete_cluster_secret(f"target-{run}")
        k8s.CoreV1Api(admin_api).delete_namespaced_secret(secret.metadata.name, argo.namespace)
        listener.close()
    assert line.startswith(f"CONNECT git.threat-{run}.invalid:443"), line

    guarded = tokens(policy=True)
    for secret_type in ("repository", "repo-creds"):
        _denied_by_policy(
            lambda t=secret_type: guarded.secret(f"repo-{run}-{t}", t, repository),
            "may write only Argo CD cluster secrets",
        )
