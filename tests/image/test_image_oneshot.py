"""The built image does the agent's job for real: ``start --oneshot`` inside it, as the image's
non-root user on a read-only root filesystem (``tools/image-run.sh``, as a restricted pod), joins
the Teleport stand-in and writes the Argo CD cluster secrets into the management API server.

Everything the pod would get from the chart is a read-only volume: the agent config (the
chart's kubernetes-method shape), the projected service-account token, a kubeconfig standing in
for the in-cluster credentials and the proxy's private web CA. The network is the machine's, so
the stand-in and the API servers on loopback are reachable from inside.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from tests.harness.agent_e2e import argocd_readable_secrets
from tests.harness.kube import (
    ControlPlane,
    agent_namespace,
    control_plane,
    pod_bound_token,
    service_account_token,
)
from tests.harness.standin import (
    StandIn,
    bot_doc,
    kube_cluster_doc,
    kubernetes_token_doc,
    role_doc,
    standin,
)
from tests.image.container import build_image, run_image

# The image builds on first use (about a minute when agent/ changed); the run itself is seconds.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

CLUSTER = "root"


@pytest.fixture(scope="module")
def image() -> str:
    return build_image()


@pytest.fixture(scope="module")
def teleport(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StandIn, ControlPlane]]:
    with control_plane(tmp_path_factory.mktemp("image-target")) as target:
        resources = [
            role_doc("argocd-access", kubernetes_labels={"*": "*"}, kubernetes_groups=["g"]),
            bot_doc("argocd", ["argocd-access"]),
            kube_cluster_doc("alpha", target, labels={"env": "prod"}),
            kube_cluster_doc("beta", target, labels={"env": "dev"}),
        ]
        with standin(resources, workdir=tmp_path_factory.mktemp("image-teleport")) as server:
            yield server, target


def _readable_dir(path: Path) -> Path:
    # The image's user must read the volume; pytest's temporary directories are 0700.
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    return path


def _kubeconfig(kube: ControlPlane, token: str) -> str:
    """Self-contained (the CA inline): no path of this machine exists inside the image."""
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "management",
                    "cluster": {
                        "server": kube.url,
                        "certificate-authority-data": base64.b64encode(
                            kube.ca_path.read_bytes()
                        ).decode(),
                    },
                }
            ],
            "users": [{"name": "agent", "user": {"token": token}}],
            "contexts": [{"name": "agent", "context": {"cluster": "management", "user": "agent"}}],
            "current-context": "agent",
        }
    )


def test_oneshot_in_the_image_as_non_root_on_a_read_only_root_writes_the_secrets(
    image: str,
    teleport: tuple[StandIn, ControlPlane],
    kube: ControlPlane,
    admin_api: k8s.ApiClient,
    tmp_path: Path,
) -> None:
    server, _ = teleport
    namespace = agent_namespace(admin_api, "image", ["create", "patch"])
    token = service_account_token(admin_api, namespace, "agent")
    join_token = f"kube-{uuid.uuid4().hex[:6]}"
    server.create(
        [
            kubernetes_token_doc(
                join_token, "argocd", jwks=kube.jwks(), service_accounts=[f"{namespace}:agent"]
            )
        ]
    )
    volume = _readable_dir(tmp_path / "pod")
    files = {
        "config.yaml": yaml.safe_dump(
            {
                "version": "v2",
                "proxy_server": server.proxy_addr,
                "proxy_ca_path": "/pod/proxy-ca.crt",
                "onboarding": {"join_method": "kubernetes", "token": join_token},
                "credential_ttl": "1h",
                "renewal_interval": "20m",
                "storage": {"type": "memory"},
                "instance": f"{namespace}/image",
                "services": [
                    {
                        "type": "kubernetes/argo-cd",
                        "name": "argo-cd",
                        "selectors": [{"labels": {"env": "prod"}}],
                        "secret_namespace": namespace,
                    }
                ],
            }
        ),
        "proxy-ca.crt": server.web_ca_path.read_text(),
        "kubeconfig": _kubeconfig(kube, token),
        "token": pod_bound_token(admin_api, namespace, audiences=[CLUSTER]),
    }
    for name, text in files.items():
        (volume / name).write_text(text)
        (volume / name).chmod(0o644)

    result = run_image(
        image,
        "start",
        "--oneshot",
        "--config",
        "/pod/config.yaml",
        "--log-format",
        "json",
        volumes=[f"{volume}:/pod:ro"],
        env={
            "POD_NAMESPACE": namespace,
            "KUBECONFIG": "/pod/kubeconfig",
            "KUBERNETES_TOKEN_PATH": "/pod/token",
        },
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "PRIVATE KEY" not in output
    assert not re.search(r"-----BEGIN|LS0tLS1CRUdJTi", output)

    secrets = argocd_readable_secrets(admin_api, namespace)
    assert len(secrets) == 1, sorted(secrets)
    (secret,) = secrets.values()
    assert secret.server == f"https://{server.proxy_addr}/v1/teleport/cm9vdA/YWxwaGE"
    assert secret.annotations["teleport.dev/kubernetes-cluster-name"] == "alpha"
    # Written by the image's user on its read-only root: the run itself is the proof, and
    # the stand-in saw the join from that process.
    (instance,) = [i for i in server.instances() if i["bot_name"] == "argocd"]
    assert instance["join_method"] == "kubernetes"
