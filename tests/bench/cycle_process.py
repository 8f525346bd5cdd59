"""One agent cycle in a process of its own, for measuring the agent's peak memory.

Plans N clusters from the config with the agent's own code, writes them with the agent's
writer as a least-privilege ServiceAccount, then prints the process's peak RSS in KiB.
Run by tests/bench/__main__.py; arguments: API server URL, CA file, token file, namespace, N.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from agent.config import AgentConfig, parse_config
from agent.kube import SecretWriter
from agent.plan import plan_cycle
from agent.sync import apply_plan
from agent.teleport.model import Credential, KubeCluster, ProxySettings
from tests.harness.procfs import status_kib


def bench_config(namespace: str, **service: Any) -> AgentConfig:
    """The benchmarks' agent config: one Argo CD service selecting ``env: bench`` clusters into
    ``namespace``, with ``service`` keys added."""
    return parse_config(
        {
            "proxy_server": "teleport.example.com:443",
            "onboarding": {"token": "bot"},
            "services": [
                {
                    "type": "kubernetes/argo-cd",
                    "selectors": [{"labels": {"env": "bench"}}],
                    "secret_namespace": namespace,
                    **service,
                }
            ],
        }
    )


def main(*args: str) -> int:
    url, ca, token_file, namespace, count, cred_dir = args
    cfg = k8s.Configuration()
    cfg.host, cfg.ssl_ca_cert = url, ca
    cfg.api_key = {"authorization": f"Bearer {Path(token_file).read_text()}"}
    cfg.connection_pool_maxsize = 16
    config = bench_config(namespace)
    creds = Path(cred_dir)
    credential = Credential.from_pem(
        (creds / "cert.pem").read_bytes(),
        (creds / "key.pem").read_bytes(),
        ((creds / "ca.pem").read_bytes(),),
        "argocd",
    )
    clusters = [KubeCluster(f"cluster-{i:04d}", {"env": "bench"}) for i in range(int(count))]
    plan = plan_cycle(
        config,
        proxy=ProxySettings("bench", "teleport.example.com:443", tls_routing=True),
        clusters=clusters,
        credential=credential,
        agent_version="bench",
        now=dt.datetime.now(dt.UTC),
    )
    report = apply_plan(plan, SecretWriter(k8s.ApiClient(cfg), concurrency=16))
    if not report.complete:
        print("cycle incomplete", file=sys.stderr)
        return 1
    print(peak_rss_kib())
    return 0


def peak_rss_kib() -> int:
    """VmHWM: the high-water mark of this process's own memory. (ru_maxrss would not do: on
    Linux it keeps the parent's size from before exec, and the parent here holds test servers.)
    """
    return status_kib("self", "VmHWM")


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
