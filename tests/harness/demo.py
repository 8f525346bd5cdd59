"""`make demo`: the whole path on one machine, from a Teleport cluster to Argo CD deploying.

Starts a management API server with Argo CD (application controller, repo-server, ApplicationSet
controller), the Teleport stand-in with two target API servers behind it as Kubernetes clusters
(plus a third that the guide's selector leaves out), installs the chart into Argo CD's namespace
with the values from Teleport's Argo CD guide (chart/ci/guide-values.yaml) pointed at the
stand-in, creates the Teleport resources the chart's NOTES ask for, and runs the agent.

There is no kubelet, so the chart's Deployment never gets a pod: the agent runs as a local
process with the chart-rendered config, the chart's ServiceAccount token (bound to a Pod object,
as the kubelet's projected token is) and that ServiceAccount's API credentials, as the
end-to-end tests do. It then prints the clusters as Argo CD lists them (the cluster secrets), the
applications an ApplicationSet generated from them once synced, and a `kubectl get ns` made with
only what one secret holds, and keeps running until Ctrl-C. Everything lives in one temporary
directory, removed on exit.

DEMO_EXIT_AFTER_SETUP=1 stops right after printing (used by the tests).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s

from tests.harness.agent_e2e import AgentDaemon, StandIn, kube_cluster_yaml, standin_binary
from tests.harness.argocd import ArgoCD, argocd, config_map_manifest
from tests.harness.kube import (
    ControlPlane,
    binary,
    cluster_secret_data,
    control_plane,
    free_port,
    pod_bound_token,
    service_account_token,
)
from tests.harness.notes import teleport_resources as notes_resources
from tests.harness.pki import write_private

ROOT = Path(__file__).resolve().parents[2]
GUIDE_VALUES = ROOT / "chart" / "ci" / "guide-values.yaml"
TELEPORT_CLUSTER = "root"
RELEASE = "teleport-argocd"
NAMESPACE = "argocd"  # Argo CD's namespace: the chart writes the cluster secrets where it runs
JWKS_PLACEHOLDER = "'<paste the output of: kubectl get --raw /openid/v1/jwks>'"
# The selector of the guide's values, on two of the three clusters.
CLUSTERS = {"alpha": "production", "beta": "production", "gamma": "staging"}


def run(args: list[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"$ {' '.join(args)}\n{done.stdout}{done.stderr}")
    return done.stdout


def indent(text: str) -> str:
    return "\n".join("    " + line for line in text.rstrip().splitlines())


def teleport_resources(notes: str, plane: ControlPlane) -> str:
    """The role, bot and join token the chart's NOTES tell the Teleport administrator to create,
    with the management API server's JWKS pasted where the NOTES say."""
    return notes_resources(notes).replace(JWKS_PLACEHOLDER, f"'{plane.jwks()}'")


def secret_kubeconfig(data: dict[str, Any], path: Path) -> Path:
    """A kubeconfig holding only what an Argo CD cluster secret holds."""
    tls = data["config"]["tlsClientConfig"]
    cluster: dict[str, Any] = {
        "server": data["server"],
        "certificate-authority-data": tls["caData"],
    }
    if tls.get("serverName"):
        cluster["tls-server-name"] = tls["serverName"]
    user = {"client-certificate-data": tls["certData"], "client-key-data": tls["keyData"]}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": data["name"], "cluster": cluster}],
        "users": [{"name": "argocd", "user": user}],
        "contexts": [{"name": "argocd", "context": {"cluster": data["name"], "user": "argocd"}}],
        "current-context": "argocd",
    }
    return write_private(path, yaml.safe_dump(config))


def applications(argo: ArgoCD) -> list[tuple[str, str, str, str]]:
    rows = []
    for name in argo.application_names():
        status = argo.get("applications", name).get("status", {})
        rows.append(
            (
                name,
                status.get("sync", {}).get("status", "-"),
                status.get("health", {}).get("status", "-"),
                argo.get("applications", name)["spec"]["destination"].get("server", "-"),
            )
        )
    return rows


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def main() -> int:  # noqa: PLR0915 - one linear script, read top to bottom
    workdir = Path(tempfile.mkdtemp(prefix="teleport-argocd-demo-"))
    started = time.monotonic()
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        kube = stack.enter_context(control_plane(workdir / "management"))
        targets = {
            name: stack.enter_context(control_plane(workdir / name)) for name in ("alpha", "beta")
        }
        for name, plane in targets.items():
            api = plane.admin_client()
            k8s.CoreV1Api(api).create_namespace(
                k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=f"i-am-{name}"))
            )
            api.close()  # type: ignore[no-untyped-call]
        argo = stack.enter_context(argocd(kube, workdir / "argocd", namespace=NAMESPACE))
        standin = StandIn(standin_binary(workdir), workdir / "teleport", TELEPORT_CLUSTER)
        # gamma is a second view of beta's API server, labelled staging: the guide's selector
        # leaves it out.
        planes = {"alpha": targets["alpha"], "beta": targets["beta"], "gamma": targets["beta"]}
        standin.start(
            [
                kube_cluster_yaml(name, {"environment": env}, planes[name])
                for name, env in CLUSTERS.items()
            ]
        )
        stack.callback(standin.stop)
        admin_kubeconfig = kube.kubeconfig(workdir / "kubeconfig")
        env = {**os.environ, "KUBECONFIG": str(admin_kubeconfig)}
        kubectl = binary("KUBECTL_BIN", "kubectl")
        print(f"management API server   {kube.url}   (Argo CD {argo.namespace!r} namespace)")
        for name, plane in targets.items():
            print(f"target API server       {plane.url}   ({name})")
        print(
            f"Teleport (stand-in)     {standin.proxy}   clusters: "
            + ", ".join(f"{name} (environment={env_})" for name, env_ in CLUSTERS.items())
        )
        print(f"kubeconfig              export KUBECONFIG={admin_kubeconfig}")

        values = yaml.safe_load(GUIDE_VALUES.read_text())
        values.update(teleportProxyAddress=standin.proxy, clusterName=TELEPORT_CLUSTER)
        values_path = workdir / "values.yaml"
        values_path.write_text(yaml.safe_dump(values))
        print(
            "\n$ helm install teleport-argocd ./chart -n argocd -f chart/ci/guide-values.yaml "
            f"--set teleportProxyAddress={standin.proxy},clusterName={TELEPORT_CLUSTER}"
        )
        helm_home = workdir / "helm"
        helm_env = {
            **env,
            **{f"HELM_{k}_HOME": str(helm_home / k.lower()) for k in ("CACHE", "CONFIG", "DATA")},
        }
        install = run(
            [
                binary("HELM_BIN", "helm"),
                "install",
                RELEASE,
                str(ROOT / "chart"),
                "-n",
                NAMESPACE,
                "-f",
                str(values_path),
            ],
            helm_env,
        )
        print(indent("\n".join(install.splitlines()[:6])))
        # What the NOTES ask the Teleport administrator to run (tctl create -f ...).
        standin.create_yaml(teleport_resources(install.split("NOTES:", 1)[1], kube))
        print("$ tctl create -f teleport-argocd.yaml   # the role, bot and join token from NOTES")

        fullname = f"{RELEASE}-teleport-argocd-agent"
        # Least privilege: in Argo CD's namespace the agent may create and patch secrets (its
        # own only, by the chart's admission policy) and read none.
        can_i = ["auth", "can-i", "--list", f"--as=system:serviceaccount:{NAMESPACE}:{fullname}"]
        print(f"$ kubectl -n {NAMESPACE} {' '.join(can_i)} | grep secrets")
        rules = run([kubectl, "-n", NAMESPACE, *can_i], env).splitlines()
        print(indent("\n".join(line for line in rules if line.startswith("secrets "))))
        admin = kube.admin_client()
        stack.callback(admin.close)
        config_map = k8s.CoreV1Api(admin).read_namespaced_config_map(fullname, NAMESPACE)
        config = workdir / "config.yaml"
        config.write_text((config_map.data or {})["config.yaml"])
        jwt = workdir / "sa-token"
        write_private(
            jwt, pod_bound_token(admin, NAMESPACE, fullname, audiences=[TELEPORT_CLUSTER])
        )
        agent_kubeconfig = kube.kubeconfig(
            workdir / "agent-kubeconfig",
            token=service_account_token(admin, NAMESPACE, fullname, create=False),
        )
        agent = AgentDaemon(
            ["-c", str(config)],
            kubeconfig=agent_kubeconfig,
            POD_NAMESPACE=NAMESPACE,
            KUBERNETES_TOKEN_PATH=str(jwt),
            # The stand-in's web certificate comes from its own CA (the chart's teleportProxyCA),
            # and the chart's diagnostics port would be 0.0.0.0:3001 on this machine.
            TELEPORT_ARGOCD_AGENT_PROXY_CA_PATH=standin.web_ca,
            TELEPORT_ARGOCD_AGENT_DIAG_ADDR=f"127.0.0.1:{free_port()}",
        )
        stack.callback(agent.stop)
        agent.wait_for("sync finished", timeout=120)
        print("\nagent: joined Teleport as the chart's ServiceAccount, wrote the cluster secrets")

        secrets = cluster_secret_data(admin, NAMESPACE)
        print("\n# The clusters as Argo CD lists them (its cluster secrets)")
        print(f"$ kubectl -n {NAMESPACE} get secrets -l argocd.argoproj.io/secret-type=cluster")
        print(
            indent(
                table(
                    [
                        ("SECRET", "NAME", "SERVER"),
                        *((name, data["name"], data["server"]) for name, data in secrets),
                    ]
                )
            )
        )

        assert argo.repo is not None
        argo.repo.commit({"guestbook/cm.yaml": config_map_manifest("guestbook", {"hello": "argo"})})
        argo.cluster_generator_set(
            "guestbook",
            selector={"app.kubernetes.io/managed-by": "teleport-argocd-agent"},
            path="guestbook",
            namespace="guestbook",
        )
        for _, data in secrets:
            argo.wait_generated_and_synced("guestbook", f"guestbook-{data['name']}", timeout=120)
        print("\n# An ApplicationSet (cluster generator) deploys to every cluster; all synced")
        print(f"$ kubectl -n {NAMESPACE} get applications")
        print(indent(table([("NAME", "SYNC", "HEALTH", "DESTINATION"), *applications(argo)])))

        name, data = secrets[0]
        through = secret_kubeconfig(data, workdir / "secret-kubeconfig")
        print(f"\n# kubectl with only what secret {name} ({data['name']}) holds, through Teleport")
        print(f"$ kubectl --kubeconfig {through} get ns")
        print(indent(run([kubectl, "--kubeconfig", str(through), "get", "ns"])))
        print(f"\nup in {time.monotonic() - started:.0f}s")
        if os.environ.get("DEMO_EXIT_AFTER_SETUP"):
            return 0

        print("\nSandbox running (agent events below); press Ctrl-C to stop and clean up.")
        stop = False

        def _stop(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        shown = len(agent.events())
        while not stop and agent.proc.poll() is None:
            # Reading the agent's output also keeps its pipe from filling up.
            events = agent.events()
            for event in events[shown:]:
                print("agent:", json.dumps({k: event[k] for k in sorted(event) if k != "time"}))
            shown = len(events)
            time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
