"""`make demo`: the user's path on this machine, printed as a user sees it.

A single-node Kubernetes (real kubelet, containerd, runc) in a network namespace of its own, a
local OCI registry that `make release` publishes the chart and the image to, the Teleport
stand-in with three Kubernetes clusters (`alpha` and `beta`, `environment: production`, and
`gamma`, `staging`: the node's own API server behind Teleport) and Argo CD. Then what a user
does: the Teleport resources the chart's NOTES print (with the node's JWKS), `helm install`
from the registry with the values of Teleport's Argo CD guide into a namespace enforcing the
`restricted` Pod Security Standard, and an ApplicationSet deploying to every cluster the agent
registered. It prints the pod, the clusters Argo CD lists and the synced Applications, then the
agent's logs until Ctrl-C; everything stops and its temporary directory is removed.

DEMO_EXIT_AFTER_SETUP=1 stops right after printing (used by the tests). See
tests/harness/user_path.py for what runs where.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.harness.user_path import (
    CHART_VERSION,
    FULLNAME,
    NAMESPACE,
    RELEASE,
    TELEPORT_CLUSTER,
    Sandbox,
    sandbox,
)


def indent(text: str) -> str:
    return "\n".join("    " + line for line in text.rstrip().splitlines())


def show(s: Sandbox, *args: str) -> None:
    """Print a kubectl command as a user types it, and its output."""
    print(f"$ kubectl {' '.join(args)}")
    done = s.kubectl(*args)
    print(indent(done.stdout or done.stderr))


def main() -> int:  # noqa: PLR0915 - one linear script, read top to bottom
    workdir = Path(tempfile.mkdtemp(prefix="teleport-argocd-demo-"))
    started = time.monotonic()
    try:
        with sandbox(workdir) as s:
            n = s.node
            print(f"node        Kubernetes node Ready in {n.timings['node_ready']:.1f}s")
            print(f"            network namespace {n.netns_path}")
            print(f"            kubeconfig {n.admin_kubeconfig}")
            print(f"registry    {n.registry}   (make release REGISTRY={n.registry})")
            print(
                f"Teleport    {s.standin.proxy_addr}   (stand-in, cluster {TELEPORT_CLUSTER}): "
                "alpha, beta (environment=production), gamma (environment=staging)"
            )
            print(f"Argo CD     in namespace {NAMESPACE} (restricted Pod Security Standard)")
            print(
                "\n# The Teleport administrator creates what the chart's NOTES print "
                "(JWKS from kubectl get --raw /openid/v1/jwks)"
            )
            print("$ tctl create -f teleport-argocd.yaml")
            args = s.install_args()
            out = s.install()
            shown = [Path(a).name if a.endswith("values.yaml") else a for a in args]
            shown = ["chart/ci/guide-values.yaml" if a == "guide-values.yaml" else a for a in shown]
            print(f"\n$ helm install {' '.join(shown)}")
            print("    # sandbox-values.yaml: the stand-in's address and CA, the registry host")
            print(indent("\n".join(out.splitlines()[:6])))
            print()
            show(s, "--namespace", NAMESPACE, "get", "pods")
            print()
            show(
                s,
                "--namespace",
                NAMESPACE,
                "get",
                "secrets",
                "-l",
                "argocd.argoproj.io/secret-type=cluster",
                "-o",
                "custom-columns=SECRET:.metadata.name,CLUSTER:.metadata.annotations.teleport\\.dev/kubernetes-cluster-name",
            )
            s.deploy_guestbook()
            print("\n# An ApplicationSet (cluster generator) deploys to every cluster; all synced")
            show(
                s,
                "--namespace",
                NAMESPACE,
                "get",
                "applications.argoproj.io",
                "-o",
                "custom-columns=NAME:.metadata.name,SYNC:.status.sync.status,"
                "HEALTH:.status.health.status,DESTINATION:.spec.destination.server",
            )
            print()
            config = "/etc/teleport-argocd-agent/config.yaml"
            check = s.exec_agent("check", "-c", config)
            print(
                f"$ kubectl --namespace {NAMESPACE} exec deploy/{FULLNAME} -- "
                f"teleport-argocd-agent check -c {config}"
            )
            print(indent(check.stdout or check.stderr))
            timings = ", ".join(f"{k} {v:.1f}s" for k, v in s.timings.items())
            total = time.monotonic() - started
            print(f"\nchart {CHART_VERSION} ({RELEASE}): {timings}; up in {total:.0f}s")
            if os.environ.get("DEMO_EXIT_AFTER_SETUP"):
                return 0
            print(f"\n$ kubectl --namespace {NAMESPACE} logs deploy/{FULLNAME} --follow")
            print("    (Ctrl-C stops the demo and removes everything)")
            logs = subprocess.Popen(
                n.in_netns(
                    [
                        *s.kubectl_command(),
                        "--namespace",
                        NAMESPACE,
                        "logs",
                        f"deploy/{FULLNAME}",
                        "--follow",
                        "--tail=20",
                    ]
                )
            )
            stop = False

            def _stop(*_: object) -> None:
                nonlocal stop
                stop = True

            signal.signal(signal.SIGINT, _stop)
            signal.signal(signal.SIGTERM, _stop)
            while not stop and logs.poll() is None:
                time.sleep(0.5)
            logs.terminate()
            logs.wait(10)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
