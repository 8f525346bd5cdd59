"""`make bench`: the agent's secret writes against a real API server, beside a raw baseline.

For 1, 100 and 1,000 clusters the agent renders and writes every secret (a create cycle,
then an update cycle with a renewed credential) as a least-privilege ServiceAccount. The
baseline, in the same run against the same server, sends the same server-side applies
straight through urllib3 with the same concurrency and no agent logic at all. Each side
runs twice per phase in alternating order and the faster run counts, so a noisy neighbour
hurts both sides alike. Ratios (agent throughput / baseline throughput) are printed; they
are measurements, not assertions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import urllib3
from kubernetes import client as k8s

from agent.argocd import DesiredSecret, render_secret
from agent.config import parse_config
from agent.kube import APPLY_CONTENT_TYPE, SecretWriter
from agent.teleport.identity import Credential
from agent.teleport.inventory import KubeCluster
from agent.teleport.webapi import ProxySettings
from tests.harness.agent_process import launch
from tests.harness.kube import (
    ControlPlane,
    agent_namespace,
    control_plane,
    grant_secret_verbs,
    service_account_token,
    unique_namespace,
)
from tests.harness.pki import CertificateAuthority
from tests.harness.source import write_inventory

CONCURRENCY = 16
PROXY = ProxySettings("bench.example.com", "teleport.example.com:443", tls_routing=True)


def make_credential(ca: CertificateAuthority, serial: int) -> Credential:
    pair = ca.issue(f"bot-argocd-{serial}", client=True)
    return Credential.from_pem(pair.cert_pem, pair.key_pem, (ca.cert_pem,), "argocd")


def render_all(namespace: str, count: int, credential: Credential) -> list[DesiredSecret]:
    service = parse_config(
        {
            "proxy_server": "teleport.example.com:443",
            "onboarding": {"token": "bot"},
            "services": [
                {
                    "type": "kubernetes/argo-cd",
                    "selectors": [{"labels": {"env": "bench"}}],
                    "secret_namespace": namespace,
                    "secret_labels": {"team": '{{ index .Labels "team" }}'},
                }
            ],
        }
    ).services[0]
    now = dt.datetime.now(dt.UTC)
    return [
        render_secret(
            service=service,
            service_name="argo-cd",
            instance="bench/agent",
            proxy=PROXY,
            cluster=KubeCluster(f"cluster-{i:04d}", {"env": "bench", "team": f"t{i % 7}"}),
            credential=credential,
            agent_version="bench",
            now=now,
        )
        for i in range(count)
    ]


class RawApplier:
    """The baseline: parallel server-side applies with nothing but urllib3."""

    def __init__(self, plane: ControlPlane, token: str) -> None:
        self._pool = urllib3.PoolManager(
            maxsize=CONCURRENCY, cert_reqs="CERT_REQUIRED", ca_certs=str(plane.ca_path)
        )
        self._url = plane.url
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": APPLY_CONTENT_TYPE,
            "Accept": "application/json",
        }

    def apply(self, bodies: Sequence[tuple[str, str, bytes]]) -> None:
        def one(item: tuple[str, str, bytes]) -> None:
            namespace, name, body = item
            response = self._pool.request(
                "PATCH",
                f"{self._url}/api/v1/namespaces/{namespace}/secrets/{name}?fieldManager=baseline",
                body=body,
                headers=self._headers,
            )
            if response.status >= 300:
                raise RuntimeError(
                    f"baseline apply failed: {response.status} {response.data[:200]!r}"
                )

        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(one, bodies))


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def agent_cycle(writer: SecretWriter, namespace: str, count: int, credential: Credential) -> None:
    """What one agent cycle costs: render every secret, then write them."""
    results = writer.write(render_all(namespace, count, credential))
    failed = [r for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"agent write failed: {failed[0]}")


def run(counts: Sequence[int]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with control_plane(Path(tempfile.mkdtemp(prefix="bench-"))) as plane:
        admin = plane.admin_client()
        ca = CertificateAuthority("bench-teleport-host-ca")
        credentials = [make_credential(ca, i) for i in range(4)]
        print(f"control plane up in {plane.startup_seconds:.1f}s; concurrency {CONCURRENCY}")
        for count in counts:
            agent_ns = unique_namespace(admin, prefix="agent")
            base_ns = unique_namespace(admin, prefix="base")
            # The agent writes as a ServiceAccount with create + patch only, like in production.
            for ns in (agent_ns, base_ns):
                grant_secret_verbs(
                    admin,
                    ns,
                    ["create", "patch"],
                    service_account="writer",
                    service_account_namespace=agent_ns,
                    name="writer",
                )
            token = service_account_token(admin, agent_ns, "writer")
            cfg = plane.configuration(token=token)
            cfg.connection_pool_maxsize = CONCURRENCY
            writer = SecretWriter(k8s.ApiClient(cfg), concurrency=CONCURRENCY)
            raw = RawApplier(plane, token)

            for phase, (cred_a, cred_b) in (
                ("create", (credentials[0], credentials[1])),
                ("update", (credentials[2], credentials[3])),
            ):
                # Baseline bodies are pre-rendered and pre-serialized: the floor of the cost.
                bodies_a = [
                    (s.namespace, s.name, json.dumps(s.apply_body()).encode())
                    for s in render_all(base_ns, count, cred_a)
                ]
                bodies_b = [
                    (s.namespace, s.name, json.dumps(s.apply_body()).encode())
                    for s in render_all(base_ns, count, cred_b)
                ]
                # Order B, A, A, B. In the create phase only the first run of each side creates
                # (the second updates), so the first runs are compared; in the update phase
                # every run updates and the faster of two counts.
                base_t = timed(partial(raw.apply, bodies_a))
                agent_t = timed(partial(agent_cycle, writer, agent_ns, count, cred_a))
                agent_t2 = timed(partial(agent_cycle, writer, agent_ns, count, cred_b))
                base_t2 = timed(partial(raw.apply, bodies_b))
                if phase == "create":
                    base_best, agent_best = base_t, agent_t
                else:
                    base_best, agent_best = min(base_t, base_t2), min(agent_t, agent_t2)
                rows.append(
                    {
                        "clusters": count,
                        "phase": phase,
                        "baseline_s": base_best,
                        "agent_s": agent_best,
                        "baseline_wps": count / base_best,
                        "agent_wps": count / agent_best,
                        "ratio": base_best / agent_best,
                    }
                )
                row = rows[-1]
                print(
                    f"{count:>6} {phase:<7} baseline {row['baseline_s']:7.3f}s "
                    f"({row['baseline_wps']:7.1f}/s)  agent {row['agent_s']:7.3f}s "
                    f"({row['agent_wps']:7.1f}/s)  ratio {row['ratio']:.2f}",
                    flush=True,
                )
        rss_ns = agent_namespace(admin, "rss", ["create", "patch"])
        rows.append({"peak_rss_kib": peak_rss(plane, admin, rss_ns, max(counts), ca)})
        rows.append(daemon_run(plane, admin, max(counts)))
        admin.close()  # type: ignore[no-untyped-call]
    return rows


def peak_rss(
    plane: ControlPlane, admin: k8s.ApiClient, namespace: str, count: int, ca: CertificateAuthority
) -> int:
    """Peak RSS of a fresh process that plans and writes ``count`` clusters with agent code."""
    work = Path(tempfile.mkdtemp(prefix="bench-rss-"))
    token = work / "token"
    token.write_text(service_account_token(admin, namespace, "agent"))
    pair = ca.issue("bot-argocd", client=True)
    (work / "cert.pem").write_bytes(pair.cert_pem)
    (work / "key.pem").write_bytes(pair.key_pem)
    (work / "ca.pem").write_bytes(ca.cert_pem)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.bench.cycle_process",
            plane.url,
            str(plane.ca_path),
            str(token),
            namespace,
            str(count),
            str(work),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    kib = int(done.stdout.strip().splitlines()[-1])
    print(f"peak RSS of one {count}-cluster cycle in a fresh process: {kib / 1024:.1f} MiB")
    return kib


def daemon_run(plane: ControlPlane, admin: k8s.ApiClient, count: int) -> dict[str, object]:
    """The daemon loop as a process with ``count`` clusters: process start to the first complete
    sync, its peak RSS after that sync, and a new cluster's time to its secret.

    Teleport's part is the inventory stand-in of tests/harness/source.py (no Teleport can be
    built here), so Teleport's own latency is not in these numbers.
    """
    namespace = agent_namespace(admin, "daemon", ["create", "patch"])
    work = Path(tempfile.mkdtemp(prefix="bench-daemon-"))
    token = work / "token"
    token.write_text(service_account_token(admin, namespace, "agent"))
    interval = 30
    clusters = [KubeCluster(f"cluster-{i:04d}", {"env": "prod"}) for i in range(count)]
    started = time.monotonic()
    daemon = launch(plane, work, token, namespace, clusters, discovery_interval=f"{interval}s")
    try:
        daemon.wait_event("sync finished", timeout=600)
        first_sync = time.monotonic() - started
        rss_kib = vm_hwm_kib(daemon.proc.pid)
        write_inventory(daemon.inventory, [*clusters, KubeCluster("new-cluster", {"env": "prod"})])
        added = time.monotonic()
        event = daemon.wait_event("sync finished", timeout=interval + 60)
        discovery = time.monotonic() - added
        assert event.get("kind") == "discovery", event
        daemon.signal(signal.SIGTERM)
        daemon.proc.wait(timeout=60)
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
    print(
        f"daemon, {count} clusters: first complete sync {first_sync:.2f}s after process start; "
        f"peak RSS {rss_kib / 1024:.1f} MiB; new cluster written {discovery:.1f}s after it "
        f"appeared (discovery every {interval}s)",
        flush=True,
    )
    return {
        "daemon_clusters": count,
        "first_sync_s": first_sync,
        "daemon_rss_kib": rss_kib,
        "discovery_s": discovery,
        "discovery_interval_s": interval,
    }


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for process {pid}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clusters", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    print("== secret writes: agent vs raw parallel server-side apply (same server, same run)")
    rows = run(args.clusters)
    print()
    print(
        f"{'clusters':>8} {'phase':<7} {'cycle (agent)':>14} {'writes/s agent':>15} "
        f"{'writes/s raw':>13} {'ratio':>6}"
    )
    for row in rows:
        if "daemon_clusters" in row:
            print(
                f"daemon, {row['daemon_clusters']} clusters: first sync "
                f"{float(str(row['first_sync_s'])):.2f}s after start (target < 5 s), peak RSS "
                f"{int(str(row['daemon_rss_kib'])) / 1024:.1f} MiB (target < 120 MB), new cluster "
                f"to secret {float(str(row['discovery_s'])):.1f}s "
                f"(discovery every {row['discovery_interval_s']}s)"
            )
            continue
        if "peak_rss_kib" in row:
            print(
                f"peak RSS, plan + write of {max(args.clusters)} clusters: "
                f"{int(str(row['peak_rss_kib'])) / 1024:.1f} MiB (target < 120 MB)"
            )
            continue
        print(
            f"{row['clusters']:>8} {row['phase']:<7} {row['agent_s']:>13.3f}s "
            f"{row['agent_wps']:>15.1f} {row['baseline_wps']:>13.1f} {row['ratio']:>6.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
