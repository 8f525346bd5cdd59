"""`make demo`: a local sandbox with a real API server and the chart installed into it.

Starts etcd + kube-apiserver on loopback, installs the chart with the values from Teleport's
Argo CD guide into the `argocd` namespace (Pod Security `restricted` enforced), writes a
kubeconfig, prints what was created and how to reach it, and keeps running until Ctrl-C.
Set DEMO_EXIT_AFTER_SETUP=1 to stop right after printing (used by the tests).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubernetes import client as k8s

from tests.harness.kube import binary, control_plane

ROOT = Path(__file__).resolve().parents[2]
GUIDE_VALUES = """\
clusterName: teleport.example.com
teleportProxyAddress: teleport.example.com:443
token: argocd-bot
defaultOutput:
  enabled: false
argocd:
  enabled: true
  clusterSelectors:
    - labels:
        environment: production
"""


def run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"$ {' '.join(args)}\n{done.stdout}{done.stderr}")
    return done.stdout


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="teleport-argocd-demo-"))
    with control_plane(workdir) as plane:
        kubeconfig = plane.kubeconfig(workdir / "kubeconfig")
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        admin = plane.admin_client()
        core = k8s.CoreV1Api(admin)
        core.create_namespace(
            k8s.V1Namespace(
                metadata=k8s.V1ObjectMeta(
                    name="argocd", labels={"pod-security.kubernetes.io/enforce": "restricted"}
                )
            )
        )
        values = workdir / "guide-values.yaml"
        values.write_text(GUIDE_VALUES)
        helm = binary("HELM_BIN", "helm")
        kubectl = binary("KUBECTL_BIN", "kubectl")
        print(f"API server      {plane.url} (up in {plane.startup_seconds:.1f}s)")
        print(f"kubeconfig      export KUBECONFIG={kubeconfig}")
        print()
        print("$ helm install teleport-argocd ./chart -n argocd -f guide-values.yaml")
        out = run(
            [
                helm,
                "install",
                "teleport-argocd",
                str(ROOT / "chart"),
                "-n",
                "argocd",
                "-f",
                str(values),
            ],
            env,
        )
        print("\n".join("    " + line for line in out.splitlines()[:8]))
        print()
        print("$ kubectl -n argocd get configmap,serviceaccount,role,rolebinding,deployment")
        print(
            run(
                [
                    kubectl,
                    "-n",
                    "argocd",
                    "get",
                    "configmap,serviceaccount,role,rolebinding,deployment",
                ],
                env,
            )
        )
        print(
            "$ kubectl -n argocd auth can-i --list "
            "--as=system:serviceaccount:argocd:teleport-argocd-teleport-argocd-agent"
        )
        sa = run(
            [
                kubectl,
                "-n",
                "argocd",
                "get",
                "serviceaccount",
                "-o",
                "jsonpath={.items[0].metadata.name}",
            ],
            env,
        )
        print(
            run(
                [
                    kubectl,
                    "-n",
                    "argocd",
                    "auth",
                    "can-i",
                    "--list",
                    f"--as=system:serviceaccount:argocd:{sa}",
                ],
                env,
            )
        )
        print("The agent's Teleport side cannot run here (no Teleport build is available on")
        print("this machine), so no pod runs and no cluster secrets are written yet.")
        if os.environ.get("DEMO_EXIT_AFTER_SETUP"):
            return 0
        print("\nSandbox running; press Ctrl-C to stop and clean up.")
        stop = False

        def _stop(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        while not stop:
            time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
